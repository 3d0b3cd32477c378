package wshub

import (
	"time"
	"unicode/utf8"

	"github.com/gobwas/pool/pbytes"
	"github.com/gobwas/ws"
)

// The parser: frames checked, unmasked and handed to OnMessage where they
// lie when they are whole, and kept in the readState while they are not.

// maxEmptyFragments is how many empty non-final frames one message may
// hold; the next closes the connection (ReasonEmptyFragments): they cost a
// header's work each and bring the message no closer to its end.
const maxEmptyFragments = 16

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
	if c.fail(ClosePolicyViolation, ReasonRateLimit) {
		c.hub.event(EventClosed, c, ReasonRateLimit)
	}
	return false
}

// onData handles bytes read into the owner's buffer, or handed over with the
// upgrade: the upgrade request while it is incomplete, then frames. What
// stays incomplete is stored in the readState.
func (c *Conn) onData(b []byte) {
	for len(b) > 0 && c.own&ownStopRead == 0 {
		rd := c.rd
		switch {
		case c.state.Load() == connHandshake:
			b = c.onRequest(b)
		case rd != nil && rd.hn > 0:
			k := copy(rd.small[rd.hn:rd.smallNeed()], b)
			rd.hn += uint8(k)
			b = b[k:]
			if int(rd.hn) == rd.smallNeed() {
				c.onSmall()
			}
		case rd != nil && rd.inFrame:
			k := int(min(int64(len(b)), rd.left))
			c.onPayload(b[:k])
			b = b[k:]
		default:
			b = c.parse(b)
		}
	}
	c.settleRead()
}

// onRequest handles bytes of an own-listener upgrade request: b, just read,
// or nil when they were read into rd.buf. Once the request is answered it
// handles the frames that came with it and returns what of b follows.
func (c *Conn) onRequest(b []byte) []byte {
	rd := c.rd
	if len(rd.buf) == 0 && b != nil {
		// The usual case: the whole request came in one read.
		rest, done := c.upgrade(b)
		if !done {
			if c.own&ownDone == 0 {
				rd.buf = c.appendStored(rd.buf, b) // at most maxRequestSize: upgrade refuses more
			}
			return nil
		}
		return rest
	}
	k := min(len(b), maxRequestSize+1-len(rd.buf))
	rd.buf = c.appendStored(rd.buf, b[:k])
	rest, done := c.upgrade(rd.buf)
	if !done {
		return nil
	}
	// rest lies in rd.buf: handle it before the buffer goes back.
	req := rd.buf
	rd.buf = nil
	c.onData(rest)
	if c.rd == nil {
		pbytes.Put(req) // a close frame in rest finished the connection
		return nil
	}
	c.freeStored(req)
	return b[k:]
}

// smallNeed returns how many bytes rd.small must hold before the frame in it
// can be handled: the header, once its first two bytes tell its length,
// then, for a control frame, the whole frame.
func (rd *readState) smallNeed() int {
	if rd.hn < 2 {
		return 2
	}
	n := headerLen(rd.small[1])
	if int(rd.hn) < n {
		return n
	}
	if l := int(rd.small[1] & 0x7f); rd.small[0]&0x08 != 0 && l <= maxControlPayload {
		return n + l
	}
	return n
}

// stash keeps b, a cut header or control frame, in rd.small.
func (c *Conn) stash(b []byte) {
	rd := c.reader()
	rd.hn = uint8(copy(rd.small[:], b))
}

// onSmall handles the header or control frame completed in rd.small.
func (c *Conn) onSmall() {
	rd := c.rd
	n := rd.hn
	rd.hn = 0
	// A control frame, or a header whose payload follows. A control frame
	// refused after its payload came (unmasked, say) is discarded as a
	// frame in progress: that payload is in small already.
	if rest := c.parse(rd.small[:n]); len(rest) > 0 && c.rd != nil && c.rd.inFrame {
		c.onPayload(rest)
	}
}

// parse handles the frames at the start of b, which begins at a frame
// boundary: complete control frames and whole messages are handled where
// they lie. At the first data frame that must be stored or discarded it
// starts the frame in progress and returns the bytes after its header, which
// the caller hands to onPayload; a cut header or control frame is stashed.
func (c *Conn) parse(b []byte) []byte {
	for len(b) > 0 && c.own&ownStopRead == 0 {
		h, n := parseHeader(b)
		if n == 0 {
			c.stash(b)
			return nil
		}
		refused := false
		if code, reason := c.check(&h); code != 0 {
			c.fail(code, reason)
			if h.length < 0 {
				// The frame boundaries are lost: the rest cannot be
				// parsed, and the peer's close frame cannot be found.
				c.own |= ownStopRead
				return nil
			}
			refused = true
		}
		end := int64(n) + h.length
		whole := int64(len(b)) >= end
		control := h.op&0x08 != 0
		switch {
		case refused || !control && c.state.Load() != connOpen:
			// A refused frame, or data after our close frame: read
			// through without storing it, so that the peer's close frame
			// behind it is seen at once.
			c.beginFrame(&h, true)
			return b[n:]
		case control && !whole:
			c.stash(b)
			return nil
		case control:
			p := b[n:end]
			ws.Cipher(p, h.mask, 0)
			c.onControl(&h, p)
		case whole && h.fin && !c.inMsg():
			p := b[n:end]
			ws.Cipher(p, h.mask, 0)
			if h.rsv != 0 {
				c.deliverCompressed(h.op, p)
				break
			}
			if h.op == opText && !utf8.Valid(p) {
				c.fail(CloseInvalidPayload, "invalid UTF-8")
				break
			}
			c.deliver(h.op, p)
		default:
			c.beginFrame(&h, false)
			return b[n:]
		}
		b = b[end:]
	}
	return nil
}

// inMsg reports whether a fragmented message is in progress.
func (c *Conn) inMsg() bool { return c.rd != nil && c.rd.inMsg }

// beginFrame starts a data frame whose payload is stored in rd.msg, or
// discarded with skip.
func (c *Conn) beginFrame(h *frameHeader, skip bool) {
	rd := c.reader()
	if skip {
		c.dropMsg() // a message that can no longer be delivered
	} else if !rd.inMsg {
		rd.op, rd.compressed = h.op, h.rsv != 0
	}
	rd.h, rd.inFrame, rd.skip, rd.left, rd.got = *h, true, skip, h.length, 0
	if !skip && !h.fin && h.length == 0 {
		// Empty fragments cost the hub a header's work each and bring the
		// message no closer to its end, ReadTimeout's clock aside: a few
		// are legal, a stream of them is an attack.
		if rd.empty++; rd.empty > maxEmptyFragments {
			if c.fail(ClosePolicyViolation, ReasonEmptyFragments) {
				c.hub.event(EventClosed, c, ReasonEmptyFragments)
			}
			c.dropMsg()
			rd.skip = true
		}
	}
	if rd.left == 0 {
		c.frameDone()
	}
}

// onPayload handles payload bytes of the frame in progress that were read
// into the owner's buffer.
func (c *Conn) onPayload(p []byte) {
	rd := c.rd
	if !rd.skip && c.state.Load() != connOpen {
		c.dropMsg()
		rd.skip = true
	}
	if !rd.skip {
		m := len(rd.msg)
		c.appendMsg(p)
		ws.Cipher(rd.msg[m:], rd.h.mask, int(rd.got))
	}
	c.gotPayload(len(p))
}

// gotPayload counts n payload bytes of the frame in progress as received.
func (c *Conn) gotPayload(n int) {
	rd := c.rd
	rd.progress += int64(n)
	rd.got += int64(n)
	rd.left -= int64(n)
	if rd.left == 0 {
		c.frameDone()
	}
}

// frameDone handles a data frame whose payload is complete: a text fragment
// is checked for UTF-8 as soon as it arrives, a final frame delivers the
// message.
func (c *Conn) frameDone() {
	rd := c.rd
	rd.inFrame = false
	if rd.skip {
		rd.skip = false
		return
	}
	if rd.op == opText && !rd.compressed { // compressed: checked once inflated
		n, ok := validUTF8(rd.msg[rd.valid:], rd.h.fin)
		if !ok {
			c.fail(CloseInvalidPayload, "invalid UTF-8")
			c.dropMsg()
			return
		}
		rd.valid += n
	}
	if !rd.h.fin {
		rd.inMsg = true
		return
	}
	if rd.compressed {
		c.deliverCompressed(rd.op, rd.msg)
	} else {
		c.deliver(rd.op, rd.msg)
	}
	c.dropMsg()
}

// dropMsg gives up the message in progress and its buffer.
func (c *Conn) dropMsg() {
	rd := c.rd
	if rd == nil {
		return
	}
	if rd.msg != nil {
		c.freeStored(rd.msg)
		rd.msg = nil
	}
	rd.inMsg, rd.compressed, rd.valid, rd.empty = false, false, 0, 0
}

// deliverCompressed inflates a complete compressed message and delivers it.
// The output counts against the inbound budget while OnMessage has it:
// bytes a peer's few compressed bytes made, at most MaxMessageSize for one
// message of one runner at a time.
func (c *Conn) deliverCompressed(op byte, p []byte) {
	var dict []byte
	if c.own&ownTakeover != 0 {
		dict = c.rd.window
	}
	out, err := inflate(p, dict, c.hub.opts.MaxMessageSize)
	switch {
	case err == errInflateTooBig:
		c.fail(CloseMessageTooBig, "message too big")
		return
	case err != nil:
		c.fail(CloseInvalidPayload, err.Error())
		return
	}
	b := &c.hub.inbound
	b.used.Add(int64(cap(out)))
	defer func() {
		b.give(int64(cap(out)))
		pbytes.Put(out)
	}()
	if c.own&ownTakeover != 0 {
		c.rd.window = slide(c.rd.window, out)
	}
	if op == opText && !utf8.Valid(out) {
		c.fail(CloseInvalidPayload, "invalid UTF-8")
		return
	}
	c.deliver(op, out)
}

// check validates a frame header before any of its payload is kept.
func (c *Conn) check(h *frameHeader) (CloseCode, string) {
	inMsg := c.inMsg()
	switch {
	case h.rsv == 4 && c.own&ownInflate != 0 && (h.op == opText || h.op == opBinary):
		// RSV1 marks the first frame of a compressed message.
	case h.rsv != 0:
		return CloseProtocolError, "reserved bits set"
	case !h.masked:
		return CloseProtocolError, "client frame not masked"
	case h.length < 0:
		return CloseProtocolError, "invalid frame length"
	case h.longForm:
		return CloseProtocolError, "frame length not in its shortest form"
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

// onControl handles a complete, valid, unmasked control frame.
func (c *Conn) onControl(h *frameHeader, p []byte) {
	switch h.op {
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

// deliver hands a complete, valid message to OnMessage.
func (c *Conn) deliver(op byte, p []byte) {
	if c.state.Load() != connOpen || !c.withinRate() {
		return // closing: RFC 6455 lets us drop data after our close frame
	}
	c.cork()
	c.hub.stats.received(len(p))
	if f := c.hub.opts.OnMessage; f != nil {
		f(c, MessageType(op), p)
	}
}

// validUTF8 checks p, the part of a text message not checked yet. Unless
// final, a character cut at the end of p is accepted if more bytes could
// complete it; n is then where it begins, and the next check starts there.
func validUTF8(p []byte, final bool) (n int, ok bool) {
	if utf8.Valid(p) {
		return len(p), true
	}
	for n < len(p) {
		if p[n] < utf8.RuneSelf {
			n++
			continue
		}
		r, size := utf8.DecodeRune(p[n:])
		if r == utf8.RuneError && size == 1 {
			cut := p[n:]
			return n, !final && len(cut) < utf8.UTFMax && !utf8.FullRune(cut) && canComplete(cut)
		}
		n += size
	}
	return n, true
}

// canComplete reports whether more bytes could make the cut sequence t a
// valid character. Each lead byte allows its second byte a range that
// reaches 0x80 or 0xBF, and later bytes any continuation byte, so filling up
// with either bound finds a completion if there is one.
func canComplete(t []byte) bool {
	for _, fill := range [2]byte{0x80, 0xbf} {
		b := [utf8.UTFMax]byte{fill, fill, fill, fill}
		copy(b[:], t)
		if _, size := utf8.DecodeRune(b[:]); size > len(t) {
			return true
		}
	}
	return false
}
