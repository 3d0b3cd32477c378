package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// peer is a client connection with the bytes the dialer read ahead.
type peer struct {
	net.Conn
	r io.Reader
}

func (p peer) Read(b []byte) (int, error) { return p.r.Read(b) }

func TestFeedLimitsAndStats(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	events.Init() // counted afresh on each run of the test
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, 2, 20, 20*time.Millisecond) }()

	dial := func() (peer, int) {
		nc, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws")
		var se ws.StatusError
		if errors.As(err, &se) {
			return peer{}, int(se)
		}
		if err != nil {
			t.Fatal(err)
		}
		p := peer{Conn: nc, r: nc}
		if br != nil {
			p.r = io.MultiReader(br, nc)
		}
		t.Cleanup(func() { nc.Close() })
		return p, 101
	}
	readTick := func(p peer) {
		t.Helper()
		p.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := wsutil.ReadServerText(p)
		var tick struct{ T int64 }
		if err != nil || json.Unmarshal(b, &tick) != nil || tick.T == 0 {
			t.Fatalf("want a tick, got %q, %v", b, err)
		}
	}

	flooder, _ := dial()
	steady, _ := dial()
	readTick(flooder)
	readTick(steady)
	if _, status := dial(); status != http.StatusServiceUnavailable {
		t.Fatalf("third connection got %d, want 503 (max-conns 2)", status)
	}

	// 30 messages at once: the burst is 10.
	for range 30 {
		wsutil.WriteClientText(flooder, []byte("buy"))
	}
	flooder.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		frame, err := ws.ReadFrame(bufio.NewReader(flooder))
		if err != nil {
			t.Fatalf("flooding client not closed: %v", err)
		}
		if frame.Header.OpCode == ws.OpClose {
			if code, reason := ws.ParseCloseFrameData(frame.Payload); code != ws.StatusPolicyViolation || reason != "rate limit exceeded" {
				t.Fatalf("closed with %d %q", code, reason)
			}
			ws.WriteFrame(flooder, ws.MaskFrame(ws.NewCloseFrame(frame.Payload[:2])))
			break
		}
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
		resp, err := http.Get("http://" + addr + "/debug/vars")
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

	// Shutdown: the steady client is told to come back later.
	cancel()
	steady.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(steady)
	for {
		frame, err := ws.ReadFrame(br)
		if err != nil {
			t.Fatalf("no close frame on shutdown: %v", err)
		}
		if frame.Header.OpCode == ws.OpClose {
			if code, _ := ws.ParseCloseFrameData(frame.Payload); code != 1012 {
				t.Fatalf("closed with %d, want 1012", code)
			}
			ws.WriteFrame(steady, ws.MaskFrame(ws.NewCloseFrame(frame.Payload[:2])))
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
