package wshub

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The inbound budget over real sockets, through every door: attackers that
// hold unfinished messages are stopped by TCP back-pressure while healthy
// clients go on, and finish whole once they send the rest.

// attackFrame is a masked binary frame of size bytes whose payload is a
// pattern the receiver can check; one copy serves every attacker.
func attackFrame(size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return clientFrame(true, opBinary, p, true)
}

func checkPattern(p []byte) bool {
	for i, b := range p {
		if b != byte(i*7) {
			return false
		}
	}
	return true
}

// TestInboundBudgetHoldsAttackers runs alone (no t.Parallel) so that the
// heap it measures is its own.
func TestInboundBudgetHoldsAttackers(t *testing.T) {
	const (
		attackers = 200
		healthy   = 100
		size      = 1 << 20
		budget    = 4 << 20
	)
	frame := attackFrame(size)
	for _, d := range doors[:4] { // the hand-off doors lead to the same read path: not worth 200 MiB more each
		t.Run(d.name, func(t *testing.T) {
			var whole, broken atomic.Int64
			opts := &Options{
				MaxMessageSize:        size,
				MaxTotalBufferedBytes: budget,
				OnMessage: func(c *Conn, typ MessageType, p []byte) {
					if len(p) < size {
						c.WriteMessage(typ, p) // healthy clients: echo
						return
					}
					if len(p) == size && checkPattern(p) {
						whole.Add(1)
					} else {
						broken.Add(1)
					}
				},
			}
			h, addr := startHub(t, opts, d)
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)

			// Each attacker sends all but the last byte, then waits.
			release := make(chan struct{})
			var wg sync.WaitGroup
			for range attackers {
				c := connect(t, addr)
				wg.Go(func() {
					if _, err := c.nc.Write(frame[:len(frame)-1]); err != nil {
						return
					}
					<-release
					c.nc.Write(frame[len(frame)-1:])
				})
			}
			waitFor(t, func() bool { return h.Stats().Paused > attackers/2 })

			// Healthy clients echo small messages all the while.
			clients := make([]*client, healthy)
			for i := range clients {
				clients[i] = connect(t, addr)
			}
			for round := range 5 {
				for _, c := range clients {
					c.write(text("ping"))
				}
				for _, c := range clients {
					c.expectMessage(opText, "ping")
				}
				if round == 2 {
					var during runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&during)
					st := h.Stats()
					grew := int64(during.HeapInuse) - int64(before.HeapInuse)
					t.Logf("during the attack: %d buffered, %d paused, heap in use +%d MiB", st.BufferedBytes, st.Paused, grew>>20)
					// The bound of MaxTotalBufferedBytes: the budget, one
					// message in the lane, a read buffer per worker that was
					// reading when the budget ran out, 4 KiB per portable
					// connection. Without the budget this is 200 MiB.
					if limit := int64(budget + size + 4<<20); st.BufferedBytes > limit {
						t.Errorf("%d bytes buffered, want at most %d", st.BufferedBytes, limit)
					}
					if limit := int64(budget + size + 24<<20); grew > limit {
						t.Errorf("heap in use grew by %d MiB under attack, want under %d MiB", grew>>20, limit>>20)
					}
				}
			}

			// The attackers finish: each message arrives whole.
			close(release)
			wg.Wait()
			// 200 MiB through a 4 MiB budget, checked byte by byte under
			// the race detector: seconds, more on a busy machine.
			waitForWithin(t, time.Minute, func() bool { return whole.Load()+broken.Load() == attackers })
			if n := broken.Load(); n != 0 {
				t.Errorf("%d messages arrived damaged", n)
			}
			waitFor(t, func() bool { st := h.Stats(); return st.BufferedBytes == 0 && st.Paused == 0 })
			if st := h.Stats(); st.ReadsPaused == 0 {
				t.Errorf("no connection was paused: the attack did not test the budget")
			}
		})
	}
}

func TestAnnouncedLengthCostsWhatArrived(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, nil, d)
			c := connect(t, addr)
			frame := attackFrame(1 << 20)
			c.write(frame[:14+10]) // the header of 1 MiB, then 10 bytes
			waitFor(t, func() bool { return h.Stats().BufferedBytes > 0 })
			if got := h.Stats().BufferedBytes; got > 512 {
				t.Errorf("a header announcing 1 MiB and 10 bytes hold %d bytes, want at most 512", got)
			}
		})
	}
}

// politeClose reads until the hub's close frame and answers it at once, as
// a well-behaved client does, but leaves the socket open: the hub must see
// the answer to finish. It returns the code.
func politeClose(c *client) CloseCode {
	c.t.Helper()
	for {
		f := c.readFrame()
		if f.op != opClose {
			continue
		}
		c.write(clientFrame(true, opClose, f.payload[:min(2, len(f.payload))], true))
		if len(f.payload) < 2 {
			return CloseNoStatus
		}
		return CloseCode(binary.BigEndian.Uint16(f.payload))
	}
}

// TestHubClosesFinishOnTheAnswer checks, for every close the hub starts,
// that a peer answering the close frame ends the connection at once rather
// than at CloseTimeout, even when the refused message was still arriving.
func TestHubClosesFinishOnTheAnswer(t *testing.T) {
	t.Parallel()
	const size = 64 << 10
	big := clientFrame(true, opBinary, make([]byte, size+1), true)
	cases := []struct {
		name  string
		input []byte
		close func(h *Hub, c *Conn)
		want  CloseCode
	}{
		{name: "message too big", input: big, want: CloseMessageTooBig},
		{name: "fragments too big", input: append(clientFrame(false, opBinary, make([]byte, size), true),
			clientFrame(true, opContinuation, make([]byte, 10), true)...), want: CloseMessageTooBig},
		{name: "protocol error", input: clientFrame(true, opText, []byte("x"), false), want: CloseProtocolError},
		{name: "invalid utf-8", input: text("\xff"), want: CloseInvalidPayload},
		{name: "rate limit", input: append(append(text("1"), text("2")...), text("3")...), want: ClosePolicyViolation},
		{name: "Conn.Close", close: func(_ *Hub, c *Conn) { c.Close(4000, "bye") }, want: 4000},
		{name: "Shutdown", close: func(h *Hub, _ *Conn) {
			go h.Shutdown(context.Background())
		}, want: CloseGoingAway},
	}
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					rec := newRecorder()
					opts := rec.options(false)
					opts.MaxMessageSize = size
					opts.MessageRate, opts.MessageBurst = 1, 1
					opts.CloseTimeout = 10 * time.Second // what it took before
					h, addr := startHub(t, opts, d)
					c := connect(t, addr)
					conn := <-rec.opened
					start := time.Now()
					if tc.input != nil {
						go c.nc.Write(tc.input) // the hub reads it through
					} else {
						tc.close(h, conn)
					}
					if got := politeClose(c); got != tc.want {
						t.Fatalf("close code %d, want %d", got, tc.want)
					}
					e := rec.waitClosed(t)
					took := time.Since(start)
					if e.err.Code != tc.want {
						t.Errorf("OnClose got %v, want code %d", e.err, tc.want)
					}
					t.Logf("violation to OnClose: %v", took)
					// Well under the CloseTimeout of 10 s it took before; a
					// quiet machine takes about a millisecond.
					if took > 3*time.Second {
						t.Errorf("OnClose after %v: the hub did not see the answer", took)
					}
				})
			}
		})
	}
}

func TestSlowConsumerReceivesItsClose(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 256 << 10
			opts.CloseTimeout = 10 * time.Second
			h, addr := startHub(t, opts, d)
			c := connect(t, addr) // does not read until it is closed
			conn := <-rec.opened
			chunk := make([]byte, 16<<10)
			var err error
			for i := 0; i < 100000 && err == nil; i++ {
				err = conn.WriteMessage(Binary, chunk)
			}
			if !errors.Is(err, ErrSlowConsumer) {
				t.Fatalf("writes ended with %v, want ErrSlowConsumer", err)
			}
			// What stays: a partly written frame and the close frame; on
			// the netpoll path a writev in flight keeps its frames until
			// it returns, on the portable one the writer goroutine holds
			// up to half the bound (see the README's known limits).
			limit := int64(len(chunk)) + 64
			if d.portable {
				limit += int64(opts.MaxQueuedBytes / 2)
			}
			waitFor(t, func() bool { return h.Stats().QueuedBytes <= limit })
			// The client reads what the socket held, then the close frame
			// with its reason, and answers it.
			for {
				f := c.readFrame()
				if f.op != opClose {
					continue
				}
				if got := string(f.payload[2:]); CloseCode(binary.BigEndian.Uint16(f.payload)) != ClosePolicyViolation || got != ReasonSlowConsumer {
					t.Fatalf("close frame %v %q, want %d %q", f.payload[:2], got, ClosePolicyViolation, ReasonSlowConsumer)
				}
				c.write(clientFrame(true, opClose, f.payload[:2], true))
				break
			}
			if e := rec.waitClosed(t).err; e.Code != ClosePolicyViolation || e.Reason != ReasonSlowConsumer {
				t.Errorf("OnClose got %v", e)
			}
		})
	}
}

func TestMaxChannels(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.MaxChannels = 3
	h, addr := startHub(t, opts, doors[0])
	connect(t, addr)
	c := <-rec.opened
	for _, name := range []string{"a", "b", "c"} {
		if err := h.Channel(name).Subscribe(c); err != nil {
			t.Fatalf("Subscribe(%s): %v", name, err)
		}
	}
	if err := h.Channel("d").Subscribe(c); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("fourth channel: got %v, want ErrTooManyChannels", err)
	}
	if err := h.Channel("a").Subscribe(c); err != nil {
		t.Errorf("an existing channel: %v", err)
	}
	if err := c.SetUser("u1"); err != nil {
		t.Errorf("user channels do not count: %v", err)
	}
	if st := h.Stats(); st.Channels != 3 || st.ChannelsRefused != 1 {
		t.Errorf("stats: %d channels, %d refused; want 3, 1", st.Channels, st.ChannelsRefused)
	}
	h.Channel("b").Unsubscribe(c)
	if err := h.Channel("d").Subscribe(c); err != nil {
		t.Errorf("after a channel was freed: %v", err)
	}
}

func TestBudgetGrantsInOrderAndLane(t *testing.T) {
	t.Parallel()
	h, err := New(&Options{MaxTotalBufferedBytes: 1 << 20, MaxMessageSize: 1 << 20, portable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b := &h.inbound
	if !b.tryTake(900 << 10) {
		t.Fatal("could not take 900 KiB of 1 MiB")
	}
	conns := make([]*Conn, 3)
	waiters := make([]*waiter, 3)
	for i := range conns {
		conns[i] = h.newConn(connOpen)
		conns[i].mu.Lock()
		w, ok := b.waitLocked(conns[i], 200<<10)
		conns[i].mu.Unlock()
		if !ok {
			t.Fatal("an open connection was refused a wait")
		}
		waiters[i] = w
	}
	// The first gets the lane at once: nobody else could ever free the
	// budget for it. The others wait for it.
	if g, lane, _ := b.settle(waiters[0]); !g || !lane {
		t.Fatalf("first waiter: granted %v, lane %v; want both", g, lane)
	}
	if g, _, _ := b.settle(waiters[1]); g {
		t.Fatal("second waiter granted while the lane is taken")
	}
	// A newcomer does not overtake the queue.
	if b.tryTake(1) {
		t.Fatal("tryTake succeeded while connections wait")
	}
	// The first finishes and leaves the lane: the second takes it over
	// the limit, the third waits for memory.
	b.give(200 << 10)
	b.leaveLane(conns[0])
	if g, lane, _ := b.settle(waiters[1]); !g || !lane {
		t.Fatalf("second waiter after the lane freed: granted %v, lane %v", g, lane)
	}
	if g, _, _ := b.settle(waiters[2]); g {
		t.Fatal("third waiter granted out of turn")
	}
	// Freed memory goes to the third, within the budget.
	b.give(900 << 10)
	if g, lane, _ := b.settle(waiters[2]); !g || lane {
		t.Fatalf("third waiter after memory freed: granted %v, lane %v; want granted without the lane", g, lane)
	}
	// A closing connection never waits; a cancelled wait wakes its owner.
	c := h.newConn(connOpen)
	c.mu.Lock()
	w, _ := b.waitLocked(c, 2<<20)
	c.mu.Unlock()
	c.mu.Lock()
	c.state.Store(connClosing)
	b.cancel(c)
	_, ok := b.waitLocked(c, 1)
	c.mu.Unlock()
	if _, _, cancelled := b.settle(w); !cancelled || ok {
		t.Errorf("cancelled %v, closing connection queued %v", cancelled, ok)
	}
	select {
	case <-w.wake:
	default:
		t.Error("the cancelled waiter's owner was not woken")
	}
}

func TestValidUTF8Prefix(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		final bool
		n     int
		ok    bool
	}{
		{"abc", true, 3, true},
		{"ab\xe2\x82", false, 2, true},  // € cut: may complete
		{"ab\xe2\x82", true, 2, false},  // but not at the end of the message
		{"ab\xed\xa0", false, 2, false}, // a surrogate can never complete
		{"ab\xf4\x90", false, 2, false}, // beyond U+10FFFF
		{"ab\xe0\x80", false, 2, false}, // overlong
		{"ab\xf0\x9f\x98", false, 2, true},
		{"ab\xff", false, 2, false},
		{"\xe2\x82\xacx\xc3", false, 4, true},
		{"x\x80y", false, 1, false},
	}
	for _, tc := range cases {
		n, ok := validUTF8([]byte(tc.in), tc.final)
		if n != tc.n || ok != tc.ok {
			t.Errorf("validUTF8(%q, %v) = %d, %v; want %d, %v", tc.in, tc.final, n, ok, tc.n, tc.ok)
		}
	}
}

// TestReassemblyLinearUnderANearlyFullBudget: with the budget short of the
// next doubling of a large message, small fragments read in bulk must not
// grow the message by their own bytes each, which copied the whole message
// per fragment (gigabytes for 14 KB on the wire).
func TestReassemblyLinearUnderANearlyFullBudget(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.MaxMessageSize = 2 << 20
	opts.MaxTotalBufferedBytes = 2 << 20
	opts.ReadTimeout = time.Minute
	h, addr := startHub(t, opts, doors[1])
	holder := connect(t, addr) // holds part of the budget with a message it never ends
	holder.write(clientFrame(false, opBinary, make([]byte, 300<<10), true))
	c := connect(t, addr)
	c.write(clientFrame(false, opBinary, make([]byte, 1<<20), true))
	waitFor(t, func() bool { return h.inbound.used.Load() >= 1<<20+300<<10 })

	const fragments = 20000
	var stream []byte
	for range fragments {
		stream = append(stream, clientFrame(false, opContinuation, []byte{'x'}, true)...)
	}
	stream = append(stream, clientFrame(true, opContinuation, nil, true)...)
	copied := h.stats.copied.Load()
	for len(stream) > 0 { // runs of 2,000 fragments, each read in one go
		k := min(2000*7, len(stream))
		c.write(stream[:k])
		stream = stream[k:]
		time.Sleep(2 * time.Millisecond)
	}
	if m := rec.waitMessage(t); len(m.data) != 1<<20+fragments {
		t.Fatalf("message of %d bytes, want %d", len(m.data), 1<<20+fragments)
	}
	// Moving the 1 MiB message once or twice is the price of growth.
	if n := h.stats.copied.Load() - copied; n > 4<<20 {
		t.Errorf("reassembly copied %d bytes for %d bytes of fragments on a 1 MiB message: quadratic", n, fragments)
	}
}
