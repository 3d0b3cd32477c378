package wshub

import (
	"time"
)

// Every deadline of every connection lives here: the poller's millisecond
// clock, the sweep that reads one 32-bit tick per connection instead of a
// timer per connection, and what a passed deadline does. A connection has
// one deadline at a time, for the phase it is in: its upgrade request
// (HandshakeTimeout), a message whose first bytes arrived (ReadTimeout), a
// ping's answer (PongTimeout) or the close handshake (CloseTimeout). Open
// connections without one are checked for silence (PingInterval,
// IdleTimeout) and age (MaxLifetime) from their last read tick and the end
// of life packed into sched.

// now returns the poller's clock in milliseconds. It wraps after 49 days;
// deadlines are compared with wrap-safe arithmetic, which is why timeouts
// are capped at maxTimeout.
func (p *Poller) now() uint32 {
	return uint32(time.Since(p.start) / time.Millisecond)
}

// maxTimeout bounds every timeout so that tick comparisons stay correct
// across the wrap of the millisecond clock.
const maxTimeout = 24 * 24 * time.Hour

// after returns the tick d from now, never zero (zero means "no deadline").
func (p *Poller) after(d time.Duration) uint32 {
	t := p.now() + uint32(d/time.Millisecond)
	if t == 0 {
		t = 1
	}
	return t
}

// expired reports whether deadline tick d has passed at tick now.
func expired(now, d uint32) bool { return d != 0 && int32(now-d) >= 0 }

// since returns the ticks from t to now, or 0 if t is later: a connection
// may read, and store a newer tick, after the sweep took its now.
func since(now, t uint32) uint32 { return uint32(max(int32(now-t), 0)) }

// setSweep makes the sweep run at least every d.
func (p *Poller) setSweep(d time.Duration) {
	d = min(max(d, 5*time.Millisecond), time.Second)
	for {
		cur := p.sweepEvery.Load()
		if int64(d) >= cur {
			return
		}
		if p.sweepEvery.CompareAndSwap(cur, int64(d)) {
			select {
			case p.sweepKick <- struct{}{}:
			default:
			}
			return
		}
	}
}

// sweeper runs the deadline sweep. One goroutine and one timer serve every
// connection of every hub on the poller, instead of a timer per connection.
func (p *Poller) sweeper() {
	defer p.wg.Done()
	t := time.NewTimer(time.Duration(p.sweepEvery.Load()))
	defer t.Stop()
	var due []*Conn
	for {
		select {
		case <-p.done:
			return
		case <-p.sweepKick:
		case <-t.C:
		}
		due = p.sweep(due[:0])
		clear(due)
		t.Reset(time.Duration(p.sweepEvery.Load()))
	}
}

// sweep ends the connections whose deadline passed and returns the slice it
// used to collect them. It reads each connection's deadline with one atomic
// load; the ending itself happens outside the table lock.
func (p *Poller) sweep(due []*Conn) []*Conn {
	now := p.now()
	p.each(func(c *Conn) {
		d := c.deadline.Load()
		switch {
		case expired(now, d):
			due = append(due, c)
		case d == 0 && (c.hub.heartbeats || c.hub.lifetimes) && c.state.Load() == connOpen:
			// Silent long enough to ping or close, or too old? A
			// subtraction or two decide.
			h := c.hub
			if h.heartbeats && since(now, c.active.Load()) >= h.heartbeatAfter ||
				h.lifetimes && c.lifeOver(now) {
				due = append(due, c)
			}
		}
	})
	for _, c := range due {
		if expired(now, c.deadline.Load()) {
			c.expire(now)
		} else {
			c.heartbeat(now)
		}
	}
	clear(due)
	return p.sweepExpiries(due[:0])
}

// heartbeat pings c if it has been silent for PingInterval, or closes it if
// it has been silent for IdleTimeout; the sweep calls it for open
// connections without a deadline. A peer that sends anything is not
// pinged: its data proves it alive as well as a pong would.
func (c *Conn) heartbeat(now uint32) {
	o := &c.hub.opts
	if c.hub.lifetimes && c.lifeOver(now) {
		c.closeFor(CloseGoingAway, ReasonMaxLifetime)
		return
	}
	idle := time.Duration(since(now, c.active.Load())) * time.Millisecond
	if o.IdleTimeout > 0 && idle >= o.IdleTimeout {
		c.closeFor(CloseGoingAway, ReasonIdleTimeout)
		return
	}
	if o.PingInterval <= 0 || idle < o.PingInterval {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != connOpen || c.deadline.Load() != 0 {
		return // closing, or a message is being read: it is alive
	}
	c.flags |= flagPinged
	c.deadline.Store(c.hub.p.after(o.PongTimeout))
	if c.sendLocked(opPing, nil, true) == nil {
		c.hub.stats.pings.Add(1)
	}
}

// closeFor starts the closing handshake because the hub enforces a limit,
// and reports it.
func (c *Conn) closeFor(code CloseCode, reason string) {
	if c.Close(code, reason) == nil {
		c.hub.event(EventClosed, c, reason)
	}
}

// lifeBits packs end, the tick at which a connection's MaxLifetime ends,
// into the upper bits of sched, where lifeOver reads it.
func lifeBits(end uint32) uint32 { return end >> schedEndShift << schedEndShift }

// lifeOver reports whether c has outlived Options.MaxLifetime at tick now.
// The end of its life is kept in the upper bits of sched (see schedEndShift)
// in steps of 256 ticks: the 24-bit difference, shifted into the sign bit,
// says which comes first, across the wrap of the clock too.
func (c *Conn) lifeOver(now uint32) bool {
	end := c.sched.Load() >> schedEndShift
	return int32((now>>schedEndShift-end)<<schedEndShift) >= 0
}

// touched records a read at tick now: the heartbeat's sign of life, and the
// time that refills the rate limit's credit. Ticks are whole milliseconds,
// so no fraction of credit is ever lost between reads.
func (c *Conn) touched(now uint32) {
	prev := c.active.Swap(now)
	if h := c.hub; h.msgCost != 0 {
		c.credit = uint16(min(uint32(c.credit)+since(now, prev), h.maxCredit))
	}
}

// expire ends a connection whose deadline passed; the sweep calls it.
func (c *Conn) expire(now uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !expired(now, c.deadline.Load()) {
		return // the phase ended meanwhile
	}
	d := c.deadline.Swap(0)
	switch c.state.Load() {
	case connHandshake:
		c.killLocked(&CloseError{Code: CloseAbnormal, Reason: ReasonHandshakeTimeout}, 0, "")
		c.hub.event(EventClosed, c, ReasonHandshakeTimeout)
	case connOpen:
		if c.flags&flagPinged != 0 {
			c.flags &^= flagPinged
			pinged := d - uint32(c.hub.opts.PongTimeout/time.Millisecond)
			if int32(c.active.Load()-pinged) >= 0 {
				return // it read something since the ping: alive
			}
			c.killLocked(&CloseError{Code: CloseAbnormal, Reason: ReasonPongTimeout}, 0, "")
			c.hub.event(EventClosed, c, ReasonPongTimeout)
			return
		}
		c.killLocked(&CloseError{Code: ClosePolicyViolation, Reason: ReasonReadTimeout}, ClosePolicyViolation, ReasonReadTimeout)
		c.hub.event(EventClosed, c, ReasonReadTimeout)
	case connClosing:
		c.killLocked(&CloseError{Code: CloseAbnormal, Reason: "close timeout"}, 0, "")
	}
}
