package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestService(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()

	resp, err := http.Post("http://"+addr+"/login?user=ann", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	cookie := resp.Cookies()[0]

	dial := func(header http.Header) (net.Conn, *bufio.Reader, int) {
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(header)}
		nc, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/ws")
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, nil, int(se)
		}
		if err != nil {
			t.Fatal(err)
		}
		return nc, br, 101
	}
	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"unknown token", http.Header{"Authorization": {"Bearer nope"}}, http.StatusForbidden},
		{"other site's page", http.Header{"Cookie": {cookie.String()}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"cookie", http.Header{"Cookie": {cookie.String()}, "Origin": {"http://" + addr}}, 101},
		{"bearer token", http.Header{"Authorization": {"Bearer " + login.Token}}, 101},
	}
	var conns []net.Conn
	var rws []io.ReadWriter // read through what came with the 101
	for _, tc := range cases {
		nc, br, got := dial(tc.header)
		if got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
		if nc != nil {
			if br == nil {
				br = bufio.NewReader(nc)
			}
			conns = append(conns, nc)
			rws = append(rws, struct {
				io.Reader
				io.Writer
			}{br, nc})
		}
	}
	read := func(i int) string {
		conns[i].SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := wsutil.ReadServerText(rws[i])
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(b)
	}
	for i := range conns {
		if got := read(i); !strings.Contains(got, `"user":"ann"`) {
			t.Errorf("welcome %q, want user ann", got)
		}
	}

	resp, err = http.Post("http://"+addr+"/api/notify?user=ann&message=hello", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var notify struct{ Delivered_to int }
	json.NewDecoder(resp.Body).Decode(&notify)
	resp.Body.Close()
	if notify.Delivered_to != 2 {
		t.Errorf("notify reached %d connections, want 2", notify.Delivered_to)
	}
	for i := range conns {
		if got := read(i); !strings.Contains(got, "hello") {
			t.Errorf("notice %q, want hello", got)
		}
	}

	// SIGTERM's path: the service shuts down, closing WebSockets with 1001.
	answered := make(chan error)
	for i := range conns {
		go func() {
			_, err := wsutil.ReadServerText(rws[i]) // answers the close frame
			answered <- err
		}()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	for range conns {
		err := <-answered
		if ce, ok := err.(wsutil.ClosedError); !ok || ce.Code != ws.StatusGoingAway {
			t.Errorf("shutdown reached a client as %v, want close 1001", err)
		}
	}
}
