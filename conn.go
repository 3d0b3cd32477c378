package wshub

import (
	"bytes"
	"io"
	"net"
	"runtime"
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
)

// Bounds on what a peer's message may cost beyond its bytes.
const (
	// maxEmptyFragments is how many empty non-final frames one message
	// may hold; the next closes the connection (ReasonEmptyFragments).
	maxEmptyFragments = 16

	// progressBytes is the payload an incomplete message must gain to
	// restart its ReadTimeout clock.
	progressBytes = 16 << 10

	// minStored is the smallest buffer stored input takes: a few bytes
	// announcing a large frame cost no more than this.
	minStored = 512
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

	// io is what the connection needs besides a plain socket on the loops:
	// the net.Conn of the portable path (fd < 0), or the TLS state of a
	// wss:// connection on the loops (see connIO). Nil for a plain socket.
	io *connIO
}

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
	if c.fd < 0 {
		return c.io.nc.RemoteAddr()
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
	if bounded && hn+len(p) > c.hub.opts.MaxQueuedBytes {
		return ErrMessageTooBig
	}
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
	direct := c.out == nil && c.fd >= 0 && c.flags&flagCorkWrote == 0
	if direct && c.io != nil && len(hdr)+len(p) <= tlsBatch { // wss://; larger frames are queued, encrypted a record at a time
		if !c.writeTLSLocked(hdr, p) {
			return net.ErrClosed
		}
		return nil
	}
	if direct && c.io == nil {
		var n int
		var err error
		var b [maxHeaderSize + smallFrame]byte
		c.hub.stats.writes.Add(1)
		if len(hdr)+len(p) <= len(b) {
			// One plain write of a copy costs less than writev's two
			// iovecs for the small messages most hubs send.
			n, err = sysWrite(int(c.fd), append(append(b[:0], hdr...), p...))
		} else {
			bufs := [2][]byte{hdr, p}
			n, err = sysWritev(int(c.fd), bufs[:])
		}
		if n == len(hdr)+len(p) {
			if c.flags&flagCorked != 0 {
				c.flags |= flagCorkWrote
			}
			c.afterFlushLocked()
			return nil
		}
		if err != nil && !isWouldBlock(err) {
			c.killLocked(lostError(err), 0, "")
			return net.ErrClosed
		}
		skip = max(n, 0)
	}
	// A frame partly written is queued whatever the bound: nothing may be
	// written inside it, and it is no larger than the bound (see
	// sendLocked), which an empty queue had room for.
	if policy != 0 && skip == 0 && !c.makeRoomLocked(len(hdr)+len(p), policy) {
		return ErrSlowConsumer
	}
	wasEmpty := c.out == nil
	c.queueLocked(newFrame(hdr, p, skip))
	if wasEmpty && c.fd >= 0 && c.flags&flagCorkWrote == 0 {
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
		if c.out != nil && c.out.writing() {
			// The oldest frames are in a writev, out of reach: wait the
			// microseconds it takes, so that the oldest go, not the newest.
			c.waitWriteLocked()
			if c.state.Load() != connOpen {
				return false
			}
			if over = c.queuedLocked() + n - limit; over <= 0 {
				return true
			}
		}
		// The oldest frame of a netpoll queue may be partly written: it
		// must go out whole, so dropping starts after it. A message larger
		// than the bound (the only way to be over it with an empty queue)
		// cannot fit however much is dropped.
		if n <= limit && c.out != nil {
			if k := c.out.dropOldest(over, c.keptLocked()); k >= 0 {
				for range k {
					c.hub.event(EventDropped, c, ReasonSlowConsumer)
				}
				return true
			}

		}
		fallthrough // it cannot fit: drop it instead
	case SlowDropNewest:
		c.hub.event(EventDropped, c, ReasonSlowConsumer)
		return false
	}
	// SlowClose. The peer learns why: what is queued for it is dropped,
	// which frees the memory at once, and the close frame takes its place
	// as soon as the socket has room. CloseTimeout bounds the wait.
	if c.out != nil {
		c.out.dropData(c.keptLocked())
		c.out.dropLater = c.out.writing() // and what the write in flight leaves
	}
	c.sendCloseLocked(ClosePolicyViolation, ReasonSlowConsumer)
	c.hub.event(EventClosed, c, ReasonSlowConsumer)
	return false
}

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

// waitWriteLocked waits, without the lock, until no flush of c is in a
// system call; a non-blocking writev returns in microseconds.
func (c *Conn) waitWriteLocked() {
	for c.out != nil && c.out.writing() {
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
}

// keptLocked returns the index in c's queue of the first frame a policy may
// drop: on the netpoll path the oldest frame may be partly written and must
// go out whole, and frames a flush is writing are not to be touched.
func (c *Conn) keptLocked() int {
	q := c.out
	if c.fd < 0 {
		return q.first
	}
	return q.first + max(1, q.inflight)
}

func (c *Conn) queuedLocked() int {
	if c.out == nil {
		return 0
	}
	return c.out.size - c.out.unbounded
}

// queueLocked appends f, taking over the caller's reference.
func (c *Conn) queueLocked(f *frame) {
	c.outLocked().push(f)
	c.startWriterLocked()
}

// outLocked returns c's queue, made on demand.
func (c *Conn) outLocked() *outQueue {
	if c.out == nil {
		c.out = c.hub.p.getQueue(c)
		c.out.total = &c.hub.stats.queued
		c.sched.Or(schedOut)
	}
	return c.out
}

// startWriterLocked starts a portable connection's writer goroutine unless
// it runs or the queue is held.
func (c *Conn) startWriterLocked() {
	if c.fd < 0 && c.flags&flagFlushing == 0 && !c.out.held {
		c.flags |= flagFlushing
		c.hub.p.wg.Add(1)
		go c.flushPortable()
	}
}

// holdLocked queues resp, the 101 answer, as the connection's first frame,
// and holds the queue until OnOpen has returned (see Conn.opened). A client
// thus learns that it is connected only once OnOpen's subscriptions are in
// place, so it cannot miss what is published to them afterwards, and what
// OnOpen writes reaches it right behind the 101. The connection must not
// have been written to yet.
// The 101 does not count against MaxQueuedBytes (see outQueue.unbounded):
// what OnOpen writes, which waits behind it, has the whole bound.
func (c *Conn) holdLocked(resp []byte) {
	q := c.outLocked()
	q.held, q.unbounded = true, len(resp)
	c.queueLocked(newFrame(resp, nil, 0))
}

// releaseLocked ends holdLocked's hold and writes the queue.
func (c *Conn) releaseLocked() {
	q := c.out
	if q == nil || !q.held {
		return
	}
	q.held = false
	if c.state.Load() == connClosed {
		return
	}
	if c.fd >= 0 {
		c.flushLocked()
	} else {
		c.startWriterLocked()
	}
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
	if c.fd >= 0 {
		if c.io != nil {
			c.closeNotifyLocked()
		}
		sysShutdown(int(c.fd), both)
		return
	}
	if cw, ok := c.io.nc.(interface{ CloseWrite() error }); ok && !both {
		cw.CloseWrite()
		return
	}
	c.io.nc.Close()
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
	if code != 0 && open && c.fd >= 0 && (c.out == nil || c.out.held) {
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

// cork makes the connection's writes, after the first, queue until its
// owner's turn ends (uncork), so that the answers to the messages of one
// turn, and whatever else is written to the connection meanwhile, leave in
// two system calls however many there are: a callback that writes ten
// messages makes two writes, not ten. The first goes at once because most
// turns write one answer, which a direct write sends cheapest: queueing it
// cost echo about a microsecond of user CPU per round trip. The netpoll
// path only: the portable one always queues for its writer. A turn that
// blocks is uncorked by the hand-off (see loop.handoff), so its writes
// wait about a millisecond at most.
func (c *Conn) cork() {
	if c.own&ownCorked != 0 || c.fd < 0 {
		return
	}
	c.own |= ownCorked
	c.mu.Lock()
	c.flags |= flagCorked
	c.mu.Unlock()
}

// uncork ends the turn's cork and writes what it held; the owner calls it
// when the turn ends.
func (c *Conn) uncork() {
	if c.own&ownCorked == 0 {
		return
	}
	c.own &^= ownCorked
	c.mu.Lock()
	c.unsetCorkLocked()
	c.mu.Unlock()
}

// unsetCorkLocked clears the cork and flushes what it held.
func (c *Conn) unsetCorkLocked() {
	if c.flags&flagCorked == 0 {
		return
	}
	c.flags &^= flagCorked | flagCorkWrote
	if c.out != nil && c.state.Load() != connClosed {
		c.flushLocked()
	}
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
//
// The lock is released during each writev, as nats-server does: a publisher
// queueing a burst for many members would otherwise wait on every member
// the loops are writing to, walk the members in step with them, and send
// each message of the burst in a writev of its own. Meanwhile the frames
// being written stay in the queue, counted in its bound and marked in
// flight so that no policy drops them; new frames go behind them; a flush
// asked for during the write (a write edge, another publish) is left to
// the writer, which writes again before it lets go.
func (c *Conn) flushLocked() {
	if c.out.held {
		return // releaseLocked flushes
	}
	if c.io != nil {
		c.flushTLSLocked()
		return
	}
	q := c.out
	if q.writing() {
		q.again = true
		return
	}
	for q.len() > 0 {
		var iov [maxIovecs][]byte
		k := q.gather(iov[:])
		q.inflight, q.again = k, false
		c.hub.stats.writes.Add(1) // before: the peer may read the bytes before it returns
		c.mu.Unlock()
		n, err := sysWritev(int(c.fd), iov[:k])
		c.mu.Lock()
		q.inflight = 0
		full := q.advance(n)
		if q.dropLater {
			q.dropLater = false
			q.dropData(c.keptLocked())
		}

		if err != nil && !isWouldBlock(err) {
			c.killLocked(lostError(err), 0, "")
			return
		}
		if (err != nil || !full) && !q.again {
			return // the socket is full: its next write edge resumes
		}
	}
	c.out = nil
	c.sched.And(^uint32(schedOut))
	c.hub.p.putQueue(c, q)
	c.afterFlushLocked()
}

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

// readKind says where nextRead wants the next bytes read to.
type readKind uint8

const (
	readPaused  readKind = iota // nowhere: the connection waits for the budget
	readBuffer                  // the owner's buffer, then onData
	readPeek                    // the owner's buffer, after a look (see peekRead)
	readRequest                 // rd.buf: the upgrade request in progress
	readSmall                   // rd.small: a header or control frame in progress
	readPayload                 // rd.msg: the payload of the data frame in progress
)

// process reads the socket until it is drained and handles what arrived. A
// runner of its loop calls it; it reports true if the socket may still hold
// input after maxReadsPerTurn reads, so that the runner queues it again.
func (c *Conn) process(buf []byte) (more bool) {
	if c.own&ownDone != 0 {
		return false
	}
	c.openedOnce()
	if c.io != nil {
		return c.processTLS(buf)
	}
	for range maxReadsPerTurn {
		if c.own&ownDone != 0 {
			return false
		}
		dst, kind := c.nextRead(buf, true)
		var n int
		var err error
		switch kind {
		case readPaused:
			return false // a grant or a close schedules it again
		case readPeek:
			dst, n, err = c.peekRead(buf)
			kind = readBuffer
		default:
			n, err = sysRead(int(c.fd), dst)
		}
		if n > 0 {
			c.touched(c.hub.p.now())
			c.consume(kind, dst[:n])
			if n < len(dst) && c.sched.Load()&schedHup == 0 {
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
		if len(dst) == 0 || err != nil && isWouldBlock(err) {
			// Paused before reading anything, or drained: what was
			// reserved for bytes that did not come goes back now, not
			// when they do, or a peer that stops sending would sit on it.
			c.settle()
			return false
		}
		c.finish(lostError(err))
		return false
	}
	return true
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
	if free := c.freePrefix(buf[:n]); free < n && !c.reserve(c.storeCost(n-free)) {
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
		c.advance(len(p))
	}
	c.settle()
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
	case rd.inMsg && !c.reserve(c.storeCost(len(buf))):
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
		if !c.reserve(int64(pooledCap(want) - cap(rd.msg))) {
			return nil, readPaused
		}
		rd.msg = c.resize(rd.msg, want)
	}
	return rd.msg[m : m+int(min(int64(cap(rd.msg)-m), rd.left))], readPayload
}

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

// requestSpace returns where the next bytes of an upgrade request go, like
// payloadSpace: at most one byte past maxRequestSize, which refuses it.
func (c *Conn) requestSpace() ([]byte, readKind) {
	rd := c.rd
	m := len(rd.buf)
	if m == cap(rd.buf) {
		want := min(2*m, maxRequestSize+1)
		if !c.reserve(int64(pooledCap(want) - cap(rd.buf))) {
			return nil, readPaused
		}
		rd.buf = c.resize(rd.buf, want)
	}
	return rd.buf[m:min(cap(rd.buf), maxRequestSize+1)], readRequest
}

// reserve makes sure rd.prepaid holds n bytes of the budget. If the budget
// does not have them it queues the connection and reports false: the owner
// stops reading until they are granted. A closing connection stores nothing
// more and never waits.
func (c *Conn) reserve(n int64) bool {
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

// release returns p, a stored buffer, to its pool and its bytes to the
// budget.
func (c *Conn) release(p []byte) {
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

// settle runs after input was handled: it starts or clears the read
// deadline, gives back what was reserved and not stored, and drops the
// readState once nothing is incomplete.
func (c *Conn) settle() {
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
	if c.fd >= 0 {
		sysClose(int(c.fd))
		if c.io != nil {
			c.io.release()
		}
	} else {
		c.io.nc.Close()
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
	c.settle()
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
	c.release(req)
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
	c.advance(len(p))
}

// advance counts n payload bytes of the frame in progress as received.
func (c *Conn) advance(n int) {
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
		c.release(rd.msg)
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

// timeRead starts the read deadline when a message is incomplete and clears
// it when none is. The lock is taken only on a change, and the deadline is
// left alone in any other phase, whose deadline it must not erase.
func (c *Conn) timeRead() {
	rd := c.rd
	incomplete := rd != nil && (rd.hn > 0 || rd.inFrame || rd.inMsg || c.io != nil && c.io.charged > 0)
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
