package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// login logs user in at the service at base and returns the session's
// bearer token and cookie.
func login(t *testing.T, base, user string) (string, *http.Cookie) {
	t.Helper()
	resp, err := http.Post(base+"/login?user="+user, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(resp.Cookies()) == 0 {
		t.Fatalf("login: %v, cookies %v", err, resp.Cookies())
	}
	return body.Token, resp.Cookies()[0]
}

// dial opens a WebSocket to the service at base with the given request
// headers. It returns the connection and 101, or nil and the status the
// service refused the upgrade with.
func dial(t *testing.T, base string, header http.Header) (*websocket.Conn, int) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", header)
	if errors.Is(err, websocket.ErrBadHandshake) {
		return nil, resp.StatusCode
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, resp.StatusCode
}

// read returns the next text message, failing the test if none comes.
func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// closeCode reads until the server's close frame, which gorilla answers,
// and returns its code.
func closeCode(c *websocket.Conn) (int, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
			return ce.Code, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// TestService serves the whole service with httptest: only authenticated
// upgrades from the service's own pages or with a token succeed, a REST
// call reaches every connection of its user, and shutdown closes them with
// 1001.
func TestService(t *testing.T) {
	handler, hub, err := newService()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
	})
	token, cookie := login(t, srv.URL, "ann")

	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"unknown token", http.Header{"Authorization": {"Bearer nope"}}, http.StatusForbidden},
		{"other site's page", http.Header{"Cookie": {cookie.String()}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"cookie", http.Header{"Cookie": {cookie.String()}, "Origin": {srv.URL}}, http.StatusSwitchingProtocols},
		{"bearer token", http.Header{"Authorization": {"Bearer " + token}}, http.StatusSwitchingProtocols},
	}
	var conns []*websocket.Conn
	for _, tc := range cases {
		c, got := dial(t, srv.URL, tc.header)
		if got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
		if c != nil {
			conns = append(conns, c)
		}
	}
	for _, c := range conns {
		if got := read(t, c); !strings.Contains(got, `"user":"ann"`) {
			t.Errorf("welcome %q, want user ann", got)
		}
	}

	resp, err := http.Post(srv.URL+"/api/notify?user=ann&message=hello", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var notify struct {
		DeliveredTo int `json:"delivered_to"`
	}
	json.NewDecoder(resp.Body).Decode(&notify)
	resp.Body.Close()
	if notify.DeliveredTo != 2 {
		t.Errorf("notify reached %d connections, want 2", notify.DeliveredTo)
	}
	for _, c := range conns {
		if got := read(t, c); !strings.Contains(got, "hello") {
			t.Errorf("notice %q, want hello", got)
		}
	}

	// Shutdown closes every WebSocket with 1001 and waits for the answers,
	// which gorilla sends while a read is under way.
	codes := make(chan int, len(conns))
	for _, c := range conns {
		go func() {
			code, _ := closeCode(c)
			codes <- code
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hub.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for range conns {
		if code := <-codes; code != websocket.CloseGoingAway {
			t.Errorf("shutdown reached a client as %d, want close 1001", code)
		}
	}
}

// TestSIGTERM runs the program's own serve: when its context ends, as on
// SIGTERM, it stops the HTTP server, closes the WebSockets with 1001 and
// returns nil.
func TestSIGTERM(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	token, _ := login(t, base, "ann")
	c, status := dial(t, base, http.Header{"Authorization": {"Bearer " + token}})
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", status)
	}
	read(t, c) // the welcome: OnOpen has run

	code := make(chan int, 1)
	go func() {
		got, _ := closeCode(c)
		code <- got
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if got := <-code; got != websocket.CloseGoingAway {
		t.Errorf("shutdown reached the client as %d, want close 1001", got)
	}
}
