package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsPage runs the example, chats in a room with two clients, and
// scrapes /metrics: the hub's figures are there, next to the Go runtime's.
func TestMetricsPage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addr := ln.Addr().String()
	var conns []net.Conn
	for range 2 {
		nc, _, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws?room=lobby")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		conns = append(conns, nc)
	}
	if _, _, _, err := ws.Dial(context.Background(), "ws://"+addr+"/ws"); err == nil {
		t.Error("an upgrade without a room was accepted")
	}
	// Both are members once the hub says so; then one speaks, the other hears.
	scrapeUntil(t, addr, `
# HELP wshub_subscriptions Channel memberships, user channels included.
# TYPE wshub_subscriptions gauge
wshub_subscriptions 2
`, "wshub_subscriptions")
	if err := wsutil.WriteClientText(conns[0], []byte("hello")); err != nil {
		t.Fatal(err)
	}
	conns[1].SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := wsutil.ReadServerText(conns[1]); err != nil || string(p) != "hello" {
		t.Fatalf("got %q, %v", p, err)
	}
	const want = `
# HELP wshub_connections Open WebSocket connections.
# TYPE wshub_connections gauge
wshub_connections 2
# HELP wshub_channels Channels with members, user channels not included.
# TYPE wshub_channels gauge
wshub_channels 1
# HELP wshub_messages_received_total Complete messages received.
# TYPE wshub_messages_received_total counter
wshub_messages_received_total 1
# HELP wshub_messages_sent_total Messages sent or queued, one per connection.
# TYPE wshub_messages_sent_total counter
wshub_messages_sent_total 1
`
	// The publisher counts its deliveries once it has queued them all,
	// which may be after the first reached its reader.
	scrapeUntil(t, addr, want, "wshub_connections", "wshub_channels", "wshub_messages_received_total", "wshub_messages_sent_total")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "\ngo_goroutines ") {
		t.Error("the Go runtime's metrics are missing beside the hub's")
	}
}

// scrapeUntil scrapes the example's /metrics until the named metrics read as
// want, for up to 10 s.
func scrapeUntil(t *testing.T, addr, want string, names ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := testutil.ScrapeAndCompare("http://"+addr+"/metrics", strings.NewReader(want), names...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
