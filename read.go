package wshub

import (
	"bytes"
	"net"

	"github.com/gobwas/ws"
)

// The read path. Only a connection's owner runs it: its loop's runner on the netpoll
// path, the reader goroutine on the portable one.
//
// Complete frames are parsed straight from the buffer they were read into,
// which belongs to the owner, so a connection that receives whole messages
// stores nothing. What stays incomplete is kept in a readState: a header or
// a control frame in its small array, the payload of a data frame and the
// fragments before it in msg, an upgrade request in buf. While something is
// incomplete the owner reads straight into where it goes (see nextRead), so
// that memory follows the bytes that arrived, never the lengths announced,
// and every byte stored is first reserved from the hub's inbound budget
// (see inBudget).

// progressBytes is the payload an incomplete message must gain to restart
// its ReadTimeout clock.
const progressBytes = 16 << 10

// readState is what a connection keeps between reads while something is
// incomplete, or while it waits for the inbound budget. It is allocated on
// demand and dropped when empty. Only the connection's owner touches it.
type readState struct {
	// buf holds an own-listener upgrade request while it arrives (stored),
	// or, on the ServeHTTP door, the bytes a client sent right after its
	// request (until OnOpen has run). Pooled.
	buf    []byte
	remote net.Addr // upgrade only: the peer's address, for OnUpgrade

	// The data frame in progress once its header is read: its payload goes
	// to msg, or nowhere with skip (the flags are below).
	h    frameHeader
	left int64 // payload bytes still to come
	got  int64 // payload bytes so far: the masking offset

	msg   []byte // pooled: the message so far, fragments and the frame in progress
	valid int    // bytes of a text message in msg checked as UTF-8

	// progress counts payload bytes received since the read deadline last
	// started: an incomplete message that keeps arriving restarts it every
	// progressBytes (see Options.ReadTimeout).
	progress int64

	// window is the client's compression window after its last compressed
	// message, for a client that keeps its context (see deflate.go); it
	// lives as long as the connection. Charged to the budget apart.
	window []byte

	charged int64   // budget held for buf and msg: their capacities
	prepaid int64   // budget reserved and not stored yet
	wait    *waiter // set while the connection waits for the budget

	// The byte-sized fields sit together, beside small, in what would
	// otherwise be padding.
	inFrame    bool  // h is the data frame in progress
	skip       bool  // its payload is discarded
	op         byte  // opcode of the message in msg
	inMsg      bool  // a fragment arrived and the message is not complete
	compressed bool  // the message in msg is compressed (permessage-deflate)
	empty      uint8 // empty non-final frames in the message (see maxEmptyFragments)
	lane       bool  // it holds the budget's lane (see inBudget.grantLocked)

	// small holds a header while it is cut, or a control frame (at most
	// 139 bytes) until it is whole.
	hn    uint8
	small [maxHeaderSize + maxControlPayload]byte
}

// readKind says where nextRead wants the next bytes read to.
type readKind uint8

const (
	readPaused  readKind = iota // nowhere: the connection waits for the budget
	readBuffer                  // the owner's buffer, then onData
	readPeek                    // the owner's buffer, after a look (see peekRead)
	readRequest                 // rd.buf: the upgrade request in progress
	readSmall                   // rd.small: a header or control frame in progress
	readPayload                 // rd.msg: the payload of the data frame in progress
	readCipher                  // a wss:// connection: the owner's buffer, for tc (see cipherSpace)
)

// process is the owner's turn: it reads the connection until the transport
// has nothing more for now and handles what arrived. A runner of its loop
// calls it, and it reports true if the socket may still hold input after
// maxReadsPerTurn reads, so that the runner queues it again; the portable
// path's reader calls it once, and its turn lasts as long as the
// connection, blocking in each read.
//
// The transport decides where a read goes and what handles it. A plain
// socket is read where nextRead says, and peeked at while the budget is
// pressed. A wss:// socket is read into the second half of buf, and tc
// decrypts that into where nextRead says, the first half in the usual case
// (see drainTLS). The portable path reads its net.Conn where nextRead says.
func (c *Conn) process(buf []byte) (more bool) {
	if c.own&ownDone != 0 {
		return false
	}
	t := c.transport()
	plain, cipher := buf, buf[:0]
	if t == viaTLS {
		plain, cipher = buf[:len(buf)/2], buf[len(buf)/2:]
	}
	c.openedOnce()
	if t == viaTLS && !c.drainTLS(plain) { // what the handshake, a hijack or a pause left
		return false
	}
	for i := 0; t == viaNetConn || i < maxReadsPerTurn; i++ {
		if c.own&ownDone != 0 {
			return false
		}
		var dst []byte
		var kind readKind
		if t == viaTLS {
			dst, kind = c.cipherSpace(cipher)
		} else {
			dst, kind = c.nextRead(plain, t == viaSocket)
		}
		var n int
		var err error
		switch {
		case kind == readPaused && t == viaNetConn:
			<-c.rd.wait.wake // a grant or a close
			continue
		case kind == readPaused:
			return false // a grant or a close schedules it again
		case kind == readPeek:
			dst, n, err = c.peekRead(plain)
			kind = readBuffer
		case t == viaNetConn:
			n, err = c.cio.nc.Read(dst)
		default:
			n, err = sysRead(int(c.fd), dst)
		}
		if n > 0 {
			c.touched(c.hub.p.now())
			if kind == readCipher {
				c.cio.in, c.cio.inOff = dst[:n], 0
				if !c.drainTLS(plain) {
					return false
				}
			} else {
				c.consume(kind, dst[:n])
			}
			if err != nil && t == viaNetConn {
				c.lost(err) // the data came with the end
				return false
			}
			if t != viaNetConn && n < len(dst) && c.sched.Load()&schedHup == 0 {
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
		if t == viaNetConn && err == nil {
			continue
		}
		if t != viaNetConn && (len(dst) == 0 || err != nil && isWouldBlock(err)) {
			// Paused before reading anything, or drained: what was
			// reserved for bytes that did not come goes back now, not
			// when they do, or a peer that stops sending would sit on it.
			c.settleRead()
			return false
		}
		c.lost(err)
		return false
	}
	return true
}

// lost finishes a connection whose transport ended or failed with err,
// unless it finished already.
func (c *Conn) lost(err error) {
	if c.own&ownDone == 0 {
		c.finish(lostError(err))
	}
}

// peekRead reads the socket while the inbound budget is under pressure. It
// looks at what the socket holds without taking it, and takes only what
// needs no storing (whole messages, control frames) unless the budget has
// room for the rest: a peer holding an unfinished message then leaves it in
// the kernel's buffer, where TCP back-pressure stops it, while whole messages
// behind nobody's budget keep flowing. It returns the buffer read into.
func (c *Conn) peekRead(buf []byte) ([]byte, int, error) {
	n, err := sysPeek(int(c.fd), buf)
	if n <= 0 {
		n, err = sysRead(int(c.fd), buf) // end of stream, an error, or nothing
		return buf, n, err
	}
	if free := c.freePrefix(buf[:n]); free < n && !c.prepay(c.storeCost(n-free)) {
		if free == 0 {
			return buf[:0], 0, nil
		}
		buf = buf[:free] // the rest waits in the socket
		n = free
	}
	m, err := sysRead(int(c.fd), buf[:n])
	return buf, m, err
}

// freePrefix returns how many bytes at the start of b, which the owner is
// about to read, it can handle without storing any: whole messages, control
// frames, frames it discards, and a cut header or control frame (rd.small
// holds those). It stops at the first data frame whose payload would be
// stored.
func (c *Conn) freePrefix(b []byte) int {
	off := 0
	if c.state.Load() == connHandshake {
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			return 0
		}
		off = i + 4
	}
	inMsg, closing := c.inMsg(), c.state.Load() > connOpen
	for off < len(b) {
		h, n := parseHeader(b[off:])
		if n == 0 {
			return len(b)
		}
		if code, _ := c.check(&h); code != 0 {
			return len(b) // it fails the connection: nothing more is stored
		}
		end := int64(off+n) + h.length
		switch {
		case h.op&0x08 != 0: // control
			if end > int64(len(b)) {
				return len(b)
			}
		case closing:
		case end > int64(len(b)), !h.fin, inMsg:
			return off
		}
		off = int(min(end, int64(len(b))))
	}
	return len(b)
}

// consume handles n bytes just read where nextRead said.
func (c *Conn) consume(kind readKind, p []byte) {
	rd := c.rd
	switch kind {
	case readBuffer:
		c.onData(p)
		return
	case readRequest:
		rd.buf = rd.buf[:len(rd.buf)+len(p)]
		c.onRequest(nil)
	case readSmall:
		rd.hn += uint8(len(p))
		if int(rd.hn) == rd.smallNeed() {
			c.onSmall()
		}
	case readPayload:
		m := len(rd.msg)
		rd.msg = rd.msg[:m+len(p)]
		ws.Cipher(rd.msg[m:], rd.h.mask, int(rd.got))
		c.gotPayload(len(p))
	}
	c.settleRead()
}

// nextRead says where the owner reads next: into buf, its own buffer, when
// nothing is incomplete, else straight into the readState, growing it with
// bytes reserved from the budget. It returns readPaused when the connection
// must wait for the budget. peek tells whether the socket can be peeked.
func (c *Conn) nextRead(buf []byte, peek bool) ([]byte, readKind) {
	rd := c.rd
	pressed := c.hub.inbound.pressed()
	if rd == nil || c.own&ownStopRead != 0 {
		if pressed && peek && c.own&ownStopRead == 0 {
			return buf, readPeek
		}
		return buf, readBuffer
	}
	if rd.wait != nil && !c.resumed() {
		return nil, readPaused
	}
	if rd.inFrame && !rd.skip && c.state.Load() != connOpen {
		// Closing: the peer's close frame may follow this frame, which is
		// read through and discarded now.
		c.dropMsg()
		rd.skip = true
	}
	switch {
	case c.own&ownStopRead != 0:
		return buf, readBuffer
	case rd.hn > 0:
		return rd.small[rd.hn:rd.smallNeed()], readSmall
	case c.state.Load() > connOpen, rd.inFrame && rd.skip:
		return buf, readBuffer // closing: data is discarded, nothing stored
	case rd.inFrame:
		return c.payloadSpace()
	case len(rd.buf) > 0 && c.state.Load() == connHandshake:
		return c.requestSpace()
	case !pressed:
		return buf, readBuffer
	case peek:
		return buf, readPeek
	case rd.inMsg && !c.prepay(c.storeCost(len(buf))):
		// The portable path cannot peek: in a fragmented message, whatever
		// it reads may have to be stored.
		return nil, readPaused
	}
	return buf, readBuffer
}

// payloadSpace returns where the next bytes of the data frame in progress go:
// the free part of msg, grown (see msgCap) once the budget has reserved the
// growth.
func (c *Conn) payloadSpace() ([]byte, readKind) {
	rd := c.rd
	m := len(rd.msg)
	if m == cap(rd.msg) {
		want := c.msgCap(m + 1)
		if !c.prepay(int64(pooledCap(want) - cap(rd.msg))) {
			return nil, readPaused
		}
		rd.msg = c.resize(rd.msg, want)
	}
	return rd.msg[m : m+int(min(int64(cap(rd.msg)-m), rd.left))], readPayload
}

// requestSpace returns where the next bytes of an upgrade request go, like
// payloadSpace: at most one byte past maxRequestSize, which refuses it.
func (c *Conn) requestSpace() ([]byte, readKind) {
	rd := c.rd
	m := len(rd.buf)
	if m == cap(rd.buf) {
		want := min(2*m, maxRequestSize+1)
		if !c.prepay(int64(pooledCap(want) - cap(rd.buf))) {
			return nil, readPaused
		}
		rd.buf = c.resize(rd.buf, want)
	}
	return rd.buf[m:min(cap(rd.buf), maxRequestSize+1)], readRequest
}

// timeRead starts the read deadline when a message is incomplete and clears
// it when none is. The lock is taken only on a change, and the deadline is
// left alone in any other phase, whose deadline it must not erase.
func (c *Conn) timeRead() {
	rd := c.rd
	incomplete := rd != nil && (rd.hn > 0 || rd.inFrame || rd.inMsg || c.cio != nil && c.cio.charged > 0)
	if c.own&ownDone != 0 {
		return
	}
	if incomplete == (c.own&ownTimed != 0) {
		// Progress restarts the clock, unless the connection waits for
		// the budget: its clock is stopped then (see unpause).
		if !incomplete || rd.progress < progressBytes || rd.wait != nil {
			return
		}
		c.own ^= ownTimed // progress: the deadline starts again below
	}
	c.own ^= ownTimed
	if incomplete {
		rd.progress = 0
	}
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
