package wshub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The tests in this file run in testing/synctest bubbles, where time is fake
// and advances only when every goroutine of the bubble is blocked: timers,
// deadlines and rates are checked to the millisecond without sleeping. The
// hub serves in-memory pipes on the portable path (epoll's goroutines block
// in system calls, which a bubble cannot wait for); the netpoll path shares
// every line of the logic tested here except the transport, and the tests in
// heartbeat_test.go and conn_test.go run the same features over real sockets.

// memListener is a net.Listener of in-memory pipes.
type memListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr{} }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// startBubbleHub serves a hub on an in-memory listener; call it inside a
// synctest bubble. The hub is closed when the test ends.
func startBubbleHub(t *testing.T, opts *Options) (*Hub, *memListener) {
	t.Helper()
	opts.portable = true
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln := &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	t.Cleanup(func() {
		h.Close()
		if err := <-served; !errors.Is(err, ErrHubClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return h, ln
}

// dial opens a pipe to the hub without upgrading.
func (l *memListener) dial(t *testing.T) *client {
	a, b := net.Pipe()
	l.conns <- a
	t.Cleanup(func() { b.Close() })
	return &client{t: t, nc: b, br: bufio.NewReader(b)}
}

// upgrade dials and sends an upgrade request, and returns the status.
func (l *memListener) upgrade(t *testing.T) (*client, int) {
	c := l.dial(t)
	c.write([]byte(upgradeRequest("mem")))
	return c, c.readResponse()
}

func (l *memListener) connect(t *testing.T) *client {
	t.Helper()
	c, status := l.upgrade(t)
	if status != 101 {
		t.Fatalf("upgrade status %d, want 101", status)
	}
	return c
}

// waitEOF reads and discards until the hub closes the pipe, within d.
func (c *client) waitEOF(d time.Duration) error {
	c.nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.br)
	return err
}

// eventLog collects OnEvent's events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) count(kind EventKind, reason string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind && e.Reason == reason {
			n++
		}
	}
	return n
}

func TestSyncSilentPeerPingedThenDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		opts := rec.options(false)
		opts.PingInterval = 25 * time.Second
		opts.PongTimeout = 10 * time.Second
		h, ln := startBubbleHub(t, opts)
		c := ln.connect(t)
		start := time.Now()
		// The sweep runs every quarter of the finest timeout (CloseTimeout,
		// 5 s): a deadline is acted on at most 1.25 s late.
		f, err := c.tryReadFrame(time.Minute)
		if err != nil || f.op != opPing {
			t.Fatalf("got op %d, %v; want a ping", f.op, err)
		}
		if el := time.Since(start); el < 25*time.Second || el > 26250*time.Millisecond {
			t.Errorf("pinged after %v, want 25 s to 26.25 s", el)
		}
		pinged := time.Now()
		if err := c.waitEOF(time.Minute); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(pinged); el < 10*time.Second || el > 11250*time.Millisecond {
			t.Errorf("dropped %v after the ping, want 10 s to 11.25 s", el)
		}
		if e := rec.waitClosed(t).err; e.Code != CloseAbnormal || e.Reason != "pong timeout" {
			t.Errorf("OnClose got %v, want 1006 pong timeout", e)
		}
		st := h.Stats()
		if st.PingsSent != 1 || st.Reasons["pong timeout"] != 1 || st.Closes[CloseAbnormal] != 1 || st.Conns != 0 {
			t.Errorf("stats: %d pings, reasons %v, closes %v, %d conns; want 1 ping, 1 pong timeout, 1 close 1006, 0 conns",
				st.PingsSent, st.Reasons, st.Closes, st.Conns)
		}
	})
}

func TestSyncPongRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := &Options{PingInterval: 25 * time.Second, PongTimeout: 10 * time.Second}
		h, ln := startBubbleHub(t, opts)
		c := ln.connect(t)
		for range 3 {
			f, err := c.tryReadFrame(time.Minute)
			if err != nil || f.op != opPing {
				t.Fatalf("got op %d, %v; want a ping", f.op, err)
			}
			time.Sleep(40 * time.Millisecond) // the peer's round trip
			c.write(clientFrame(true, opPong, f.payload, true))
		}
		synctest.Wait()
		st := h.Stats()
		if st.PingsSent != 3 || st.PongRTT.Count != 3 || st.Conns != 1 {
			t.Fatalf("stats: %d pings, %d pongs, %d conns; want 3, 3, 1", st.PingsSent, st.PongRTT.Count, st.Conns)
		}
		if r := st.PongRTT; r.Mean != 40*time.Millisecond || r.Max != 40*time.Millisecond || r.P50 != 40*time.Millisecond {
			t.Errorf("pong round trip %+v, want 40ms everywhere", r)
		}
	})
}

func TestSyncActivePeerIsNeverPinged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := &Options{PingInterval: 25 * time.Second}
		h, ln := startBubbleHub(t, opts)
		c := ln.connect(t)
		for range 12 { // two minutes, a message every 10 s
			time.Sleep(10 * time.Second)
			c.write(text("still here"))
		}
		synctest.Wait()
		if f, err := c.tryReadFrame(time.Second); err == nil {
			t.Errorf("an active peer got a frame (op %d)", f.op)
		}
		if n := h.Stats().PingsSent; n != 0 {
			t.Errorf("%d pings sent to an active peer", n)
		}
	})
}

func TestSyncMaxLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		opts := rec.options(false)
		opts.MaxLifetime = time.Minute
		opts.PingInterval = -1
		var log eventLog
		opts.OnEvent = log.add
		h, ln := startBubbleHub(t, opts)
		start := time.Now()
		c := ln.connect(t)
		f, err := c.tryReadFrame(2 * time.Minute)
		if err != nil || f.op != opClose || string(f.payload) != string(closeBody(CloseGoingAway, "max lifetime")) {
			t.Fatalf("got op %d %q, %v; want close 1001 max lifetime", f.op, f.payload, err)
		}
		// Up to 10% shorter for jitter, up to a sweep (1.25 s) and a 256 ms
		// step later.
		if el := time.Since(start); el < 54*time.Second || el > 61600*time.Millisecond {
			t.Errorf("closed after %v, want 54 s to 61.6 s", el)
		}
		c.nc.Write(clientFrame(true, opClose, f.payload[:2], true)) // the pipe may be closed already
		if e := rec.waitClosed(t).err; e.Code != CloseGoingAway || e.Reason != "max lifetime" {
			t.Errorf("OnClose got %v", e)
		}
		if n := h.Stats().Reasons["max lifetime"]; n != 1 || log.count(EventClosed, "max lifetime") != 1 {
			t.Errorf("counted %d lifetime closes, %d events; want 1", n, log.count(EventClosed, "max lifetime"))
		}
	})
}

func TestSyncRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		opts := rec.options(false)
		opts.MessageRate = 10
		opts.MessageBurst = 5
		var log eventLog
		opts.OnEvent = log.add
		h, ln := startBubbleHub(t, opts)

		// At the rate, for a minute: never limited.
		steady := ln.connect(t)
		for i := range 600 {
			steady.write(text(strconv.Itoa(i)))
			time.Sleep(100 * time.Millisecond)
		}
		// A burst of five is allowed; the sixth message goes over.
		flood := ln.connect(t)
		var burst []byte
		for i := range 8 {
			burst = append(burst, text(strconv.Itoa(i))...)
		}
		flood.write(burst)
		f, err := flood.tryReadFrame(time.Second)
		if err != nil || f.op != opClose || string(f.payload) != string(closeBody(ClosePolicyViolation, "rate limit exceeded")) {
			t.Fatalf("got op %d %q, %v; want close 1008 rate limit exceeded", f.op, f.payload, err)
		}
		synctest.Wait()
		per := map[*Conn]int{}
		for len(rec.messages) > 0 {
			per[(<-rec.messages).c]++
		}
		counts := []int{}
		for _, n := range per {
			counts = append(counts, n)
		}
		if len(per) != 2 || !(counts[0] == 600 && counts[1] == 5 || counts[0] == 5 && counts[1] == 600) {
			t.Errorf("messages delivered per connection %v, want 600 (steady) and 5 (flood)", counts)
		}
		st := h.Stats()
		if st.Reasons["rate limit exceeded"] != 1 || log.count(EventClosed, "rate limit exceeded") != 1 {
			t.Errorf("rate limit closes: %v, %d events; want 1", st.Reasons, log.count(EventClosed, "rate limit exceeded"))
		}
		if st.MessagesIn != 605 {
			t.Errorf("MessagesIn %d, want 605", st.MessagesIn)
		}
		if st.Conns != 1 {
			t.Errorf("%d connections open, want the steady one", st.Conns)
		}
	})
}

// slowConsumer connects a client that does not read, subscribes it to
// "feed", and publishes 100 messages of 100 bytes (102 on the wire) with
// the given policy; 40 fit in MaxQueuedBytes of 4,096. It checks that the
// queued bytes never exceed the bound.
func slowConsumer(t *testing.T, hubPolicy, chanPolicy, pubPolicy SlowPolicy) (*Hub, *client, *recorder) {
	rec := newRecorder()
	opts := rec.options(false)
	opts.MaxQueuedBytes = 4096
	opts.SlowConsumer = hubPolicy
	opts.ChannelPolicy = func(string) SlowPolicy { return chanPolicy }
	h, ln := startBubbleHub(t, opts)
	c := ln.connect(t)
	conn := <-rec.opened
	if err := h.Channel("feed").Subscribe(conn); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		msg := fmt.Appendf(nil, "%03d%097d", i, 0)
		h.Channel("feed").PublishWith(Text, msg, PublishOptions{Policy: pubPolicy})
		if i == 0 {
			// The portable writer takes the first message and blocks
			// writing it; the rest queue behind it.
			synctest.Wait()
		}
		if q := h.Stats().QueuedBytes; q > 4096 {
			t.Fatalf("after message %d: %d bytes queued, bound 4096", i, q)
		}
	}
	return h, c, rec
}

// readSeq reads messages until number last and returns their numbers.
func readSeq(t *testing.T, c *client, last int) []int {
	var got []int
	for {
		f, err := c.tryReadFrame(time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		n, _ := strconv.Atoi(string(f.payload[:3]))
		got = append(got, n)
		if n == last {
			return got
		}
	}
}

func TestSyncSlowConsumerClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c, rec := slowConsumer(t, SlowDefault, SlowDefault, SlowDefault)
		if e := rec.waitClosed(t).err; e.Code != ClosePolicyViolation || e.Reason != "slow consumer" {
			t.Errorf("OnClose got %v, want 1008 slow consumer", e)
		}
		c.waitEOF(time.Second)
		synctest.Wait()
		st := h.Stats()
		if st.Reasons["slow consumer"] != 1 || st.Closes[ClosePolicyViolation] != 1 || st.QueuedBytes != 0 || st.Subscriptions != 0 {
			t.Errorf("stats: reasons %v, closes %v, %d queued, %d subscriptions", st.Reasons, st.Closes, st.QueuedBytes, st.Subscriptions)
		}
	})
}

func TestSyncSlowConsumerDropNewest(t *testing.T) {
	for _, p := range []struct {
		name         string
		hub, ch, pub SlowPolicy
	}{
		{"hub", SlowDropNewest, SlowDefault, SlowDefault},
		{"channel", SlowClose, SlowDropNewest, SlowDefault},
		{"publish", SlowClose, SlowClose, SlowDropNewest},
	} {
		t.Run(p.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, c, rec := slowConsumer(t, p.hub, p.ch, p.pub)
				got := readSeq(t, c, 39)
				for i, n := range got {
					if n != i {
						t.Fatalf("got %v, want 0..39 in order", got)
					}
				}
				st := h.Stats()
				if st.Dropped != 60 || st.MessagesOut != 40 || len(rec.closed) != 0 {
					t.Errorf("stats: %d dropped, %d out, %d closed; want 60, 40, 0", st.Dropped, st.MessagesOut, len(rec.closed))
				}
			})
		})
	}
}

func TestSyncSlowConsumerDropOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c, rec := slowConsumer(t, SlowClose, SlowDropOldest, SlowDefault)
		got := readSeq(t, c, 99)
		// Message 0 was being written; the oldest queued behind it made
		// room for the newest, 61 to 99.
		if len(got) != 40 || got[0] != 0 || got[1] != 61 {
			t.Fatalf("got %v, want 0 then 61..99", got)
		}
		st := h.Stats()
		if int(st.Dropped) != 100-len(got) || len(rec.closed) != 0 {
			t.Errorf("%d dropped, %d received, %d closed; want %d dropped, none closed", st.Dropped, len(got), len(rec.closed), 100-len(got))
		}
	})
}

// TestSyncMessageLargerThanTheBound: a message whose frame cannot fit even
// in an empty queue is refused with ErrMessageTooBig before anything is
// written, whatever the policy; nothing is dropped or closed, and the
// connection stays usable.
func TestSyncMessageLargerThanTheBound(t *testing.T) {
	for _, policy := range []SlowPolicy{SlowClose, SlowDropNewest, SlowDropOldest} {
		t.Run(policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newRecorder()
				opts := rec.options(false)
				opts.MaxQueuedBytes = 4096
				opts.SlowConsumer = policy
				h, ln := startBubbleHub(t, opts)
				c := ln.connect(t)
				conn := <-rec.opened
				if err := conn.WriteMessage(Binary, make([]byte, 5000)); err != ErrMessageTooBig {
					t.Fatalf("WriteMessage of 5000 bytes = %v, want ErrMessageTooBig", err)
				}
				// The largest that fits: 4096 bytes of frame, header
				// included, once the queue holds nothing else.
				synctest.Wait()
				if err := conn.WriteMessage(Binary, make([]byte, 4096-4)); err != nil {
					t.Fatalf("WriteMessage of a 4096-byte frame = %v", err)
				}
				c.expectMessage(opBinary, string(make([]byte, 4096-4)))
				h.Channel("x").Subscribe(conn)
				if n, err := h.Channel("x").Publish(Binary, make([]byte, 5000)); n != 0 || err != ErrMessageTooBig {
					t.Fatalf("Publish of 5000 bytes = %d, %v; want 0, ErrMessageTooBig", n, err)
				}
				if n, err := h.Channel("x").PublishBatch(Binary, [][]byte{[]byte("a"), make([]byte, 5000)}, PublishOptions{}); n != 0 || err != ErrMessageTooBig {
					t.Fatalf("PublishBatch with a 5000-byte message = %d, %v; want 0, ErrMessageTooBig: none of the batch sent", n, err)
				}
				if n, err := h.Broadcast(Binary, make([]byte, 5000)); n != 0 || err != ErrMessageTooBig {
					t.Fatalf("Broadcast of 5000 bytes = %d, %v; want 0, ErrMessageTooBig", n, err)
				}
				synctest.Wait() // the writer has let go of the frame read above
				if err := conn.WriteMessage(Text, []byte("fits")); err != nil {
					t.Fatalf("WriteMessage after the refusals = %v", err)
				}
				c.expectMessage(opText, "fits")
				if st := h.Stats(); st.Dropped != 0 || st.Conns != 1 {
					t.Errorf("%d dropped, %d conns; want none dropped and the connection kept", st.Dropped, st.Conns)
				}
			})
		})
	}
}

func TestSyncQueueBudgetRefusesUpgrades(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		opts := rec.options(false)
		opts.MaxTotalQueuedBytes = 2000
		var log eventLog
		opts.OnEvent = log.add
		h, ln := startBubbleHub(t, opts)
		slow := ln.connect(t)
		conn := <-rec.opened
		for i := range 30 {
			conn.WriteMessage(Text, fmt.Appendf(nil, "%03d%097d", i, 0))
		}
		synctest.Wait()
		if q := h.Stats().QueuedBytes; q != 30*102 {
			t.Fatalf("%d bytes queued, want %d", q, 30*102)
		}
		if _, status := ln.upgrade(t); status != 503 {
			t.Fatalf("upgrade over the budget got %d, want 503", status)
		}
		readSeq(t, slow, 29) // the slow client catches up
		synctest.Wait()
		if q := h.Stats().QueuedBytes; q != 0 {
			t.Fatalf("%d bytes queued after the client read everything", q)
		}
		ln.connect(t)
		st := h.Stats()
		if st.Rejected != 1 || log.count(EventRejected, "server overloaded") != 1 || st.Conns != 2 {
			t.Errorf("stats: %d rejected, %d events, %d conns; want 1, 1, 2", st.Rejected, log.count(EventRejected, "server overloaded"), st.Conns)
		}
	})
}

func TestSyncMaxConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		opts := rec.options(false)
		opts.MaxConns = 2
		h, ln := startBubbleHub(t, opts)
		first := ln.connect(t)
		ln.connect(t)
		if _, status := ln.upgrade(t); status != 503 {
			t.Fatalf("third upgrade got %d, want 503", status)
		}
		first.write(clientFrame(true, opClose, closeBody(CloseNormal, ""), true))
		rec.waitClosed(t)
		ln.connect(t)
		st := h.Stats()
		if st.Rejected != 1 || st.Conns != 2 || st.Closes[CloseNormal] != 1 {
			t.Errorf("stats: %d rejected, %d conns, closes %v; want 1, 2, {1000: 1}", st.Rejected, st.Conns, st.Closes)
		}
	})
}

func TestSyncPacedDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const conns = 40
		opts := &Options{DrainRate: 10, DrainCode: CloseServiceRestart}
		h, ln := startBubbleHub(t, opts)
		start := time.Now()
		closedAt := make(chan time.Duration, conns)
		for range conns {
			c := ln.connect(t)
			go func() {
				f, err := c.tryReadFrame(time.Minute)
				if err != nil || f.op != opClose || len(f.payload) < 2 || string(f.payload[:2]) != string(closeBody(CloseServiceRestart, "")) {
					t.Errorf("after %v: got op %d %q, %v; want close 1012", time.Since(start), f.op, f.payload, err)
					closedAt <- time.Since(start)
					return
				}
				closedAt <- time.Since(start)
				// The answer may find the pipe closed: without a half
				// close, the portable path closes it once its frame is out.
				c.nc.Write(clientFrame(true, opClose, f.payload[:2], true))
				c.waitEOF(time.Minute)
			}()
		}
		if err := h.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		close(closedAt)
		var first, last time.Duration = time.Hour, 0
		n := 0
		for d := range closedAt {
			first, last = min(first, d), max(last, d)
			n++
		}
		// 40 connections at 10 per second: 4 s on average, each gap drawn
		// from 50 to 150 ms.
		if n != conns || first > 150*time.Millisecond || last < 2*time.Second || last > 6*time.Second {
			t.Errorf("%d closes from %v to %v, want %d spread over about 4 s", n, first, last, conns)
		}
	})
}

func TestSyncStatsCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		opts := rec.options(true) // echo
		h, ln := startBubbleHub(t, opts)
		a, b := ln.connect(t), ln.connect(t)
		ca, cb := <-rec.opened, <-rec.opened
		h.Channel("room").Subscribe(ca)
		h.Channel("room").Subscribe(cb)
		h.Channel("other").Subscribe(ca)
		ca.SetUser("ann")
		for i := range 10 {
			a.write(text(fmt.Sprintf("%010d", i))) // 10 bytes each
			a.readFrame()
		}
		h.Channel("room").Publish(Binary, make([]byte, 200)) // 204 bytes on the wire, twice
		a.readFrame()
		b.readFrame()
		st := h.Stats()
		want := Stats{Conns: 2, Channels: 2, Users: 1, Subscriptions: 4,
			MessagesIn: 10, BytesIn: 100, MessagesOut: 12, BytesOut: 10*12 + 2*204}
		if st.Conns != want.Conns || st.Channels != want.Channels || st.Users != want.Users ||
			st.Subscriptions != want.Subscriptions || st.MessagesIn != want.MessagesIn ||
			st.BytesIn != want.BytesIn || st.MessagesOut != want.MessagesOut || st.BytesOut != want.BytesOut {
			t.Errorf("stats %+v\nwant %+v", st, want)
		}
		a.write(clientFrame(true, opClose, closeBody(4000, "bye"), true))
		if f := a.readFrame(); f.op != opClose || string(f.payload[:2]) != string(closeBody(4000, "")) {
			t.Errorf("got op %d %q, want the close frame echoed", f.op, f.payload)
		}
		b.nc.Close()
		rec.waitClosed(t)
		rec.waitClosed(t)
		st = h.Stats()
		if st.Conns != 0 || st.Channels != 0 || st.Users != 0 || st.Subscriptions != 0 ||
			st.Closes[4000] != 1 || st.Closes[CloseAbnormal] != 1 {
			t.Errorf("after both closed: %+v", st)
		}
	})
}

func TestDrainReasonAdvisesDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       Options
		conns      int64
		prefix     string
		minS, maxS int
	}{
		{"one at once", Options{}, 1, "server shutting down", 1, 1},
		{"5000 at once", Options{}, 5000, "server shutting down", 1, 6},
		{"a million at once", Options{}, 1e6, "server shutting down", 1, 31},
		{"paced", Options{DrainRate: 100}, 5000, "server shutting down", 1, 1},
		{"restart", Options{DrainCode: CloseServiceRestart}, 1, "server restarting", 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.portable = true
			h, err := New(&tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			seen := map[int]bool{}
			for range 200 {
				r := h.drainReason(tc.conns)
				var secs int
				if _, err := fmt.Sscanf(strings.TrimPrefix(r, tc.prefix), "; retry after %ds", &secs); err != nil || !strings.HasPrefix(r, tc.prefix) {
					t.Fatalf("reason %q, want %q; retry after Ns", r, tc.prefix)
				}
				if secs < tc.minS || secs > tc.maxS || len(r) > maxControlPayload-2 {
					t.Fatalf("reason %q: want %d to %d s, at most 123 bytes", r, tc.minS, tc.maxS)
				}
				seen[secs] = true
			}
			if tc.maxS > tc.minS && len(seen) < 2 {
				t.Errorf("200 reasons all advise %v: want them spread from %d to %d s", seen, tc.minS, tc.maxS)
			}
		})
	}
}
