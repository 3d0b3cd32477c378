package wshub

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// inBudget is a hub's budget for the memory it holds for what peers send:
// incomplete frames, fragmented messages and upgrade requests (see
// Options.MaxTotalBufferedBytes).
//
// A connection's owner reserves bytes before it stores them. When the budget
// has too few left, the owner stops reading the connection and queues a
// waiter; bytes given back are handed to the waiters in the order they came,
// and each is then scheduled to read again. Owners store bytes only after
// reserving them, with two exceptions that the option's documentation bounds:
// bytes already read into a runner's buffer while the budget had a read
// buffer's worth left, and the lane (see grantLocked).
//
// The fast paths are an atomic counter; mu is taken only to queue, grant and
// cancel waiters. Lock order: Conn.mu, then inBudget.mu, then the
// run queue's lock (a grant schedules the connection).
type inBudget struct {
	limit   int64        // bytes; 0 means no budget
	used    atomic.Int64 // bytes reserved by all connections: stored or about to be
	waiting atomic.Int32 // len of the queue, for the fast paths

	mu         sync.Mutex
	head, tail *waiter
	byConn     map[*Conn]*waiter
	lane       *Conn // the connection allowed past the limit, or nil
}

// A waiter is a connection that stopped reading until want bytes of the
// budget are granted to it. Its fields after want are guarded by
// inBudget.mu.
type waiter struct {
	c    *Conn
	want int64
	wake chan struct{} // portable path: the owner goroutine blocks on it
	left uint32        // ms its read or handshake deadline had left (see waitLocked)

	next, prev *waiter
	granted    bool // want bytes were reserved for the connection
	lane       bool // ... past the limit: the connection holds the lane
	cancelled  bool // the connection is closing: it needs no more memory
}

// pressed reports whether a read into a runner's buffer could take the
// budget past its limit with what it leaves incomplete, or would overtake
// connections that wait: reads must then reserve first.
func (b *inBudget) pressed() bool {
	return b.limit > 0 && (b.waiting.Load() > 0 || b.limit-b.used.Load() < readBufferSize)
}

// tryTake reserves n bytes if the budget has them and nobody waits for it.
func (b *inBudget) tryTake(n int64) bool { return n > 0 && b.take(n, n) == n }

// takeSome reserves up to n bytes, as many as the budget has if nobody
// waits for it, and returns how many.
func (b *inBudget) takeSome(n int64) int64 { return b.take(1, n) }

// take reserves at least least and at most most bytes, as many as the
// budget has, if nobody waits for it, and returns how many: 0 if it could
// not.
func (b *inBudget) take(least, most int64) int64 {
	if b.limit <= 0 {
		b.used.Add(most)
		return most
	}
	for b.waiting.Load() == 0 {
		u := b.used.Load()
		k := min(most, b.limit-u)
		if k < least {
			return 0
		}
		if b.used.CompareAndSwap(u, u+k) {
			return k
		}
	}
	return 0
}

// give returns n bytes and grants what it can to the waiters.
func (b *inBudget) give(n int64) {
	b.used.Add(-n)
	// The add comes before the load: a waiter queued after the load saw
	// the smaller total when it tried (see wait), so none is missed.
	if b.waiting.Load() > 0 {
		b.mu.Lock()
		b.grantLocked()
		b.mu.Unlock()
	}
}

// wait queues c for want bytes, unless it can have them at once. It
// reports false if c is closing and will not read more than it can discard,
// in which case nothing is queued. The caller holds c.mu, so that a close
// either sees the waiter and cancels it or is seen here.
func (b *inBudget) waitLocked(c *Conn, want int64) (*waiter, bool) {
	if c.flags&flagShut != 0 || c.state.Load() > connOpen {
		return nil, false
	}
	w := &waiter{c: c, want: want}
	if c.transport() == viaNetConn {
		w.wake = make(chan struct{}, 1)
	}
	// The hub, not the peer, stops the reading: its clock stops too. What
	// its read or handshake deadline had left is kept for the resume
	// (Conn.resumed), and the deadline moves out of the sweep's reach,
	// which neither pings (its pong would wait behind the unread data) nor
	// times out a connection that waits. A peer that holds budget and
	// stalls once resumed is closed when the rest runs out.
	p := c.hub.p
	if d := c.deadline.Load(); d != 0 && c.flags&flagPinged == 0 {
		w.left = uint32(max(int32(d-p.now()), 1))
	}
	c.flags &^= flagPinged
	c.deadline.Store(p.after(maxTimeout))
	b.mu.Lock()
	if b.byConn == nil {
		b.byConn = make(map[*Conn]*waiter)
	}
	b.byConn[c] = w
	w.prev = b.tail
	if b.tail != nil {
		b.tail.next = w
	} else {
		b.head = w
	}
	b.tail = w
	b.waiting.Add(1)
	b.grantLocked()
	b.mu.Unlock()
	c.hub.stats.readsPaused.Add(1)
	return w, true
}

// grantLocked hands the waiters at the head of the queue what they want,
// while the budget has it. So that connections which each hold part of the
// budget and wait for more cannot stop one another for good, the head may
// take one lane past the limit: one connection at a time finishes its
// message over budget, by at most a message. A peer that takes the lane and
// stalls keeps it until ReadTimeout closes it.
func (b *inBudget) grantLocked() {
	for w := b.head; w != nil; w = b.head {
		if b.used.Load()+w.want > b.limit {
			if b.lane != nil {
				return
			}
			b.lane, w.lane = w.c, true
		}
		b.used.Add(w.want)
		w.granted = true
		b.unlinkLocked(w)
		w.resume()
	}
}

// cancel takes c off the queue because it is closing; its owner is woken to
// discard what it would have stored.
func (b *inBudget) cancel(c *Conn) {
	if b.waiting.Load() == 0 {
		return
	}
	b.mu.Lock()
	if w := b.byConn[c]; w != nil {
		w.cancelled = true
		b.unlinkLocked(w)
		w.resume()
	}
	b.mu.Unlock()
}

// settle reports how w ended, once its owner looks: granted, cancelled, or
// still waiting (false, false).
func (b *inBudget) settle(w *waiter) (granted, lane, cancelled bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return w.granted, w.lane, w.cancelled
}

// leave takes w off the queue if it is still on it, because its connection
// ends, and reports whether it was granted its bytes meanwhile, and the
// lane with them.
func (b *inBudget) leave(w *waiter) (granted, lane bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !w.granted && !w.cancelled {
		b.unlinkLocked(w)
	}
	return w.granted, w.lane
}

// leaveLane gives up the lane: c no longer holds any of the budget.
func (b *inBudget) leaveLane(c *Conn) {
	b.mu.Lock()
	if b.lane == c {
		b.lane = nil
		b.grantLocked()
	}
	b.mu.Unlock()
}

func (b *inBudget) unlinkLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		b.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		b.tail = w.prev
	}
	w.next, w.prev = nil, nil
	delete(b.byConn, w.c)
	b.waiting.Add(-1)
}

// resume wakes the owner of a waiter that was granted or cancelled.
func (w *waiter) resume() {
	if w.wake != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return
	}
	w.c.hub.p.schedule(w.c)
}

// pooledCap is the capacity pbytes gives a buffer asked for with capacity n:
// powers of two within its pooled range, n itself outside it.
func pooledCap(n int) int {
	if n < 128 || n > 64<<10 {
		return n
	}
	return 1 << bits.Len(uint(n-1))
}
