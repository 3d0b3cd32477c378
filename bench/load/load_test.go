package load

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub"
)

// echoServer serves a hub that echoes every message but those drop says to
// drop, and returns its ws:// URL.
func echoServer(t *testing.T, drop func(n int64) bool) string {
	var n atomic.Int64
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) {
			if !drop(n.Add(1)) {
				c.WriteMessage(typ, p)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hub}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
	})
	return "ws://" + ln.Addr().String() + "/ws"
}

// TestRunCountsEverything: ramp, rate and sessions against a faithful echo:
// every message echoed, connections replaced, percentiles and progress.
func TestRunCountsEverything(t *testing.T) {
	progress := 0
	s := Run(context.Background(), Config{
		URL: echoServer(t, func(int64) bool { return false }), Conns: 20, Ramp: 500 * time.Millisecond,
		Hold: 2 * time.Second, Rate: 50, Session: time.Second, Size: 100, Grace: 2 * time.Second,
		Progress: func(Snapshot) { progress++ },
	})
	if s.Lost != 0 || s.Wrong != 0 || s.DialErrors != 0 {
		t.Fatalf("lost %d, wrong %d, dial errors %d; want none", s.Lost, s.Wrong, s.DialErrors)
	}
	// 20 connections for 2.5 s with 1 s sessions: at least 40 upgrades.
	if s.Connected < 40 || s.Sent < 1000 || s.Received != s.Sent {
		t.Errorf("%d upgrades, %d sent, %d echoed", s.Connected, s.Sent, s.Received)
	}
	if s.RTT.Count() != uint64(s.Received) || s.RTT.Percentile(0.99) < s.RTT.Percentile(0.5) || progress < 2 {
		t.Errorf("rtt %v over %d samples, %d progress lines", s.RTT, s.RTT.Count(), progress)
	}
}

// TestRunReportsLoss: a server that drops messages is caught.
func TestRunReportsLoss(t *testing.T) {
	s := Run(context.Background(), Config{
		URL: echoServer(t, func(n int64) bool { return n == 25 }), Conns: 1,
		Hold: time.Second, Rate: 100, Size: 16, Grace: 500 * time.Millisecond,
	})
	if s.Lost+s.Wrong == 0 {
		t.Fatalf("a dropped message went unnoticed: %d sent, %d echoed", s.Sent, s.Received)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.Percentile(c.q)
		if got < c.want || float64(got) > 1.07*float64(c.want) {
			t.Errorf("p%v = %v, want %v within 7%%", c.q*100, got, c.want)
		}
	}
	// The last of a bucket's 16 sub-buckets ends at the next power of
	// two, not at the power it starts from.
	var top Histogram
	top.Record(1<<20 - 1)
	top.Record(2 << 20)
	if got := top.Percentile(0); got < 1<<20-1 || got > 1<<20 {
		t.Errorf("percentile of %v = %v, want it within its bucket", time.Duration(1<<20-1), got)
	}
	if h.Max() != time.Millisecond || h.Count() != 1000 {
		t.Errorf("max %v, count %d", h.Max(), h.Count())
	}
}

// TestEchoAgainstWshub runs the echo loop against an in-process hub and
// checks that it counts round trips and no errors.
func TestEchoAgainstWshub(t *testing.T) {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hub}
	go srv.Serve(ln)
	defer srv.Close()

	conns, lat, err := Dial(context.Background(), "ws://"+ln.Addr().String()+"/ws", 20)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(conns)
	if len(lat) != 20 || lat[0] <= 0 {
		t.Fatalf("upgrade latencies %v, want 20 positive ones", lat)
	}
	r := Echo(conns, 300, 100*time.Millisecond, 500*time.Millisecond)
	if r.Errors != 0 || r.Messages == 0 || r.P99 < r.P50 {
		t.Fatalf("echo result %+v, want round trips and no errors", r)
	}
}

// TestReceiveChecksSequenceAndLatency: a gap in a connection's sequence
// numbers counts as lost, a step back as out of order, and stamped binary
// messages record their latency.
func TestReceiveChecksSequenceAndLatency(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	c := &Conn{Conn: client, br: bufio.NewReader(client)}
	defer c.Close()
	r := Receive([]*Conn{c})
	for _, seq := range []uint64{5, 6, 9, 10, 8} {
		p := make([]byte, 64)
		Stamp(p, seq)
		if err := ws.WriteFrame(server, ws.NewBinaryFrame(p)); err != nil {
			t.Fatal(err)
		}
	}
	if !r.WaitReceived(5, 5*time.Second) {
		t.Fatalf("%d of 5 messages", r.Received())
	}
	if r.Lost() != 2 || r.OutOfOrder() != 1 {
		t.Errorf("lost %d, out of order %d; want 2 (7 and 8 skipped) and 1", r.Lost(), r.OutOfOrder())
	}
	if n := r.Latency().Count(); n != 5 {
		t.Errorf("%d latencies recorded, want 5", n)
	}
}
