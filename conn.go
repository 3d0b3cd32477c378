package wshub

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/gobwas/pool/pbytes"
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
	flagDeflate                       // permessage-deflate: data may go out compressed
	flagCorked                        // in a turn that delivered messages (see Conn.cork)
	flagCorkWrote                     // ... which wrote once already: later writes queue until it ends
)

// Conn.own flags, touched only by the goroutine processing the connection.
const (
	ownOpened   uint8 = 1 << iota // OnOpen was called
	ownStopRead                   // a close frame was handled or sent: discard input
	ownTimed                      // the read deadline for an incomplete message is set
	ownDone                       // finish ran
	ownInflate                    // permessage-deflate: messages may come compressed
	ownTakeover                   // ... and the client keeps its compression context
	ownCorked                     // flagCorked was set in this turn
	ownPending                    // its upgrade counts among its address's unfinished ones (Hub.admitAccepted)
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
	data any // what OnUpgrade returned; set before the connection is shared, never changed

	fd    int32         // socket; -1 on the portable path
	sched atomic.Uint32 // dispatch state, see Poller.schedule
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

	rd *readState // owner-only; nil unless a frame, message or upgrade is incomplete, or the budget is awaited

	// cio is what the connection needs besides a plain socket on the
	// loops: the net.Conn of the portable path, or the TLS state of a
	// wss:// connection on the loops (see connIO). Nil for a plain socket.
	cio *connIO
}

// A transport is how a connection's bytes move. Each path that depends on
// it (the owner's read, the flush, the direct write, the shutdown) has one
// body with a small step per transport.
type transport uint8

const (
	viaSocket  transport = iota // a plain socket on the loops: fd
	viaTLS                      // wss:// on the loops: fd, with cio.tc encrypting
	viaNetConn                  // the portable path: cio.nc, read by a goroutine of its own
)

// transport tells from fd and cio, which never change once the connection
// is registered, how its bytes move.
func (c *Conn) transport() transport {
	switch {
	case c.fd < 0:
		return viaNetConn
	case c.cio != nil:
		return viaTLS
	}
	return viaSocket
}

// Data returns the value OnUpgrade returned for this connection.
func (c *Conn) Data() any { return c.data }

// Subprotocol returns the subprotocol negotiated in the upgrade (see
// Options.Subprotocols), or "".
func (c *Conn) Subprotocol() string {
	if i := c.sched.Load() & schedProtoMask >> schedProtoShift; i != 0 {
		return c.hub.opts.Subprotocols[i-1]
	}
	return ""
}

// Hub returns the hub the connection belongs to.
func (c *Conn) Hub() *Hub { return c.hub }

// RemoteAddr returns the peer's network address, or nil once the connection
// is closed. It is looked up on each call rather than stored, to keep idle
// connections small.
func (c *Conn) RemoteAddr() net.Addr {
	if c.transport() == viaNetConn {
		return c.cio.nc.RemoteAddr()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() == connClosed {
		return nil
	}
	return peerAddr(int(c.fd))
}

// WriteMessage sends p as one message of type typ. It returns net.ErrClosed
// once the connection is closing, ErrMessageTooBig, with nothing written,
// if the message's frame (compressed, when it goes out compressed) is
// larger than Options.MaxQueuedBytes, and ErrSlowConsumer if the message
// does not fit in the connection's queue; what then happens to the
// connection is Options.SlowConsumer's choice. p may be reused as soon as
// WriteMessage returns.
//
// The message is written at once if the socket takes it, except while the
// connection's OnMessage callbacks run on the netpoll path: what is written
// to the connection then (by the callback or anyone else), after the first
// message, is queued and leaves in one writev when the callbacks of that
// read return, so that a callback answering with several messages costs
// two system calls. A callback that blocks has its writes sent after about
// a millisecond.
func (c *Conn) WriteMessage(typ MessageType, p []byte) error {
	if typ != Text && typ != Binary {
		return ErrMessageType
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != connOpen {
		return net.ErrClosed
	}
	op := byte(typ)
	if z := c.hub.opts.Compression; z != nil && c.flags&flagDeflate != 0 && len(p) >= z.Threshold {
		if packed := deflate(p, z.Level); packed != nil {
			defer pbytes.Put(packed)
			p, op = packed, op|rsv1
			c.hub.stats.compressed.Add(1)
		}
	}
	if err := c.sendLocked(op, p, true); err != nil {
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

// openedOnce calls OnOpen for a connection upgraded since its owner last ran,
// then handles the bytes that came with the upgrade request on the ServeHTTP
// door.
func (c *Conn) openedOnce() {
	if c.own&ownOpened != 0 || c.state.Load() == connHandshake {
		return
	}
	c.opened()
	if rd := c.rd; rd != nil && len(rd.buf) > 0 {
		early := rd.buf // not charged: ServeHTTP read them, at most a bufio.Reader's worth
		rd.buf = nil
		c.onData(early)
		pbytes.Put(early)
	}
}

// opened marks the connection open for its owner, calls OnOpen, and then
// lets the 101 answer and what OnOpen wrote go (see holdLocked).
func (c *Conn) opened() {
	c.own |= ownOpened
	if c.own&ownTakeover != 0 {
		// The client's compression window, kept while the connection
		// lives: 512 bytes, charged to the budget like stored input.
		c.reader().window = make([]byte, 0, windowSize)
		c.hub.inbound.used.Add(windowSize)
	}
	if f := c.hub.opts.OnOpen; f != nil {
		f(c)
	}
	c.mu.Lock()
	c.releaseLocked()
	c.mu.Unlock()
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
	c.waitWriteLocked() // a flush in writev uses this descriptor and these frames
	if c.err != nil {
		err = c.err
	} else {
		c.err = err
	}
	q := c.out
	c.out = nil
	c.sched.And(^uint32(schedOut))
	c.presenceLeaveAllLocked()
	subs := c.subs
	c.subs = nil
	c.deadline.Store(0)
	c.state.Store(connClosed)
	deflating := c.flags&flagDeflate != 0
	c.mu.Unlock()
	if deflating {
		c.hub.stats.deflating.Add(-1)
	}
	if q != nil {
		q.discard()
		c.hub.p.putQueue(c, q)
	}
	for m := subs; m != nil; {
		next := m.next // the list is detached: only this goroutine reads it
		m.ch.remove(m)
		m = next
	}
	switch c.transport() {
	case viaTLS:
		c.cio.release()
		fallthrough
	case viaSocket:
		sysClose(int(c.fd))
	case viaNetConn:
		c.cio.nc.Close()
	}
	c.dropReader()
	c.hub.ended(c, c.own&ownOpened != 0, err)
}
