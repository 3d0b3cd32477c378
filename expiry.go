package wshub

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials that expire: Conn.SetExpiry gives a connection an end (a
// token's exp), Options.OnExpiring is asked ExpiryNotice before it whether
// to push it back, and the sweep closes what expired with CloseUnauthorized,
// ReasonExpired.
//
// A Conn has no spare byte for this (it is 96 bytes, every one used), so
// the expiries live beside it, in one table per Poller, because one sweep
// per Poller serves every hub on it: a min-heap ordered by when the sweep
// must next look at an entry, and a map from connection to its place in
// the heap, so that a SetExpiry or a close finds its entry at once. A
// sweep looks at the heap's top only, so it costs nothing while nothing
// is due, and a logarithm per entry that is. There is at most one entry
// per open connection (a connection sets its own, replacing the last): the
// peers decide nothing about its size that MaxConns does not bound already.
// An entry costs about 50 bytes (51 at 100,000: BenchmarkExpiryTableMemory)
// and goes when its connection ends. No timer, no goroutine per
// connection: OnExpiring runs on one goroutine per Poller, started while
// notices are due.

// expiryTable is a Poller's table of connection expiries.
//
// mu guards heap, index, notify and notifying. It is taken after Conn.mu
// (SetExpiry) or alone, never before another lock: the sweep and the
// notifier release it before they close a connection or call OnExpiring.
type expiryTable struct {
	// n is len(heap), read without the lock by the paths every connection
	// takes (its end, each sweep), so that a hub that never sets an
	// expiry pays nothing for them.
	n atomic.Int32

	mu    sync.Mutex
	heap  []expiryEntry   // a min-heap by next
	index map[*Conn]int32 // each entry's place in heap

	notify    []*Conn // those whose OnExpiring is due, oldest first
	notifying bool    // the notifier goroutine runs
}

// expiryEntry is one connection's expiry. Times are milliseconds since the
// poller started (Poller.millis), which do not wrap, unlike its ticks:
// a credential may last longer than maxTimeout.
type expiryEntry struct {
	c  *Conn
	at int64 // the expiry
	// next is when the sweep must look at the entry again: ExpiryNotice
	// before at while OnExpiring is still to be asked (next < at); past
	// at while it is being asked (next > at: the expiry waits for the
	// answer, see sweepExpiries); at once it was (next == at).
	next int64
}

// millis is the poller's clock in milliseconds, for expiries.
func (p *Poller) millis() int64 { return p.nanotime() / int64(time.Millisecond) }

// SetExpiry sets when the connection's credentials expire, such as a
// token's exp: at that time the hub closes it with CloseUnauthorized,
// ReasonExpired (counted in Stats.Reasons and reported as EventClosed),
// unless the expiry is pushed back before. Before it passes,
// Options.OnExpiring, if set, is asked once for a later one. Each call
// replaces the connection's expiry, later or earlier; the zero Time
// removes it. A time already past closes the connection at the next sweep
// (after OnExpiring, if set, was asked).
//
// The expiry is checked by the poller's sweep, every second at most: a
// connection ends within about a second of it. It costs no timer and no
// goroutine; the hub keeps about 50 bytes for it until the connection
// ends. SetExpiry returns net.ErrClosed once the connection is closing.
func (c *Conn) SetExpiry(t time.Time) error {
	p := c.hub.p
	c.mu.Lock()
	defer c.mu.Unlock()
	// Under Conn.mu, an open connection's entry is in place before finish
	// marks it closed, and finish removes entries after that: none is
	// left behind by a SetExpiry racing the close.
	if c.state.Load() != connOpen {
		return net.ErrClosed
	}
	if t.IsZero() {
		p.expiries.remove(c)
		return nil
	}
	at := p.millis() + time.Until(t).Milliseconds()
	p.expiries.set(c, at, c.noticeAt(at))
	return nil
}

// noticeAt returns when the sweep must first look at an expiry at: when
// OnExpiring is due, or the expiry itself without OnExpiring.
func (c *Conn) noticeAt(at int64) int64 {
	o := &c.hub.opts
	if o.OnExpiring == nil {
		return at
	}
	return at - o.ExpiryNotice.Milliseconds()
}

// extendExpiry pushes c's expiry back to t, what OnExpiring returned, if
// c still has one and t is later.
func (c *Conn) extendExpiry(t time.Time) {
	if t.IsZero() {
		return
	}
	p := c.hub.p
	at := p.millis() + time.Until(t).Milliseconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() == connOpen && p.expiries.extend(c, at, c.noticeAt(at)) {
		c.hub.stats.extended.Add(1)
	}
}

// set gives c the expiry at, first looked at by the sweep at next.
func (e *expiryTable) set(c *Conn, at, next int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i, ok := e.index[c]; ok {
		e.heap[i].at, e.heap[i].next = at, next
		e.fixLocked(int(i))
		return
	}
	if e.index == nil {
		e.index = make(map[*Conn]int32)
	}
	e.heap = append(e.heap, expiryEntry{c: c, at: at, next: next})
	e.index[c] = int32(len(e.heap) - 1)
	e.n.Store(int32(len(e.heap)))
	c.hub.stats.expiring.Add(1)
	e.upLocked(len(e.heap) - 1)
}

// extend moves c's expiry to at if c has one and at is later; it reports
// whether it did.
func (e *expiryTable) extend(c *Conn, at, next int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	i, ok := e.index[c]
	if !ok || at <= e.heap[i].at {
		return false
	}
	e.heap[i].at, e.heap[i].next = at, next
	e.fixLocked(int(i))
	return true
}

// asked records that OnExpiring was asked about c's expiry: the sweep may
// close c once it passes. An expiry set or extended meanwhile has its
// own notice already.
func (e *expiryTable) asked(c *Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i, ok := e.index[c]; ok && e.heap[i].next > e.heap[i].at {
		e.heap[i].next = e.heap[i].at
		e.fixLocked(int(i))
	}
}

// remove forgets c's expiry, if it has one. Every connection's end calls
// it (Hub.ended), so that no entry outlives its connection.
func (e *expiryTable) remove(c *Conn) {
	if e.n.Load() == 0 {
		return // nothing to find: see SetExpiry for why this cannot miss one
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if i, ok := e.index[c]; ok {
		e.removeLocked(int(i))
	}
}

// removeLocked takes the entry at i out of the heap.
func (e *expiryTable) removeLocked(i int) {
	c := e.heap[i].c
	last := len(e.heap) - 1
	e.swapLocked(i, last)
	e.heap[last] = expiryEntry{}
	e.heap = e.heap[:last]
	delete(e.index, c)
	if i < last {
		e.fixLocked(i)
	}
	e.n.Store(int32(len(e.heap)))
	c.hub.stats.expiring.Add(-1)
	if len(e.heap) == 0 && cap(e.heap) > 1024 {
		// A burst of connections with expiries has gone: give its memory
		// back rather than keep the high-water mark (a map never shrinks).
		e.heap, e.index = nil, nil
	}
}

func (e *expiryTable) swapLocked(i, j int) {
	e.heap[i], e.heap[j] = e.heap[j], e.heap[i]
	e.index[e.heap[i].c] = int32(i)
	e.index[e.heap[j].c] = int32(j)
}

// fixLocked restores the heap's order after the entry at i changed.
func (e *expiryTable) fixLocked(i int) {
	if !e.downLocked(i) {
		e.upLocked(i)
	}
}

func (e *expiryTable) upLocked(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if e.heap[parent].next <= e.heap[i].next {
			return
		}
		e.swapLocked(i, parent)
		i = parent
	}
}

// downLocked moves the entry at i down to its place and reports whether
// it moved.
func (e *expiryTable) downLocked(i int) bool {
	start := i
	for {
		least := i
		for _, child := range [2]int{2*i + 1, 2*i + 2} {
			if child < len(e.heap) && e.heap[child].next < e.heap[least].next {
				least = child
			}
		}
		if least == i {
			return i != start
		}
		e.swapLocked(i, least)
		i = least
	}
}

// sweepExpiries asks OnExpiring about the expiries whose notice is due,
// on the notifier goroutine, and closes the connections whose expiry
// passed; the sweep calls it, with ended to collect them in, which it
// returns. A connection is never closed for an expiry before OnExpiring,
// if set, was asked about it (see asked), however late its notice came (a
// SetExpiry shorter than ExpiryNotice, a sweep held up, a notifier busy
// with other hubs' connections), unless the notifier has not come to it
// ExpiryNotice past the expiry: an OnExpiring that blocks does not keep
// every connection of the Poller open.
func (p *Poller) sweepExpiries(ended []*Conn) []*Conn {
	e := &p.expiries
	if e.n.Load() == 0 {
		return ended
	}
	now := p.millis()
	e.mu.Lock()
	for len(e.heap) > 0 && e.heap[0].next <= now {
		x := &e.heap[0]
		if x.next < x.at {
			// OnExpiring is asked: the expiry waits for its answer.
			x.next = max(x.at, now) + max(x.c.hub.opts.ExpiryNotice.Milliseconds(), 1)
			e.notify = append(e.notify, x.c)
			e.fixLocked(0)
			continue
		}
		ended = append(ended, x.c)
		e.removeLocked(0)
	}
	if len(e.notify) > 0 && !e.notifying {
		e.notifying = true
		p.wg.Add(1) // the sweeper counts in wg: Close's Wait has not returned
		go p.notifyExpiring()
	}
	e.mu.Unlock()
	for _, c := range ended {
		c.closeFor(CloseUnauthorized, ReasonExpired)
	}
	return ended
}

// notifyExpiring calls OnExpiring for the connections whose notice is due,
// one at a time and in order, and exits when none is left. It runs apart
// from the sweep so that a slow OnExpiring holds up other notices only,
// never a timeout or a ping.
func (p *Poller) notifyExpiring() {
	defer p.wg.Done()
	e := &p.expiries
	var list []*Conn
	for {
		e.mu.Lock()
		list, e.notify = e.notify, list[:0]
		if len(list) == 0 {
			e.notifying = false
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		for i, c := range list {
			if c.state.Load() == connOpen {
				c.extendExpiry(c.hub.opts.OnExpiring(c))
				e.asked(c)
			}
			list[i] = nil
		}
	}
}
