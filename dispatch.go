package wshub

import (
	"sync"
	"sync/atomic"
	"time"
)

// Connection scheduling bits, kept in Conn.sched.
const (
	schedQueued = 1 // in a loop's run queue or in a runner's turn
	schedDirty  = 2 // with schedQueued: readiness arrived during the turn
	schedHup    = 4 // the peer hung up: read until end of stream (sticky)
	schedOut    = 8 // the write queue is not empty (set and cleared under mu)

	// schedProtoShift: bits 4-7 hold the negotiated subprotocol, its index
	// in Options.Subprotocols plus one (see Conn.Subprotocol). Set once by
	// the upgrade, with Or, and kept like the lifetime bits.
	schedProtoShift = 4
	schedProtoMask  = 0xf << schedProtoShift

	// schedEndShift: the upper 24 bits of sched hold the tick at which the
	// connection's MaxLifetime ends, divided by 256 (see Conn.lifeOver).
	// They are set before the connection is shared and never change; every
	// update of the bits above keeps them, as Or, And and the
	// compare-and-swaps of markReady do.
	schedEndShift = 8
)

// readBufferSize is the size of each runner's read buffer. Bytes of an
// incomplete frame are copied out of it into a pooled per-connection buffer,
// so a connection owns read memory only while a message is in flight.
const readBufferSize = 32 << 10

// maxReadsPerTurn bounds the reads one connection gets before its loop
// moves it to the back of the run queue, so that a client that never stops
// sending cannot keep the loop from the others.
const maxReadsPerTurn = 8

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// Read dispatch runs to completion: the goroutine that waits on a loop's
// netpoll reads the ready connections and runs their callbacks itself, so a
// message costs no hand-off between goroutines (a queue, a wake-up and a
// park per message, which cost more CPU per echo than the parsing).
//
// A callback may still block. The watchdog (Poller.watch) looks at every
// loop once per handoffAfter; a loop whose runner has been in the same
// connection's turn since its last look is handed to a new runner, which
// takes over the run queue and the netpoll, while the old one finishes its
// turn and exits. This is how the Go runtime hands a P on from a thread
// blocked in a system call. A blocking callback thus holds its own
// connection and, for about a millisecond, the rest of its loop; past that
// only its connection. At most PollerOptions.Workers runners exist at once.
//
// A connection is in one run queue at most once and in one turn at a time
// (markReady, unmarkReady), so its messages keep their order whoever runs
// it.

// handoffAfter is the watchdog's period: a turn that lasts longer hands its
// loop to another runner.
const handoffAfter = time.Millisecond

// watchIdleTicks is how many periods the watchdog goes on ticking after it
// last saw a turn before it sleeps until the next one: a busy hub pays for
// no wake-up per turn, an idle one for no tick.
const watchIdleTicks = 64

// runQueue is a loop's dispatch state.
type runQueue struct {
	// mu guards the fields up to turn, and the writes of turn and sleeping.
	mu      sync.Mutex
	ring    []*Conn // FIFO: ring[head:head+n] modulo len
	head, n int
	round   int    // turns left before the runner polls again
	gen     uint32 // the current runner's; a hand-off increments it
	cur     *Conn  // the connection of the current runner's turn, if any

	// turn counts the turns of the current runner, twice: it is odd while
	// one is in progress. The watchdog reads it without the lock.
	turn atomic.Uint32

	// sleeping is set while the current runner waits in its netpoll with
	// nothing queued: whoever queues a connection must wake it. The first
	// to do so clears it.
	sleeping atomic.Bool

	seen uint32 // the watchdog's: turn at its last look
}

// schedule queues c on its loop unless it is already queued or in a turn, in
// which case it marks c dirty so that its turn reads it again or queues it
// anew. Together with edge-triggered readiness this loses no wake-up: a turn
// clears the dirty mark before it reads until the socket is drained.
func (p *Poller) schedule(c *Conn) {
	if !c.markReady() {
		return
	}
	l := p.loopOf(c)
	l.rq.mu.Lock()
	l.pushLocked(c)
	l.rq.mu.Unlock()
	l.wakeSleeping()
}

// wakeSleeping wakes the loop's runner if it waits in the netpoll. Only the
// first caller writes to the wake descriptor: the runner, once woken, sees
// what the others queued too.
func (l *loop) wakeSleeping() {
	if l.rq.sleeping.Load() && l.rq.sleeping.CompareAndSwap(true, false) {
		l.np.wake()
	}
}

// markReady moves c from idle to queued and reports whether the caller must
// queue it; otherwise it sets the dirty mark.
func (c *Conn) markReady() bool {
	for {
		s := c.sched.Load()
		switch {
		case s&schedQueued == 0:
			if c.sched.CompareAndSwap(s, s|schedQueued) {
				return true
			}
		case s&schedDirty != 0:
			return false
		default:
			if c.sched.CompareAndSwap(s, s|schedDirty) {
				return false
			}
		}
	}
}

// unmarkReady moves c back to idle after its turn, unless readiness arrived
// meanwhile, in which case it reports false and c stays queued.
func (c *Conn) unmarkReady() bool {
	for {
		s := c.sched.Load()
		if s&schedDirty != 0 {
			return false
		}
		if c.sched.CompareAndSwap(s, s&^schedQueued) {
			return true
		}
	}
}

func (l *loop) pushLocked(c *Conn) {
	rq := &l.rq
	if rq.n == len(rq.ring) {
		ring := make([]*Conn, max(2*len(rq.ring), 64))
		for i := range rq.n {
			ring[i] = rq.ring[(rq.head+i)%len(rq.ring)]
		}
		rq.ring, rq.head = ring, 0
	}
	rq.ring[(rq.head+rq.n)%len(rq.ring)] = c
	rq.n++
}

func (l *loop) popLocked() *Conn {
	rq := &l.rq
	c := rq.ring[rq.head]
	rq.ring[rq.head] = nil
	rq.head = (rq.head + 1) % len(rq.ring)
	rq.n--
	return c
}

// run is a runner of l: it processes the run queue in rounds, and between
// rounds polls the netpoll for readiness (without waiting while connections
// are queued), flushes what publishes asked for and queues what turned
// readable. gen is the generation it was started for; it returns when a
// hand-off retired it or the poller stops.
func (l *loop) run(gen uint32) {
	defer l.p.wg.Done()
	defer l.p.runners.Add(-1)
	bp := readBufPool.Get().(*[]byte)
	defer readBufPool.Put(bp)
	var c *Conn
	var more bool
	for {
		var current bool
		c, current = l.next(gen, c, more)
		if !current {
			return
		}
		if c == nil {
			if l.p.stopping.Load() || !l.poll() {
				return
			}
			continue
		}
		// Clear the dirty mark before reading: readiness reported from now
		// on is either seen by this turn's reads or marks c dirty again.
		c.sched.And(^uint32(schedDirty))
		more = c.process(*bp)
		c.uncork()
	}
}

// next ends the turn of prev, if any, queueing it again if it may have more
// input, and starts the next turn of the round. It returns nil when the
// round is over, and current false when the runner was retired by a
// hand-off: prev's turn is then ended all the same, and the runner exits.
func (l *loop) next(gen uint32, prev *Conn, more bool) (c *Conn, current bool) {
	rq := &l.rq
	rq.mu.Lock()
	again := prev != nil && (more || !prev.unmarkReady())
	if again {
		l.pushLocked(prev) // back of the queue: others go first
	}
	if rq.gen != gen {
		rq.mu.Unlock()
		if again {
			l.wakeSleeping() // the new runner must see prev
		}
		return nil, false
	}
	if prev != nil {
		rq.turn.Add(1) // even: between turns
		rq.cur = nil
	}
	if rq.round > 0 && rq.n > 0 {
		rq.round--
		c = l.popLocked()
		rq.cur = c
		rq.turn.Add(1) // odd: in c's turn
	}
	rq.mu.Unlock()
	if c != nil && l.p.watchAsleep.Load() {
		l.p.kickWatch()
	}
	return c, true
}

// poll collects readiness, waiting for it if nothing is queued, then flushes
// what publishes queued and starts the next round. It reports false if the
// netpoll failed, which only happens when it was closed.
func (l *loop) poll() bool {
	rq := &l.rq
	rq.mu.Lock()
	block := rq.n == 0
	rq.sleeping.Store(block) // before the lock is released: see schedule
	rq.mu.Unlock()
	n, err := l.np.wait(block)
	if block {
		rq.sleeping.Store(false)
	}
	if err != nil {
		return false
	}
	ready := l.collect(n)
	rq.mu.Lock()
	for _, c := range ready {
		if c.markReady() {
			l.pushLocked(c)
		}
	}
	rq.round = rq.n
	rq.mu.Unlock()
	clear(ready)
	l.flushRequested()
	return true
}

// watch is the poller's watchdog goroutine: it hands a loop whose runner has
// been in one turn for a whole period to a new runner (see handoffAfter).
// It sleeps when no loop has started a turn for watchIdleTicks periods,
// until a turn starts (kickWatch).
func (p *Poller) watch() {
	defer p.wg.Done()
	tick := time.NewTicker(handoffAfter)
	defer tick.Stop()
	idle := 0
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		if p.lookAtTurns() {
			idle = 0
			continue
		}
		if idle++; idle < watchIdleTicks {
			continue
		}
		// Asleep from here: a runner that starts a turn after the store
		// sees it and kicks; one that started before is seen below.
		p.watchAsleep.Store(true)
		if !p.inTurn() {
			select {
			case <-p.done:
				return
			case <-p.watchKick:
			}
		} else if !p.watchAsleep.CompareAndSwap(true, false) {
			<-p.watchKick // a runner kicked meanwhile: take it
		}
		idle = 0
		tick.Reset(handoffAfter)
	}
}

// kickWatch wakes the watchdog if it sleeps.
func (p *Poller) kickWatch() {
	if p.watchAsleep.CompareAndSwap(true, false) {
		p.watchKick <- struct{}{} // buffered, and only the winner sends
	}
}

// inTurn reports whether some loop's runner is in a turn.
func (p *Poller) inTurn() bool {
	for _, l := range p.loops {
		if l.rq.turn.Load()&1 != 0 {
			return true
		}
	}
	return false
}

// lookAtTurns hands off every loop still in the turn it was in at the last
// look, and reports whether any loop was in a turn or had one since.
func (p *Poller) lookAtTurns() (busy bool) {
	for _, l := range p.loops {
		rq := &l.rq
		turn := rq.turn.Load()
		switch {
		case turn&1 != 0 && turn == rq.seen:
			busy = true
			l.handoff(turn)
			turn = rq.turn.Load()
		case turn != rq.seen || turn&1 != 0:
			busy = true
		}
		rq.seen = turn
	}
	return busy
}

// handoff retires l's runner, which has been in the same turn since the
// watchdog's last look, and starts a new one, unless PollerOptions.Workers
// runners already exist: the loop then waits for the turn to end. Either
// way the turn's connection is uncorked, so that what its callback wrote
// before it blocked goes out now.
func (l *loop) handoff(turn uint32) {
	rq := &l.rq
	rq.mu.Lock()
	if rq.turn.Load() != turn || l.p.stopping.Load() {
		rq.mu.Unlock()
		return
	}
	c := rq.cur
	if l.p.runners.Load() < int32(l.p.maxRunners) {
		l.p.runners.Add(1)
		l.p.handoffs.Add(1)
		rq.gen++
		rq.cur = nil
		rq.turn.Add(1) // the new runner is between turns
		l.p.wg.Add(1)
		go l.run(rq.gen)
	}
	rq.mu.Unlock()
	// After the run queue's lock, which comes after Conn.mu. The turn may
	// have ended meanwhile: uncorking a connection early only writes its
	// frames sooner.
	c.mu.Lock()
	c.unsetCorkLocked()
	c.mu.Unlock()
}
