package wshub

import (
	"runtime"
	"sync"
)

// Connection scheduling bits, kept in Conn.sched.
const (
	schedQueued = 1 // in the ready queue or being processed by a worker
	schedDirty  = 2 // with schedQueued: readiness arrived during processing
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

// readBufferSize is the size of each worker's read buffer. Bytes of an
// incomplete frame are copied out of it into a pooled per-connection buffer,
// so a connection owns read memory only while a message is in flight.
const readBufferSize = 32 << 10

// maxReadsPerTurn bounds the reads one connection gets before the worker
// moves it to the back of the queue, so that a client that never stops
// sending cannot keep a worker from the others.
const maxReadsPerTurn = 8

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// dispatcher runs connections on a bounded set of workers. A connection is
// in the queue at most once (see schedule); workers start when work is
// queued, and when the queue is empty up to GOMAXPROCS of them park for the
// next batch while the others exit: the number at rest never depends on the
// number of connections.
type dispatcher struct {
	p    *Poller
	max  int
	keep int // workers that wait for work instead of exiting

	mu      sync.Mutex
	queue   []*Conn // FIFO ring: queue[head:head+n] modulo len
	head, n int
	running int        // workers started, parked ones included
	parked  int        // workers waiting on wake
	wake    *sync.Cond // on mu
	stopped bool       // the poller is closing: parked workers exit
}

func (d *dispatcher) init(p *Poller, workers int) {
	d.p = p
	d.max = workers
	d.keep = min(workers, runtime.GOMAXPROCS(0))
	d.wake = sync.NewCond(&d.mu)
}

// stop makes parked workers exit; Poller.Close calls it.
func (d *dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true
	d.wake.Broadcast()
	d.mu.Unlock()
}

// schedule queues c unless it is already queued or being processed, in which
// case it marks c dirty so that its worker reads it again before letting go.
// Together with edge-triggered readiness this loses no wake-up: a worker
// clears the dirty mark before reading until the socket is drained.
func (d *dispatcher) schedule(c *Conn) {
	if c.markReady() {
		d.mu.Lock()
		d.pushLocked(c)
		d.mu.Unlock()
	}
}

// scheduleAll schedules a loop's batch under one lock.
func (d *dispatcher) scheduleAll(cs []*Conn) {
	d.mu.Lock()
	for _, c := range cs {
		if c.markReady() {
			d.pushLocked(c)
		}
	}
	d.mu.Unlock()
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

// unmarkReady moves c back to idle after processing, unless readiness
// arrived meanwhile, in which case it reports false and c stays queued.
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

func (d *dispatcher) pushLocked(c *Conn) {
	if d.n == len(d.queue) {
		q := make([]*Conn, max(2*len(d.queue), 64))
		for i := range d.n {
			q[i] = d.queue[(d.head+i)%len(d.queue)]
		}
		d.queue, d.head = q, 0
	}
	d.queue[(d.head+d.n)%len(d.queue)] = c
	d.n++
	// Wake a parked worker if there is one; else start one per queued
	// connection, up to the bound: a worker that is busy in a callback
	// must not hold up the connections behind it.
	switch {
	case d.parked > 0:
		d.parked--
		d.wake.Signal()
	case d.running < d.max && d.running-d.parked < d.n:
		d.running++
		d.p.wg.Add(1)
		go d.work()
	}
}

// popLocked takes the oldest queued connection, or nil.
func (d *dispatcher) popLocked() *Conn {
	if d.n == 0 {
		return nil
	}
	c := d.queue[d.head]
	d.queue[d.head] = nil
	d.head = (d.head + 1) % len(d.queue)
	d.n--
	return c
}

// work processes queued connections until the queue is empty.
func (d *dispatcher) work() {
	defer d.p.wg.Done()
	bp := readBufPool.Get().(*[]byte)
	defer readBufPool.Put(bp)
	d.mu.Lock()
	for {
		c := d.popLocked()
		if c == nil {
			// A few workers wait for the next batch, which then costs a
			// wake-up instead of a goroutine start; the rest exit, so that
			// an idle poller holds at most GOMAXPROCS of them.
			if d.running <= d.keep && !d.stopped {
				d.parked++
				d.wake.Wait()
				continue // pushLocked counted us out of parked
			}
			d.running--
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()

		// Clear the dirty mark before reading: readiness reported from now
		// on is either seen by this turn's reads or marks c dirty again.
		c.sched.And(^uint32(schedDirty))
		more := c.process(*bp)

		d.mu.Lock()
		if more || !c.unmarkReady() {
			d.pushLocked(c) // back of the queue: others go first
		}
	}
}
