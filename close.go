package wshub

import (
	"io"
	"unicode/utf8"
)

// The close handshake (RFC 6455, 7): the close frames a connection sends
// and answers, the shutdown that follows them, and the verbs that end a
// connection, which are:
//
//	verb             called by                        sends                         the end comes
//	Close            the application; closeFor        its close frame, after queue  on the peer's answer, or CloseTimeout
//	closeFor         the sweep: lifetime, idle, exp   as Close, and reports it      as Close
//	fail             the parser: a protocol or limit  a close frame with the code   as Close; data read is discarded
//	failClose        the parser: a bad close frame    as fail, and reads no more    on the peer's end, or CloseTimeout
//	onClose          the parser: the peer's close     the answer, before backlog    when the answer is out: finish
//	sendCloseLocked  those above; SlowClose           queues the frame: closing     afterFlushLocked shuts the write side
//	killLocked/kill  failures, timeouts, Hub.Close    a close frame if it fits now  shutdownLocked wakes the owner at once
//	shutdownLocked   afterFlushLocked, killLocked     close_notify on wss://        the owner reads the end: finish
//	finish           the owner, once                  nothing                       closes the socket, calls OnClose

// closeAnswerSlack is how many bytes of queued messages may still go out
// before the answer to a peer's close frame: what a peer that sent a
// message and then its close frame expects back, such as the reply to that
// message, without waiting for a backlog.
const closeAnswerSlack = 64 << 10

// dropBacklogLocked drops the data frames queued for c beyond the oldest
// closeAnswerSlack bytes of them, and returns how many it dropped. Control
// frames stay, and so do the frame partly written and those of a write in
// flight: they are on their way.
func (c *Conn) dropBacklogLocked() int {
	q := c.out
	if q == nil {
		return 0
	}
	from, keep := c.keptLocked(), closeAnswerSlack
	for ; from < len(q.frames) && keep > 0; from++ {
		keep -= len(q.frames[from].b)
	}
	return q.dropData(from)
}

// sendCloseLocked queues a close frame and moves to the closing state.
func (c *Conn) sendCloseLocked(code CloseCode, reason string) {
	if c.err == nil {
		c.err = &CloseError{Code: code, Reason: reason}
	}
	c.state.Store(connClosing)
	c.hub.inbound.cancel(c) // a connection waiting for the budget will store nothing more
	c.flags &^= flagPinged  // the deadline is the close handshake's now
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
	switch c.transport() {
	case viaTLS:
		c.closeNotifyLocked()
		fallthrough
	case viaSocket:
		sysShutdown(int(c.fd), both)
	case viaNetConn:
		if cw, ok := c.cio.nc.(interface{ CloseWrite() error }); ok && !both {
			cw.CloseWrite()
			return
		}
		c.cio.nc.Close()
	}
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
	if code != 0 && open && c.transport() != viaNetConn && (c.out == nil || c.out.held) {
		var buf [maxHeaderSize + maxControlPayload]byte
		if c.out != nil {
			// Nothing was written yet: the held 101 first, so that the
			// client reads why it goes.
			c.writeRaw(c.out.frames[c.out.first].b)
			c.out.discard()
		}
		c.writeRaw(closeFrame(&buf, code, reason)) // best effort
	}
	if open {
		c.state.Store(connClosing) // refuse further writes
	}
	c.flags |= flagShut
	c.hub.inbound.cancel(c)
	c.shutdownLocked(true)
}

// kill is killLocked for callers without the lock.
func (c *Conn) kill(err *CloseError, code CloseCode, reason string) {
	c.mu.Lock()
	c.killLocked(err, code, reason)
	c.mu.Unlock()
}

// lostError describes a connection that ended without a close frame.
func lostError(err error) *CloseError {
	reason := "connection lost"
	if err != nil && err != io.EOF {
		reason = err.Error()
	}
	return &CloseError{Code: CloseAbnormal, Reason: reason, ByPeer: true}
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
		c.err = &CloseError{Code: code, Reason: reason, ByPeer: true}
		// RFC 6455 5.5.1: answer as soon as practical. A peer that closes
		// reads no more messages: a backlog queued for it goes, and the
		// answer follows what is on its way and closeAnswerSlack bytes.
		for range c.dropBacklogLocked() {
			c.hub.event(EventDropped, c, ReasonPeerClosed)
		}
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
// still parsed, their data discarded, for the peer's close frame, unless
// the caller stopped reading because the stream lost its frame boundaries.
// It reports whether the connection was open, so that the caller counts a
// violation once.
func (c *Conn) fail(code CloseCode, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != connOpen {
		return false
	}
	c.sendCloseLocked(code, reason)
	return true
}
