package wshub

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestPoller starts a poller that is closed after the hubs of the test
// (cleanups run last-in first-out, so call it before startHub).
func newTestPoller(t *testing.T, opts *PollerOptions) *Poller {
	t.Helper()
	p, err := NewPoller(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// echoRounds connects n clients to addr, each echoing rounds messages in
// turn, and returns the first failure.
func echoRounds(t *testing.T, addr string, n, rounds int) error {
	t.Helper()
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = connect(t, addr)
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for r := range rounds {
				want := fmt.Sprintf("client %d round %d", i, r)
				if _, err := c.nc.Write(text(want)); err != nil {
					errs <- err
					return
				}
				f, err := c.tryReadFrame(20 * time.Second)
				if err != nil || string(f.payload) != want {
					errs <- fmt.Errorf("client %d: got %q, %v; want %q", i, f.payload, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// blockingEcho echoes every message, but a message "block" first waits for
// release (or 30 s), counting the callbacks that wait.
func blockingEcho(p *Poller, release chan struct{}, waiting *atomic.Int32) *Options {
	return &Options{
		Poller: p,
		OnMessage: func(c *Conn, typ MessageType, b []byte) {
			if string(b) == "block" {
				waiting.Add(1)
				select {
				case <-release:
				case <-time.After(30 * time.Second):
				}
				waiting.Add(-1)
			}
			c.WriteMessage(typ, b)
		},
	}
}

// On one loop, a callback that blocks holds only its own connection: 1,000
// others connect and echo while it waits, and its own messages keep their
// order once it returns.
func TestBlockingCallbackHoldsOnlyItsConnection(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) { // one door at a time: 2,000 descriptors each
			p := newTestPoller(t, &PollerOptions{Loops: 1})
			release := make(chan struct{})
			var waiting atomic.Int32
			_, addr := startHub(t, blockingEcho(p, release, &waiting), d)

			blocker := connect(t, addr)
			blocker.write(append(text("block"), text("after")...))
			waitFor(t, func() bool { return waiting.Load() == 1 })
			if err := echoRounds(t, addr, 1000, 3); err != nil {
				t.Fatalf("while a callback blocks: %v", err)
			}
			if waiting.Load() != 1 {
				t.Fatal("the blocked callback returned before the others were done")
			}
			close(release)
			blocker.expectMessage(opText, "block")
			blocker.expectMessage(opText, "after")
		})
	}
}

// Callbacks that block on many connections at once each hold a goroutine of
// their own, within PollerOptions.Workers, and the loop serves the rest.
func TestManyBlockingCallbacks(t *testing.T) {
	t.Parallel()
	const blockers, workers = 24, 32
	p := newTestPoller(t, &PollerOptions{Loops: 1, Workers: workers})
	release := make(chan struct{})
	var waiting atomic.Int32
	_, addr := startHub(t, blockingEcho(p, release, &waiting), doors[1])

	var peak atomic.Int32
	stop := make(chan struct{})
	var watched sync.WaitGroup
	watched.Go(func() {
		for {
			if n := p.runners.Load(); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	})
	held := make([]*client, blockers)
	for i := range held {
		held[i] = connect(t, addr)
		held[i].write(append(text("block"), append(text("block"), text("done")...)...))
	}
	waitFor(t, func() bool { return waiting.Load() == blockers })
	if err := echoRounds(t, addr, 200, 5); err != nil {
		t.Fatalf("while %d callbacks block: %v", blockers, err)
	}
	if n := waiting.Load(); n != blockers {
		t.Fatalf("%d callbacks still blocked, want %d", n, blockers)
	}
	close(release)
	for _, c := range held {
		c.expectMessage(opText, "block")
		c.expectMessage(opText, "block")
		c.expectMessage(opText, "done")
	}
	close(stop)
	watched.Wait()
	if n := peak.Load(); n > workers {
		t.Errorf("%d runners at once, want at most Workers = %d", n, workers)
	}
	if n := p.handoffs.Load(); n < blockers {
		t.Errorf("%d hand-offs, want at least %d", n, blockers)
	}
}

// Past PollerOptions.Workers blocked callbacks the loop waits for one to
// return: the bound holds, and nothing is lost.
func TestBlockedCallbacksWithinWorkers(t *testing.T) {
	t.Parallel()
	p := newTestPoller(t, &PollerOptions{Loops: 1, Workers: 2})
	release := make(chan struct{})
	var waiting atomic.Int32
	_, addr := startHub(t, blockingEcho(p, release, &waiting), doors[1])

	a, b := connect(t, addr), connect(t, addr)
	a.write(text("block"))
	waitFor(t, func() bool { return waiting.Load() == 1 })
	b.write(text("block"))
	waitFor(t, func() bool { return waiting.Load() == 2 })
	// The own listener's handshakes are read by the loop: this one waits.
	other := dial(t, addr)
	other.write(append([]byte(upgradeRequest(addr)), text("waits")...))
	other.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := other.br.Peek(1); err == nil {
		t.Fatal("got an answer while both runners were blocked, want nothing")
	}
	if n := p.runners.Load(); n != 2 {
		t.Errorf("%d runners, want Workers = 2", n)
	}
	close(release)
	other.nc.SetReadDeadline(time.Time{})
	if status := other.readResponse(); status != 101 {
		t.Fatalf("upgrade status %d, want 101", status)
	}
	other.expectMessage(opText, "waits")
	a.expectMessage(opText, "block")
	b.expectMessage(opText, "block")
}

// An idle poller's watchdog sleeps, and wakes for the next callback that
// blocks.
func TestWatchdogSleepsWhenIdle(t *testing.T) {
	t.Parallel()
	p := newTestPoller(t, &PollerOptions{Loops: 1})
	release := make(chan struct{})
	var waiting atomic.Int32
	_, addr := startHub(t, blockingEcho(p, release, &waiting), doors[0])
	c := connect(t, addr)
	c.write(text("hello"))
	c.expectMessage(opText, "hello")
	waitFor(t, p.watchAsleep.Load)

	c.write(text("block"))
	waitFor(t, func() bool { return p.handoffs.Load() == 1 })
	other := connect(t, addr)
	other.write(text("served"))
	other.expectMessage(opText, "served")
	close(release)
	c.expectMessage(opText, "block")
}
