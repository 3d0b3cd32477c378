package wshub

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/pool/pbytes"
	"github.com/gobwas/ws"
)

// Connection states, kept in Conn.state. They only move forward.
const (
	connHandshake uint32 = iota // own listener: the upgrade request is being read
	connOpen                    // upgraded
	connClosing                 // a close frame is queued or sent; data writes are refused
	connClosed                  // the socket is closed and OnClose has been called
)

// Conn.flags, guarded by Conn.mu.
const (
	flagCloseRecv   uint8 = 1 << iota // the peer's close frame arrived
	flagShut                          // the post-close shutdown was done
	flagFlushing                      // portable path: a writer goroutine runs
	flagFlushQueued                   // on its loop's flush list
	flagPinged                        // deadline is a pong deadline, not a read deadline
)

// Conn.own flags, touched only by the goroutine processing the connection.
const (
	ownOpened   uint8 = 1 << iota // OnOpen was called
	ownStopRead                   // a close frame was handled or sent: discard input
	ownTimed                      // the read deadline for an incomplete message is set
	ownDone                       // finish ran
)

// A Conn is one WebSocket connection of a Hub.
//
// Its methods are safe for concurrent use by any goroutine, including inside
// callbacks. Writes never block on the network: a frame is written at once if
// the socket takes it, and otherwise queued and flushed when the socket turns
// writable, within the hub's MaxQueuedBytes.
//
// An idle Conn holds no goroutine, no timer and no buffer; it is about a
// hundred bytes. Buffers are borrowed from pools only while a message is
// partly read or frames wait to be written.
type Conn struct {
	hub  *Hub
	data any

	fd    int32         // socket; -1 on the portable path
	sched atomic.Uint32 // dispatch state, see dispatcher.schedule
	state atomic.Uint32 // connHandshake..connClosed; written under mu

	// deadline is the poller tick by which the current phase must end: the
	// upgrade, a message whose first bytes arrived, or the close handshake.
	// Zero means none. The sweep reads it; see Poller.sweep.
	deadline atomic.Uint32

	mu    sync.Mutex // guards out, flags, err, subs and state transitions
	flags uint8
	own   uint8 // owner-only, see ownOpened

	// credit is the owner-only token bucket of Options.MessageRate, in
	// milliseconds of sending time (see Conn.touched). It and active sit
	// in what would otherwise be padding after the flags: they cost no
	// memory.
	credit uint16

	// active is the poller tick of the last read; the heartbeat sweep pings
	// and closes by it (see Conn.heartbeat).
	active atomic.Uint32

	out  *outQueue   // frames waiting for the socket; nil when none
	err  *CloseError // why the connection ends; the first reason wins
	subs *membership // the channels it belongs to, linked through next

	rd  *readState // owner-only; nil unless a frame, message or upgrade is incomplete
	std *stdConn   // portable transport; nil on the netpoll path
}

// readState is what a connection keeps between reads while something is
// incomplete. It is allocated on demand and dropped when empty.
type readState struct {
	buf    []byte   // pooled: unparsed bytes (a partial frame or upgrade request)
	msg    []byte   // pooled: payload of a fragmented message so far
	op     byte     // opcode of the fragmented message
	inMsg  bool     // a fragmented message is in progress
	remote net.Addr // upgrade only: the peer's address, for OnUpgrade
}

// stdConn is the portable transport: a net.Conn read by its own goroutine.
type stdConn struct {
	nc net.Conn
}

// ErrSlowConsumer is returned by a write to a connection whose queue of
// unsent bytes would exceed Options.MaxQueuedBytes. The connection is closed
// with ClosePolicyViolation.
var ErrSlowConsumer = errors.New("wshub: slow consumer: write queue full")

// errBadMessageType is returned by WriteMessage for a type other than Text or Binary.
var errBadMessageType = errors.New("wshub: message type must be Text or Binary")

// heartbeat pings c if it has been silent for PingInterval, or closes it if
// it has been silent for IdleTimeout; the sweep calls it for open
// connections without a deadline. A peer that sends anything is not
// pinged: its data proves it alive as well as a pong would.
func (c *Conn) heartbeat(now uint32) {
	o := &c.hub.opts
	if c.hub.lifetimes && c.lifeOver(now) {
		c.closeFor(CloseGoingAway, reasonLifetime)
		return
	}
	idle := time.Duration(since(now, c.active.Load())) * time.Millisecond
	if o.IdleTimeout > 0 && idle >= o.IdleTimeout {
		c.closeFor(CloseGoingAway, reasonIdle)
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

// withinRate takes one message's credit and reports whether the peer keeps
// to Options.MessageRate. A peer that does not is closed with
// ClosePolicyViolation; what it sent after is discarded.
func (c *Conn) withinRate() bool {
	cost := c.hub.msgCost
	if cost == 0 {
		return true
	}
	if uint32(c.credit) >= cost {
		c.credit -= uint16(cost)
		return true
	}
	if c.fail(ClosePolicyViolation, reasonRate) {
		c.hub.event(EventClosed, c, reasonRate)
	}
	return false
}

// Data returns the value OnUpgrade returned for this connection.
func (c *Conn) Data() any { return c.data }

// Hub returns the hub the connection belongs to.
func (c *Conn) Hub() *Hub { return c.hub }

// RemoteAddr returns the peer's network address, or nil once the connection
// is closed. It is looked up on each call rather than stored, to keep idle
// connections small.
func (c *Conn) RemoteAddr() net.Addr {
	if c.std != nil {
		return c.std.nc.RemoteAddr()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() == connClosed {
		return nil
	}
	return peerAddr(int(c.fd))
}

// WriteMessage sends p as one message of type typ. It returns net.ErrClosed
// once the connection is closing, and ErrSlowConsumer if the connection's
// queue is full. p may be reused as soon as WriteMessage returns.
func (c *Conn) WriteMessage(typ MessageType, p []byte) error {
	if typ != Text && typ != Binary {
		return errBadMessageType
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != connOpen {
		return net.ErrClosed
	}
	if err := c.sendLocked(byte(typ), p, true); err != nil {
		return err
	}
	c.hub.stats.sent(1, frameSize(len(p)))
	return nil
}

// Close starts the closing handshake: it queues a close frame with code and
// reason after the frames already queued and refuses later writes. The
// connection ends when the peer answers, or after Options.CloseTimeout;
// OnClose then reports code and reason. A reason longer than 123 bytes is
// cut. Close returns net.ErrClosed if the connection was already closing.
func (c *Conn) Close(code CloseCode, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != connOpen {
		if c.state.Load() == connHandshake {
			c.killLocked(&CloseError{Code: code, Reason: reason}, 0, "")
			return nil
		}
		return net.ErrClosed
	}
	c.sendCloseLocked(code, reason)
	return nil
}

// smallFrame is the largest payload sendLocked copies next to its header to
// write with one plain write instead of writev.
const smallFrame = 512

// sendLocked writes a frame, or queues what the socket did not take. Bounded
// frames (data, pings and pongs) count against MaxQueuedBytes under the
// hub's SlowConsumer policy; the close frame, at most 127 bytes, always goes
// in, so that it can follow a full queue.
func (c *Conn) sendLocked(op byte, p []byte, bounded bool) error {
	var hdr [maxHeaderSize]byte
	hn := putHeader(hdr[:], op, len(p))
	policy := SlowPolicy(0) // unbounded
	if bounded {
		policy = c.hub.opts.SlowConsumer
	}
	return c.writeLocked(hdr[:hn], p, policy)
}

// writeLocked writes hdr and p, an encoded frame or the upgrade response,
// at once if the socket takes them, and queues what it did not. policy
// decides what happens if the queue would pass MaxQueuedBytes; zero means
// the bytes are queued whatever the bound.
func (c *Conn) writeLocked(hdr, p []byte, policy SlowPolicy) error {
	skip := 0
	if c.out == nil && c.std == nil {
		var n int
		var err error
		var b [maxHeaderSize + smallFrame]byte
		if len(hdr)+len(p) <= len(b) {
			// One plain write of a copy costs less than writev's two
			// iovecs for the small messages most hubs send.
			n, err = sysWrite(int(c.fd), append(append(b[:0], hdr...), p...))
		} else {
			bufs := [2][]byte{hdr, p}
			n, err = sysWritev(int(c.fd), bufs[:])
		}
		if n == len(hdr)+len(p) {
			c.afterFlushLocked()
			return nil
		}
		if err != nil && !isWouldBlock(err) {
			c.killLocked(lostError(err), 0, "")
			return net.ErrClosed
		}
		skip = max(n, 0)
	}
	if policy != 0 && !c.makeRoomLocked(len(hdr)+len(p)-skip, policy) {
		return ErrSlowConsumer
	}
	wasEmpty := c.out == nil
	c.queueLocked(newFrame(hdr, p, skip))
	if wasEmpty && c.std == nil {
		// The loop skips write edges while schedOut is clear, and the
		// socket may have drained, and reported it, between the write
		// above and queueLocked setting schedOut. One more try now covers
		// that edge; any later one sees the bit.
		c.flushLocked()
	}
	return nil
}

// makeRoomLocked decides, under policy, whether n more bytes may be queued
// for c, whose queue may be full. It reports false when they must not be:
// the message is dropped, or c is closed.
func (c *Conn) makeRoomLocked(n int, policy SlowPolicy) bool {
	limit := c.hub.opts.MaxQueuedBytes
	over := c.queuedLocked() + n - limit
	if over <= 0 {
		return true
	}
	switch policy {
	case SlowDropOldest:
		// The oldest frame of a netpoll queue may be partly written: it
		// must go out whole, so dropping starts after it. A message larger
		// than the bound (the only way to be over it with an empty queue)
		// cannot fit however much is dropped.
		if n <= limit && c.out != nil {
			from := c.out.first
			if c.std == nil {
				from++
			}
			if k := c.out.dropOldest(over, from); k >= 0 {
				for range k {
					c.hub.event(EventDropped, c, reasonSlow)
				}
				return true
			}
		}
		fallthrough // it cannot fit: drop it instead
	case SlowDropNewest:
		c.hub.event(EventDropped, c, reasonSlow)
		return false
	}
	c.killLocked(&CloseError{Code: ClosePolicyViolation, Reason: reasonSlow}, 0, "")
	c.hub.event(EventClosed, c, reasonSlow)
	return false
}

func (c *Conn) queuedLocked() int {
	if c.out == nil {
		return 0
	}
	return c.out.size
}

// queueLocked appends f, taking over the caller's reference.
func (c *Conn) queueLocked(f *frame) {
	if c.out == nil {
		c.out = c.hub.p.getQueue(c)
		c.out.total = &c.hub.stats.queued
		c.sched.Or(schedOut)
	}
	c.out.push(f)
	if c.std != nil && c.flags&flagFlushing == 0 {
		c.flags |= flagFlushing
		c.hub.p.wg.Add(1)
		go c.stdFlush()
	}
}

// sendCloseLocked queues a close frame and moves to the closing state.
func (c *Conn) sendCloseLocked(code CloseCode, reason string) {
	if c.err == nil {
		c.err = &CloseError{Code: code, Reason: reason}
	}
	c.state.Store(connClosing)
	c.flags &^= flagPinged // the deadline is the close handshake's now
	c.deadline.Store(c.hub.p.after(c.hub.opts.CloseTimeout))
	var buf [maxControlPayload]byte
	c.sendLocked(opClose, closePayload(buf[:], code, reason), false)
}

// afterFlushLocked runs when the queue has drained. Once the close frame is
// out, the write side is shut: the peer reads the frame, then end of stream,
// answers with its own close frame and closes. The hub keeps reading until
// then instead of closing at once, because closing a socket with unread input
// makes the kernel send a reset that can destroy the close frame in flight.
// If the peer's close frame already came, both sides are shut and the owner
// finishes on the end of stream that follows.
func (c *Conn) afterFlushLocked() {
	if c.state.Load() != connClosing || c.flags&flagShut != 0 {
		return
	}
	c.flags |= flagShut
	c.shutdownLocked(c.flags&flagCloseRecv != 0)
}

// shutdownLocked shuts down the socket's write side, or both sides, which
// wakes the connection's owner to finish it. The descriptor stays open, so
// this is safe from any goroutine while the state is not closed.
func (c *Conn) shutdownLocked(both bool) {
	if c.state.Load() == connClosed {
		return
	}
	if c.std == nil {
		sysShutdown(int(c.fd), both)
		return
	}
	if cw, ok := c.std.nc.(interface{ CloseWrite() error }); ok && !both {
		cw.CloseWrite()
		return
	}
	c.std.nc.Close()
}

// killLocked ends the connection without waiting for the peer: it records
// err, writes a close frame with code if the socket takes it at once (code 0
// sends none), and shuts the socket down so that the owner finishes it.
func (c *Conn) killLocked(err *CloseError, code CloseCode, reason string) {
	if c.state.Load() == connClosed {
		return
	}
	if c.err == nil {
		c.err = err
	}
	open := c.state.Load() == connOpen
	if code != 0 && open && c.out == nil && c.std == nil {
		var buf [maxHeaderSize + maxControlPayload]byte
		sysWrite(int(c.fd), closeFrame(&buf, code, reason)) // best effort
	}
	if open {
		c.state.Store(connClosing) // refuse further writes
	}
	c.flags |= flagShut
	c.shutdownLocked(true)
}

// kill is killLocked for callers without the lock.
func (c *Conn) kill(err *CloseError, code CloseCode, reason string) {
	c.mu.Lock()
	c.killLocked(err, code, reason)
	c.mu.Unlock()
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
		c.killLocked(&CloseError{Code: CloseAbnormal, Reason: reasonHandshake}, 0, "")
		c.hub.event(EventClosed, c, reasonHandshake)
	case connOpen:
		if c.flags&flagPinged != 0 {
			c.flags &^= flagPinged
			pinged := d - uint32(c.hub.opts.PongTimeout/time.Millisecond)
			if int32(c.active.Load()-pinged) >= 0 {
				return // it read something since the ping: alive
			}
			c.killLocked(&CloseError{Code: CloseAbnormal, Reason: reasonPong}, 0, "")
			c.hub.event(EventClosed, c, reasonPong)
			return
		}
		c.killLocked(&CloseError{Code: ClosePolicyViolation, Reason: reasonRead}, ClosePolicyViolation, reasonRead)
		c.hub.event(EventClosed, c, reasonRead)
	case connClosing:
		c.killLocked(&CloseError{Code: CloseAbnormal, Reason: "close timeout"}, 0, "")
	}
}

// lostError describes a connection that ended without a close frame.
func lostError(err error) *CloseError {
	reason := "connection lost"
	if err != nil && err != io.EOF {
		reason = err.Error()
	}
	return &CloseError{Code: CloseAbnormal, Reason: reason}
}

// onWritable flushes queued frames; a loop calls it on write readiness.
func (c *Conn) onWritable() {
	c.mu.Lock()
	if c.out != nil && c.state.Load() != connClosed {
		c.flushLocked()
	}
	c.mu.Unlock()
}

// flushLocked writes queued frames with writev until the queue is empty or
// the socket is full, in which case the next write edge resumes it.
func (c *Conn) flushLocked() {
	q := c.out
	for q.len() > 0 {
		var iov [maxIovecs][]byte
		k := q.gather(iov[:])
		n, err := sysWritev(int(c.fd), iov[:k])
		full := q.advance(n)
		if err != nil {
			if isWouldBlock(err) {
				return
			}
			c.killLocked(lostError(err), 0, "")
			return
		}
		if !full {
			return // short write: the socket is full
		}
	}
	c.out = nil
	c.sched.And(^uint32(schedOut))
	c.hub.p.putQueue(c, q)
	c.afterFlushLocked()
}

// process reads the socket until it is drained and handles what arrived. A
// worker calls it; it reports true if the socket may still hold input after
// maxReadsPerTurn reads, so that the worker queues it again.
func (c *Conn) process(buf []byte) (more bool) {
	if c.own&ownDone != 0 {
		return false
	}
	if c.own&ownOpened == 0 && c.state.Load() != connHandshake {
		c.opened()
		if c.rd != nil && len(c.rd.buf) > 0 {
			c.onData(nil) // bytes that came with the upgrade request
		}
	}
	for range maxReadsPerTurn {
		if c.own&ownDone != 0 {
			return false
		}
		n, err := sysRead(int(c.fd), buf)
		if n > 0 {
			c.touched(c.hub.p.now())
			c.onData(buf[:n])
			if n < len(buf) && c.sched.Load()&schedHup == 0 {
				// A short read emptied the socket's receive queue; with
				// edge-triggered readiness anything that arrives later,
				// data or end of stream, reports a new edge. Skipping the
				// read that would find EAGAIN saves a system call per
				// message. Not so once a hang-up was reported: the end of
				// stream may have come with the data, on the edge already
				// consumed, so read on until it shows.
				return false
			}
			continue
		}
		if err != nil && isWouldBlock(err) {
			return false
		}
		c.finish(lostError(err))
		return false
	}
	return true
}

// opened marks the connection open for its owner and calls OnOpen.
func (c *Conn) opened() {
	c.own |= ownOpened
	if f := c.hub.opts.OnOpen; f != nil {
		f(c)
	}
}

// finish closes the socket and reports the end. Only the connection's owner
// calls it, once: the descriptor is unregistered and marked closed under mu
// before it is closed, so no other goroutine can touch a reused number.
// Unregistering comes first and outside mu, because loops take the table
// lock before a connection's lock.
func (c *Conn) finish(err *CloseError) {
	c.own |= ownDone | ownStopRead
	c.hub.p.unregister(c)
	c.mu.Lock()
	if c.err != nil {
		err = c.err
	} else {
		c.err = err
	}
	q := c.out
	c.out = nil
	c.sched.And(^uint32(schedOut))
	subs := c.subs
	c.subs = nil
	c.deadline.Store(0)
	c.state.Store(connClosed)
	c.mu.Unlock()
	if q != nil {
		q.discard()
		c.hub.p.putQueue(c, q)
	}
	for m := subs; m != nil; {
		next := m.next // the list is detached: only this goroutine reads it
		m.ch.remove(m)
		m = next
	}
	if c.std == nil {
		sysClose(int(c.fd))
	} else {
		c.std.nc.Close()
	}
	c.dropReader()
	c.hub.ended(c, c.own&ownOpened != 0, err)
}

// reader returns the connection's read state, allocating it on demand.
func (c *Conn) reader() *readState {
	if c.rd == nil {
		c.rd = new(readState)
	}
	return c.rd
}

// dropReader returns the read state's buffers to their pools.
func (c *Conn) dropReader() {
	if rd := c.rd; rd != nil {
		if rd.buf != nil {
			pbytes.Put(rd.buf)
		}
		if rd.msg != nil {
			pbytes.Put(rd.msg)
		}
		c.rd = nil
	}
}

// onData handles bytes read from the socket: the upgrade request while it is
// incomplete, then frames. What stays incomplete is kept in a pooled buffer.
func (c *Conn) onData(b []byte) {
	if c.own&ownStopRead != 0 {
		return // closing: the rest is discarded
	}
	fromBuf := false
	if c.rd != nil && len(c.rd.buf) > 0 {
		c.rd.buf = appendPooled(c.rd.buf, b)
		b, fromBuf = c.rd.buf, true
	}
	if c.state.Load() == connHandshake {
		var done bool
		if b, done = c.upgrade(b); !done {
			c.keep(b, fromBuf)
			return
		}
	}
	rest := c.parse(b)
	c.keep(rest, fromBuf)
	c.timeRead()
}

// keep stores rest, the unparsed tail of the bytes just handled, for the next
// read. fromBuf tells whether those bytes lie in rd.buf itself.
func (c *Conn) keep(rest []byte, fromBuf bool) {
	if c.own&ownDone != 0 {
		return
	}
	switch {
	case fromBuf && len(rest) == 0:
		pbytes.Put(c.rd.buf)
		c.rd.buf = nil
	case fromBuf:
		c.rd.buf = c.rd.buf[:copy(c.rd.buf, rest)]
	case len(rest) > 0:
		rd := c.reader()
		rd.buf = append(pbytes.GetCap(max(len(rest), 512)), rest...)
	}
	if rd := c.rd; rd != nil && rd.buf == nil && !rd.inMsg && c.state.Load() != connHandshake {
		c.rd = nil
	}
}

// appendPooled appends b to the pooled buffer p, moving to a larger pooled
// buffer when p is full.
func appendPooled(p, b []byte) []byte {
	if len(p)+len(b) <= cap(p) {
		return append(p, b...)
	}
	q := pbytes.GetCap(max(2*cap(p), len(p)+len(b)))
	q = append(append(q, p...), b...)
	pbytes.Put(p)
	return q
}

// timeRead starts the read deadline when a message is incomplete and clears
// it when none is. The lock is taken only on a change, and the deadline is
// left alone in any other phase, whose deadline it must not erase.
func (c *Conn) timeRead() {
	incomplete := c.rd != nil && (len(c.rd.buf) > 0 || c.rd.inMsg)
	if incomplete == (c.own&ownTimed != 0) || c.own&ownDone != 0 {
		return
	}
	c.own ^= ownTimed
	c.mu.Lock()
	if c.state.Load() == connOpen {
		c.flags &^= flagPinged // reading proves the peer alive
		if incomplete {
			c.deadline.Store(c.hub.p.after(c.hub.opts.ReadTimeout))
		} else {
			c.deadline.Store(0)
		}
	}
	c.mu.Unlock()
}

// parse handles the complete frames at the start of b and returns the rest.
func (c *Conn) parse(b []byte) []byte {
	for len(b) > 0 && c.own&ownStopRead == 0 {
		h, n := parseHeader(b)
		if n == 0 {
			return b
		}
		if code, reason := c.check(&h); code != 0 {
			// The frame boundaries are lost: input can no longer be
			// parsed, so the rest is discarded.
			c.own |= ownStopRead
			c.fail(code, reason)
			return nil
		}
		if int64(len(b)-n) < h.length {
			return b // the limit was checked: at most MaxMessageSize is kept
		}
		end := n + int(h.length)
		payload := b[n:end]
		ws.Cipher(payload, h.mask, 0)
		c.onFrame(&h, payload)
		b = b[end:]
	}
	return nil
}

// check validates a frame header before any of its payload is kept.
func (c *Conn) check(h *frameHeader) (CloseCode, string) {
	inMsg := c.rd != nil && c.rd.inMsg
	switch {
	case h.rsv != 0:
		return CloseProtocolError, "reserved bits set"
	case !h.masked:
		return CloseProtocolError, "client frame not masked"
	case h.length < 0:
		return CloseProtocolError, "invalid frame length"
	}
	switch h.op {
	case opClose, opPing, opPong:
		switch {
		case !h.fin:
			return CloseProtocolError, "fragmented control frame"
		case h.length > maxControlPayload:
			return CloseProtocolError, "control frame too long"
		}
		return 0, ""
	case opText, opBinary:
		if inMsg {
			return CloseProtocolError, "new message inside a fragmented one"
		}
	case opContinuation:
		if !inMsg {
			return CloseProtocolError, "continuation without a message"
		}
	default:
		return CloseProtocolError, "reserved opcode"
	}
	size := h.length
	if inMsg {
		size += int64(len(c.rd.msg))
	}
	if size > c.hub.opts.MaxMessageSize {
		return CloseMessageTooBig, "message too big"
	}
	return 0, ""
}

// onFrame handles one complete, valid, unmasked frame.
func (c *Conn) onFrame(h *frameHeader, p []byte) {
	switch h.op {
	case opText, opBinary:
		if h.fin {
			c.deliver(h.op, p)
			return
		}
		rd := c.reader()
		rd.inMsg, rd.op = true, h.op
		rd.msg = appendPooled(pbytes.GetCap(max(len(p), 512)), p)
	case opContinuation:
		rd := c.rd
		rd.msg = appendPooled(rd.msg, p)
		if h.fin {
			c.deliver(rd.op, rd.msg)
			pbytes.Put(rd.msg)
			rd.msg, rd.inMsg = nil, false
		}
	case opPing:
		if !c.withinRate() {
			return
		}
		c.mu.Lock()
		if c.state.Load() == connOpen {
			// Bounded: a peer that floods pings and never reads is a slow
			// consumer like any other.
			c.sendLocked(opPong, p, true)
		}
		c.mu.Unlock()
	case opPong:
		// Unsolicited pongs are allowed and ignored; the answer to the
		// hub's ping ends the pong deadline and gives a round-trip time.
		c.mu.Lock()
		if c.flags&flagPinged != 0 && c.state.Load() == connOpen {
			c.flags &^= flagPinged
			sent := c.deadline.Swap(0) - uint32(c.hub.opts.PongTimeout/time.Millisecond)
			c.hub.stats.pongRTT(since(c.hub.p.now(), sent))
		}
		c.mu.Unlock()
	case opClose:
		c.onClose(p)
	}
}

// deliver validates a complete message and hands it to OnMessage.
func (c *Conn) deliver(op byte, p []byte) {
	if op == opText && !utf8.Valid(p) {
		c.fail(CloseInvalidPayload, "invalid UTF-8")
		return
	}
	if c.state.Load() != connOpen || !c.withinRate() {
		return // closing: RFC 6455 lets us drop data after our close frame
	}
	c.hub.stats.received(len(p))
	if f := c.hub.opts.OnMessage; f != nil {
		f(c, MessageType(op), p)
	}
}

// onClose handles the peer's close frame: it checks the code and reason,
// answers with the same code if the hub had not closed first, and finishes
// the connection once our close frame is out: nothing may follow the peer's.
func (c *Conn) onClose(p []byte) {
	code, reason := CloseNoStatus, ""
	switch {
	case len(p) == 1:
		c.failClose(CloseProtocolError, "invalid close frame")
		return
	case len(p) >= 2:
		code = CloseCode(uint16(p[0])<<8 | uint16(p[1]))
		if !validWireCode(code) {
			c.failClose(CloseProtocolError, "invalid close code")
			return
		}
		if !utf8.Valid(p[2:]) {
			c.failClose(CloseInvalidPayload, "invalid UTF-8 in close reason")
			return
		}
		reason = string(p[2:])
	}
	c.own |= ownStopRead
	c.mu.Lock()
	c.flags |= flagCloseRecv
	if c.state.Load() == connOpen {
		c.err = &CloseError{Code: code, Reason: reason}
		echo := code
		if code == CloseNoStatus {
			echo = 0 // answer an empty close frame with an empty one
		}
		c.sendCloseLocked(echo, "")
	}
	sent := c.out == nil // else the flush shuts both sides and we finish on EOF
	c.mu.Unlock()
	if sent {
		c.finish(nil)
	}
}

// failClose answers an invalid close frame. The peer considers the
// connection closed already, so nothing it sends later is read.
func (c *Conn) failClose(code CloseCode, reason string) {
	c.own |= ownStopRead
	c.fail(code, reason)
}

// fail closes the connection because the peer broke the protocol or a
// limit: it sends a close frame with code, and the connection finishes when
// the peer answers or closes, or CloseTimeout passes. Frames that follow are
// still parsed, for the peer's close frame, unless the caller stopped
// reading because the stream lost its frame boundaries. It reports whether
// the connection was open, so that the caller counts a violation once.
func (c *Conn) fail(code CloseCode, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != connOpen {
		return false
	}
	c.sendCloseLocked(code, reason)
	return true
}

// outQueue holds the frames a connection could not write yet. It comes
// from a pool and goes back when it drains.
type outQueue struct {
	frames []*frame
	first  int           // index of the oldest unsent frame
	head   int           // bytes of frames[first] already written
	size   int           // bytes not yet written
	total  *atomic.Int64 // the hub's queued bytes, which size is part of
}

// queuePool holds the write queues of portable connections; netpoll
// connections use their loop's free list (see Poller.getQueue).
var queuePool = sync.Pool{New: func() any { return new(outQueue) }}

func (q *outQueue) len() int { return len(q.frames) - q.first }

func (q *outQueue) push(f *frame) {
	if len(q.frames) == cap(q.frames) && q.first > 0 {
		// Reuse the slots already written instead of growing: a queue
		// that never quite drains would otherwise reallocate for ever.
		n := copy(q.frames, q.frames[q.first:])
		clear(q.frames[n:])
		q.frames, q.first = q.frames[:n], 0
	}
	q.frames = append(q.frames, f)
	q.grow(len(f.b))
}

// grow adds n, which may be negative, to the bytes queued.
func (q *outQueue) grow(n int) {
	q.size += n
	q.total.Add(int64(n))
}

// gather fills iov with the unsent bytes of the oldest frames.
func (q *outQueue) gather(iov [][]byte) int {
	k := 0
	for i := q.first; i < len(q.frames) && k < len(iov); i++ {
		iov[k] = q.frames[i].b
		k++
	}
	iov[0] = iov[0][q.head:]
	return k
}

// advance drops n written bytes and reports whether they were all it was
// asked to write, as far as gather goes: false means a short write.
func (q *outQueue) advance(n int) (whole bool) {
	q.grow(-n)
	for n > 0 {
		f := q.frames[q.first]
		left := len(f.b) - q.head
		if n < left {
			q.head += n
			return false
		}
		n -= left
		f.release()
		q.frames[q.first] = nil
		q.first++
		q.head = 0
	}
	if q.first == len(q.frames) {
		q.frames, q.first = q.frames[:0], 0
	}
	return true
}

// discard releases every queued frame.
func (q *outQueue) discard() {
	for i := q.first; i < len(q.frames); i++ {
		q.frames[i].release()
		q.frames[i] = nil
	}
	q.grow(-q.size)
	q.frames, q.first, q.head = q.frames[:0], 0, 0
}

// dropOldest drops the oldest whole data frames from index from on until
// need bytes are freed, and returns how many it dropped; control frames
// stay. It drops nothing and returns -1 if those frames do not add up to
// need.
func (q *outQueue) dropOldest(need, from int) int {
	avail := 0
	for i := from; i < len(q.frames) && avail < need; i++ {
		if q.frames[i].isData() {
			avail += len(q.frames[i].b)
		}
	}
	if avail < need {
		return -1
	}
	dropped, freed, j := 0, 0, from
	for i := from; i < len(q.frames); i++ {
		f := q.frames[i]
		if freed < need && f.isData() {
			freed += len(f.b)
			dropped++
			f.release()
			continue
		}
		q.frames[j] = f
		j++
	}
	clear(q.frames[j:])
	q.frames = q.frames[:j]
	q.grow(-freed)
	return dropped
}
