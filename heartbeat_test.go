package wshub

import (
	"testing"
	"time"
)

func TestSilentPeerIsPingedThenDropped(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.PingInterval = 100 * time.Millisecond
			opts.PongTimeout = 100 * time.Millisecond
			_, addr := startHub(t, opts, d)
			start := time.Now() // before the hub's clock starts: a late 101 must not shorten it
			c := connect(t, addr)
			if f := c.readFrame(); f.op != opPing {
				t.Fatalf("got op %d, want a ping", f.op)
			}
			c.expectEOF() // never answers
			e := rec.waitClosed(t).err
			if e.Code != CloseAbnormal || e.Reason != "pong timeout" {
				t.Errorf("OnClose got %v, want 1006 pong timeout", e)
			}
			if el := time.Since(start); el < 150*time.Millisecond || el > 3*time.Second {
				t.Errorf("dropped after %v, want about interval + timeout (200ms)", el)
			}
		})
	}
}

func TestAnsweringPeerStays(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	// Margins for a loaded machine: the pong has a second to be read. A
	// silent peer is pinged every max(PingInterval, PongTimeout).
	opts.PingInterval = 100 * time.Millisecond
	opts.PongTimeout = time.Second
	_, addr := startHub(t, opts, doors[1])
	c := connect(t, addr)
	pings := 0
	for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); {
		f, err := c.tryReadFrame(2 * time.Second)
		if err != nil {
			t.Fatalf("connection ended: %v", err)
		}
		if f.op == opPing {
			pings++
			c.write(clientFrame(true, opPong, f.payload, true))
		}
	}
	if pings < 2 {
		t.Errorf("%d pings in 2.5s, want at least 2", pings)
	}
	if len(rec.closed) != 0 {
		t.Errorf("a peer answering pings was closed: %v", (<-rec.closed).err)
	}
}

func TestActivePeerIsNotPinged(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(true)
	opts.PingInterval = 400 * time.Millisecond
	_, addr := startHub(t, opts, doors[0])
	c := connect(t, addr)
	last := time.Now()
	for range 30 { // about a second of traffic, a message every 30ms
		c.write(text("busy"))
		gap := time.Since(last) // the silence before this message
		last = time.Now()
		f := c.readFrame()
		if f.op == opPing && gap > opts.PingInterval/2 {
			// A machine so busy that the 30 ms sleep took half the
			// interval: the ping may be due. The echo follows.
			f = c.readFrame()
		}
		if f.op != opText {
			t.Fatalf("got op %d after %v of silence, want only echoes: an active peer needs no ping", f.op, gap)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.PingInterval = -1
	opts.IdleTimeout = 200 * time.Millisecond
	_, addr := startHub(t, opts, doors[1])
	c := connect(t, addr)
	start := time.Now()
	if reason := c.expectClose(CloseGoingAway); reason != "idle timeout" {
		t.Errorf("close reason %q, want idle timeout", reason)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("closed after %v, before IdleTimeout", el)
	}
}

// BenchmarkSweep times one sweep over 19,000 idle connections with the
// heartbeat and the lifetime limit on: the work the poller's one timer does
// for all of them.
func BenchmarkSweep(b *testing.B) {
	const n = 19000
	h, err := New(&Options{MaxLifetime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	p := h.p
	p.tableMu.Lock()
	p.table = make([]*Conn, n)
	for i := range p.table {
		c := h.newConn(connOpen)
		c.fd = int32(i)
		p.table[i] = c
	}
	p.tableMu.Unlock()
	defer func() { // the connections have no sockets: just forget them
		p.tableMu.Lock()
		clear(p.table)
		p.tableMu.Unlock()
	}()
	var due []*Conn
	b.ResetTimer()
	for range b.N {
		due = p.sweep(due[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/sweep")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/conn")
}
