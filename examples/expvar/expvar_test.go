package main

import (
	"context"
	"encoding/binary"
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
	if code, reason := closeOf(t, flooder); code != ws.StatusPolicyViolation || reason != "rate limit exceeded" {
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
	if code, _ := closeOf(t, steady); code != 1012 {
		t.Fatalf("closed with %d on shutdown, want 1012", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// closeOf reads frames until the server's close frame, answers it, and
// returns its code and reason. (wsutil refuses 1012, which gobwas/ws does
// not know, so the frames are read by hand.)
func closeOf(t *testing.T, p peer) (ws.StatusCode, string) {
	t.Helper()
	p.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(p)
		if err != nil || h.Length > 1<<16 {
			t.Fatalf("no close frame: %v (length %d)", err, h.Length)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(p, payload); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if h.OpCode == ws.OpClose && len(payload) >= 2 {
			ws.WriteFrame(p, ws.MaskFrame(ws.NewCloseFrame(payload[:2])))
			return ws.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
	}
}
