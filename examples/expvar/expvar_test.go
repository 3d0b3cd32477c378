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

// dial opens a WebSocket to url. It returns the connection and 101, or nil
// and the status the hub refused the upgrade with.
func dial(t *testing.T, url string) (*websocket.Conn, int) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if errors.Is(err, websocket.ErrBadHandshake) {
		return nil, resp.StatusCode
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, resp.StatusCode
}

// readTick fails the test unless the next message is a price tick.
func readTick(t *testing.T, c *websocket.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	var tick struct{ T int64 }
	if err != nil || json.Unmarshal(b, &tick) != nil || tick.T == 0 {
		t.Fatalf("want a tick, got %q, %v", b, err)
	}
}

// closeOf reads until the server's close frame, which gorilla answers, and
// returns its code and reason; code 0 and the error if none came.
func closeOf(c *websocket.Conn) (int, string) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			return 0, err.Error()
		}
	}
}

// TestFeedLimitsAndStats serves the feed's routes with httptest: the hub
// refuses a connection over MaxConns with 503, closes a flooding client
// with 1008, counts both in /debug/vars, and drains with 1012.
func TestFeedLimitsAndStats(t *testing.T) {
	events.Init() // counted afresh on each run of the test
	hub, err := newHub(2, 20)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(routes(hub))
	ctx, stopFeed := context.WithCancel(context.Background())
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		feed(ctx, hub, 20*time.Millisecond)
	}()
	t.Cleanup(func() {
		stopFeed()
		<-fed
		srv.Close()
		hub.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	flooder, _ := dial(t, url)
	steady, _ := dial(t, url)
	readTick(t, flooder)
	readTick(t, steady)
	if _, status := dial(t, url); status != http.StatusServiceUnavailable {
		t.Fatalf("third connection got %d, want 503 (max-conns 2)", status)
	}

	// 30 messages at once: the burst is 10.
	for range 30 {
		if flooder.WriteMessage(websocket.TextMessage, []byte("buy")) != nil {
			break // closed already
		}
	}
	if code, reason := closeOf(flooder); code != websocket.ClosePolicyViolation || reason != "rate limit exceeded" {
		t.Fatalf("flooding client closed with %d %q, want 1008 rate limit exceeded", code, reason)
	}

	var vars struct {
		Wshub struct {
			Conns, Rejected int
			Reasons         map[string]int
		}
		Events map[string]int `json:"wshub_events"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/debug/vars")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&vars)
		resp.Body.Close()
		if vars.Wshub.Conns == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if vars.Wshub.Conns != 1 || vars.Wshub.Rejected != 1 || vars.Wshub.Reasons["rate limit exceeded"] != 1 {
		t.Errorf("/debug/vars wshub: %+v", vars.Wshub)
	}
	if vars.Events["rejected: too many connections"] != 1 || vars.Events["closed: rate limit exceeded"] != 1 {
		t.Errorf("/debug/vars wshub_events: %v", vars.Events)
	}

	// Shutdown drains: the steady client is told to come back later.
	code := make(chan int, 1)
	go func() {
		got, _ := closeOf(steady)
		code <- got
	}()
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hub.Shutdown(shut); err != nil {
		t.Fatal(err)
	}
	if got := <-code; got != websocket.CloseServiceRestart {
		t.Fatalf("closed with %d on shutdown, want 1012", got)
	}
}

// TestSIGTERM runs the program's own serve: when its context ends, as on
// SIGTERM, the feed stops, the clients get 1012 and serve returns nil.
func TestSIGTERM(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, 2, 20, 20*time.Millisecond) }()
	c, _ := dial(t, "ws://"+ln.Addr().String()+"/ws")
	readTick(t, c)

	cancel()
	if code, _ := closeOf(c); code != websocket.CloseServiceRestart {
		t.Errorf("closed with %d on shutdown, want 1012", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}
