package wshub

import (
	"time"

	"github.com/gobwas/pool/pbytes"
)

// What a connection's owner stores of its input, and the share of the
// hub's inbound budget (see inBudget) it holds for it: every byte stored is
// reserved first, and goes back when the buffer holding it does.

// minStored is the smallest buffer stored input takes: a few bytes
// announcing a large frame cost no more than this.
const minStored = 512

// msgCap returns the capacity rd.msg grows to when it must hold need bytes.
// It doubles, from minStored, with what has arrived, never with what a header
// announces: a message in many small fragments is then copied O(its size)
// times in all, where growing to each fragment's end copied what came before
// once per fragment. It never passes what the message can still reach: the
// end of its final frame, or MaxMessageSize.
func (c *Conn) msgCap(need int) int {
	rd := c.rd
	limit := c.hub.opts.MaxMessageSize
	if rd.inFrame && rd.h.fin {
		limit = int64(len(rd.msg)) + rd.left
	}
	return max(need, rd.doubled(limit))
}

// doubled returns twice msg's capacity, at least minStored, at most limit.
func (rd *readState) doubled(limit int64) int {
	return int(min(int64(max(2*cap(rd.msg), minStored)), limit))
}

// storeCost returns how much of the budget storing n more bytes of the
// message in progress may take: the growth of msg, none while it has room.
// It assumes the growth to the next doubling; appendMsg settles the
// difference.
func (c *Conn) storeCost(n int) int64 {
	rd := c.reader()
	m := len(rd.msg)
	if m+n <= cap(rd.msg) {
		return 0
	}
	want := max(m+n, rd.doubled(c.hub.opts.MaxMessageSize))
	return int64(pooledCap(want) - cap(rd.msg))
}

// prepay makes sure rd.prepaid holds n bytes of the budget. If the budget
// does not have them it queues the connection and reports false: the owner
// stops reading until they are granted. A closing connection stores nothing
// more and never waits.
func (c *Conn) prepay(n int64) bool {
	rd := c.reader()
	if rd.prepaid >= n {
		return true
	}
	more := n - rd.prepaid
	b := &c.hub.inbound
	if rd.lane {
		b.used.Add(more) // finishing its message past the limit
	} else if !b.tryTake(more) {
		// A waiting connection holds only what it stored: what it had
		// reserved goes back, and it waits for the whole n.
		if rd.prepaid > 0 {
			b.give(rd.prepaid)
			rd.prepaid, more = 0, n
		}
		c.mu.Lock()
		w, ok := b.waitLocked(c, more)
		shut := c.flags&flagShut != 0
		c.mu.Unlock()
		if ok {
			rd.wait = w
			return false
		}
		if shut {
			c.own |= ownStopRead
		}
		return true // closing: nothing more is stored
	}
	rd.prepaid = n
	return true
}

// resumed reports whether the connection's wait for the budget is over, and
// takes what was granted.
func (c *Conn) resumed() bool {
	rd := c.rd
	granted, lane, cancelled := c.hub.inbound.settle(rd.wait)
	switch {
	case granted:
		rd.prepaid += rd.wait.want
		rd.lane = rd.lane || lane
		c.unpause(rd.wait.left)
	case cancelled:
		// A close cancelled the wait. Killed, the connection reads only
		// to find its end; closing, it discards data (see nextRead).
		c.mu.Lock()
		if c.flags&flagShut != 0 {
			c.own |= ownStopRead
		}
		c.mu.Unlock()
	default:
		return false
	}
	rd.wait = nil
	return true
}

// unpause restarts the deadline a wait for the budget stopped with left ms
// to run, and counts the wait as activity, so the heartbeat does not ping a
// peer the hub kept from sending.
func (c *Conn) unpause(left uint32) {
	p := c.hub.p
	c.mu.Lock()
	if st := c.state.Load(); st == connOpen || st == connHandshake {
		d := uint32(0)
		if left > 0 {
			d = p.after(time.Duration(left) * time.Millisecond)
		}
		c.deadline.Store(d)
		c.active.Store(p.now())
	}
	c.mu.Unlock()
}

// spend records n more bytes stored, taken from what was reserved first.
// Bytes beyond the reservation are those already read into the owner's
// buffer (see Options.MaxTotalBufferedBytes for their bound).
func (c *Conn) spend(n int64) {
	rd := c.rd
	rd.charged += n
	if rd.prepaid >= n {
		rd.prepaid -= n
		return
	}
	c.hub.inbound.used.Add(n - rd.prepaid)
	rd.prepaid = 0
}

// freeStored returns p, a stored buffer, to its pool and its bytes to the
// budget.
func (c *Conn) freeStored(p []byte) {
	c.rd.charged -= int64(cap(p))
	c.hub.inbound.give(int64(cap(p)))
	pbytes.Put(p)
}

// resize moves the stored buffer p to a pooled one of capacity at least n,
// accounting for the difference.
func (c *Conn) resize(p []byte, n int) []byte {
	q := append(pbytes.GetCap(n), p...)
	c.spend(int64(cap(q) - cap(p)))
	c.hub.stats.copied.Add(uint64(len(p)))
	if p != nil {
		pbytes.Put(p)
	}
	return q
}

// appendMsg appends b, payload bytes already read, to rd.msg, growing it
// geometrically (see msgCap). Growth past what was reserved is taken from
// the budget.
func (c *Conn) appendMsg(b []byte) {
	rd := c.rd
	m := len(rd.msg)
	if m+len(b) > cap(rd.msg) {
		want := c.msgCap(m + len(b))
		if extra := int64(pooledCap(want)-cap(rd.msg)) - rd.prepaid; extra > 0 {
			got := extra
			if rd.lane {
				c.hub.inbound.used.Add(extra) // finishing its message past the limit
			} else {
				got = c.hub.inbound.takeSome(extra)
			}
			rd.prepaid += got
			if got < extra {
				// The budget is short of the doubling: grow by what it
				// had, and at least by b, already read (which
				// Options.MaxTotalBufferedBytes bounds). Never by b
				// alone while the budget has room: one small fragment
				// after another would copy the message each time. The
				// budget is now pressed, so later reads reserve first
				// (see nextRead), and wait or take the lane.
				want = max(m+len(b), cap(rd.msg)+int(rd.prepaid))
			}
		}
		rd.msg = c.resize(rd.msg, want)
	}
	rd.msg = append(rd.msg, b...)
	c.hub.stats.copied.Add(uint64(len(b)))
}

// appendStored appends b, bytes already read, to the stored buffer p.
func (c *Conn) appendStored(p, b []byte) []byte {
	if len(p)+len(b) > cap(p) {
		p = c.resize(p, max(len(p)+len(b), minStored))
	}
	return append(p, b...)
}

// settleRead runs after input was handled: it starts or clears the read
// deadline, gives back what was reserved and not stored, and drops the
// readState once nothing is incomplete.
func (c *Conn) settleRead() {
	c.timeRead()
	rd := c.rd
	if rd == nil || c.own&ownDone != 0 || rd.wait != nil {
		return
	}
	if rd.prepaid > 0 {
		c.hub.inbound.give(rd.prepaid)
		rd.prepaid = 0
	}
	if rd.charged > 0 {
		return
	}
	if rd.lane {
		rd.lane = false
		c.hub.inbound.leaveLane(c)
	}
	if rd.hn == 0 && !rd.inFrame && !rd.inMsg && rd.buf == nil && rd.window == nil && c.state.Load() != connHandshake {
		c.rd = nil
	}
}

// reader returns the connection's read state, allocating it on demand.
func (c *Conn) reader() *readState {
	if c.rd == nil {
		c.rd = new(readState)
	}
	return c.rd
}

// dropReader returns the read state's buffers to their pools and what it
// held of the budget, and leaves the budget's queue and lane.
func (c *Conn) dropReader() {
	rd := c.rd
	if rd == nil {
		return
	}
	b := &c.hub.inbound
	held := rd.charged + rd.prepaid + int64(cap(rd.window))
	if rd.wait != nil {
		// Granted while its owner was finishing it: the grant, and the
		// lane if it came with it, go back too.
		if granted, lane := b.leave(rd.wait); granted {
			held += rd.wait.want
			rd.lane = rd.lane || lane
		}
	}
	if rd.buf != nil {
		pbytes.Put(rd.buf)
	}
	if rd.msg != nil {
		pbytes.Put(rd.msg)
	}
	c.rd = nil
	if held != 0 {
		b.give(held)
	}
	if rd.lane {
		b.leaveLane(c)
	}
}
