package load

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Config describes a load run against an echo server (any ws:// URL that
// sends each message back to its sender).
type Config struct {
	URL     string
	Conns   int           // connections held at once
	Ramp    time.Duration // connections are opened evenly over Ramp
	Hold    time.Duration // run time after the ramp
	Rate    float64       // messages per second per connection; 0: closed loop (send when the echo arrives)
	Session time.Duration // each connection closes after Session and a new one takes its place; 0: the whole run
	Size    int           // message size in bytes, at least 16
	Grace   time.Duration // time left at the end for messages in flight

	// Progress, if set, is called every second while the run lasts.
	Progress func(Snapshot)
}

// Snapshot is the state of a run, at any moment or at its end.
type Snapshot struct {
	Elapsed        time.Duration
	Open           int   // connections open now
	Connected      int64 // upgrades completed, sessions included
	DialErrors     int64
	Sent, Received int64
	Wrong          int64      // echoes that differ from what was sent, or came out of order
	Lost           int64      // at the end: sent and never echoed
	RTT            *Histogram // round trips, send to echo
	Connect        *Histogram // dial to upgraded
}

// Run runs the load described by cfg until ctx ends or the ramp and hold
// are over, then waits up to Grace for echoes still in flight.
func Run(ctx context.Context, cfg Config) Snapshot {
	cfg.Size = max(cfg.Size, 16)
	r := &runner{cfg: cfg, start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, cfg.Ramp+cfg.Hold)
	defer cancel()
	var wg sync.WaitGroup
	for i := range cfg.Conns {
		wg.Go(func() {
			if cfg.Conns > 1 {
				sleep(ctx, cfg.Ramp*time.Duration(i)/time.Duration(cfg.Conns-1))
			}
			for ctx.Err() == nil {
				r.session(ctx)
			}
		})
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				if cfg.Progress != nil {
					cfg.Progress(r.snapshot())
				}
			}
		}
	}()
	wg.Wait()
	close(stopProgress)
	<-progressDone
	s := r.snapshot()
	s.Lost = s.Sent - s.Received - s.Wrong
	return s
}

type runner struct {
	cfg   Config
	start time.Time

	open                  atomic.Int64
	connected, dialErrors atomic.Int64
	sent, received, wrong atomic.Int64
	rtt, connect          Histogram
}

func (r *runner) snapshot() Snapshot {
	return Snapshot{
		Elapsed:    time.Since(r.start),
		Open:       int(r.open.Load()),
		Connected:  r.connected.Load(),
		DialErrors: r.dialErrors.Load(),
		Sent:       r.sent.Load(),
		Received:   r.received.Load(),
		Wrong:      r.wrong.Load(),
		RTT:        r.rtt.clone(),
		Connect:    r.connect.clone(),
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// session runs one connection: dial, send at the configured rate (or in a
// closed loop) until the session or the run ends, then wait up to Grace
// for the echoes still due, and close.
func (r *runner) session(ctx context.Context) {
	start := time.Now()
	nc, br, _, err := ws.Dialer{Timeout: 30 * time.Second}.Dial(ctx, r.cfg.URL)
	if err != nil {
		// A dial that the end of the run cut short is no error; the
		// dialer's deadline, the run's, can pass a moment before ctx
		// reports it.
		if dl, ok := ctx.Deadline(); ctx.Err() == nil && (!ok || time.Now().Before(dl)) {
			r.dialErrors.Add(1)
			sleep(ctx, 100*time.Millisecond)
		}
		return
	}
	r.connect.Record(time.Since(start))
	r.connected.Add(1)
	r.open.Add(1)
	defer r.open.Add(-1)
	defer nc.Close()
	if br == nil {
		br = bufio.NewReaderSize(nc, 4096)
	}
	sctx := ctx
	if r.cfg.Session > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, r.cfg.Session)
		defer cancel()
	}

	var (
		sent, got atomic.Uint64 // messages sent and echoed on this connection
		echoed    = make(chan struct{}, 1)
		readErr   = make(chan struct{})
	)
	c := &Conn{Conn: nc, br: br}
	go func() { // reader: checks each echo's sequence and times it
		defer close(readErr)
		buf := make([]byte, r.cfg.Size)
		var next uint64 = 1
		for {
			p, err := c.ReadMessage(buf)
			if err != nil {
				return
			}
			if len(p) != r.cfg.Size || binary.BigEndian.Uint64(p) != next {
				r.wrong.Add(1)
				return
			}
			next++
			got.Add(1)
			r.rtt.Record(time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(p[8:]))))
			r.received.Add(1)
			select {
			case echoed <- struct{}{}:
			default:
			}
		}
	}()

	payload := make([]byte, r.cfg.Size)
	for i := 16; i < len(payload); i++ {
		payload[i] = byte('a' + i%26)
	}
	var interval time.Duration
	if r.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.cfg.Rate)
		// Spread the connections' sends over the interval.
		sleep(sctx, rand.N(interval))
	}
	send := func() bool {
		seq := sent.Add(1)
		binary.BigEndian.PutUint64(payload, seq)
		binary.BigEndian.PutUint64(payload[8:], uint64(time.Now().UnixNano()))
		if _, err := nc.Write(Frame(ws.OpBinary, payload)); err != nil {
			sent.Add(^uint64(0))
			return false
		}
		r.sent.Add(1)
		return true
	}
	if interval > 0 {
		t := time.NewTicker(interval)
	loop:
		for {
			select {
			case <-sctx.Done():
				break loop
			case <-readErr:
				break loop
			case <-t.C:
				if !send() {
					break loop
				}
			}
		}
		t.Stop()
	} else {
	closed:
		for send() {
			select {
			case <-sctx.Done():
				break closed
			case <-readErr:
				break closed
			case <-echoed:
			}
		}
	}
	// Wait for the echoes still due, then close with a close frame.
	deadline := time.Now().Add(r.cfg.Grace)
	for got.Load() < sent.Load() && time.Now().Before(deadline) {
		select {
		case <-readErr:
			deadline = time.Now()
		case <-echoed:
		case <-time.After(10 * time.Millisecond):
		}
	}
	ws.WriteFrame(nc, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	nc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, nc) // until the server closes or a second passes
	<-readErr
}

// Histogram counts durations in logarithmic buckets: 16 per power of two,
// so a percentile is within about 6% of the true value. It is safe for
// concurrent use and costs 8 KB.
type Histogram struct {
	buckets [64 * 16]atomic.Uint64
	max     atomic.Int64
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 1))
	e := bits.Len64(v) - 1 // 2^e <= v < 2^(e+1)
	var sub uint64
	if e >= 4 {
		sub = (v >> (e - 4)) & 15
	} else {
		sub = (v << (4 - e)) & 15
	}
	return e*16 + int(sub)
}

// Record counts one duration.
func (h *Histogram) Record(d time.Duration) {
	h.buckets[bucketOf(d)].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *Histogram) clone() *Histogram {
	c := new(Histogram)
	for i := range h.buckets {
		c.buckets[i].Store(h.buckets[i].Load())
	}
	c.max.Store(h.max.Load())
	return c
}

// Count returns the durations recorded.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// Max returns the longest duration recorded.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Percentile returns the upper bound of the bucket holding quantile q.
func (h *Histogram) Percentile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(q * float64(total))
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen > rank {
			e, sub := i/16, uint64(i%16)
			var upper uint64
			if e >= 4 {
				// (sub+1)<<(e-4) is 1<<e for the last sub-bucket: added,
				// not or-ed, it reaches the next power of two.
				upper = 1<<e + (sub+1)<<(e-4)
			} else {
				upper = 1<<e + ((sub+1)<<e)>>4
			}
			return min(time.Duration(upper), h.Max())
		}
	}
	return h.Max()
}

// String summarizes the histogram as p50/p90/p99/max.
func (h *Histogram) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %v p90 %v p99 %v max %v", r(h.Percentile(0.5)), r(h.Percentile(0.9)), r(h.Percentile(0.99)), r(h.Max()))
}
