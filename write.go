package wshub

import (
	"io"
	"net"
	"runtime"
)

// The write path: frames written at once when the socket takes them and
// queued otherwise, the slow-consumer policies, the cork of a turn, and the
// flush of a queue when the socket turns writable.

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
	if c.mayWriteNowLocked(len(hdr) + len(p)) {
		n, err := c.writeNowLocked(hdr, p)
		if err != nil {
			c.killLocked(lostError(err), 0, "")
			return net.ErrClosed
		}
		if n == len(hdr)+len(p) {
			if c.out == nil { // else ciphertext waits behind an empty queue
				c.wroteLocked()
			}
			return nil
		}
		skip = n
	}
	// A frame partly written is queued whatever the bound: nothing may be
	// written inside it, and it is no larger than the bound (see
	// sendLocked), which an empty queue had room for.
	if policy != 0 && skip == 0 && !c.makeRoomLocked(len(hdr)+len(p), policy) {
		return ErrSlowConsumer
	}
	wasEmpty := c.out == nil
	c.outLocked().push(newFrame(hdr, p, skip))
	if wasEmpty && c.flags&flagCorkWrote == 0 {
		// The loop skips write edges while schedOut is clear, and the
		// socket may have drained, and reported it, between the write
		// above and outLocked setting schedOut. One more try now covers
		// that edge; any later one sees the bit.
		c.flushLocked()
	}
	return nil
}

// mayWriteNowLocked reports whether a frame of n bytes may be written at
// once rather than queued: nothing is queued or held, the turn's cork
// allows it, and the connection is on the loops (the portable path's writer
// writes everything). A wss:// connection encrypts under the lock only a
// small frame, which costs no more than the system call: larger ones are
// queued, and the flush encrypts them without the lock.
func (c *Conn) mayWriteNowLocked(n int) bool {
	if c.out != nil || c.flags&flagCorkWrote != 0 {
		return false
	}
	switch c.transport() {
	case viaTLS:
		return n <= maxHeaderSize+smallFrame
	case viaNetConn:
		return false
	}
	return true
}

// writeNowLocked writes hdr and p without blocking and returns how many of
// their bytes the socket took, with an error only if the connection
// failed. A wss:// connection encrypts them whole, as one record, and
// reports them all taken (see encryptNowLocked).
func (c *Conn) writeNowLocked(hdr, p []byte) (int, error) {
	if c.transport() == viaTLS {
		return len(hdr) + len(p), c.encryptNowLocked(hdr, p)
	}
	// On the stack: nothing it is passed to keeps it (see encryptNowLocked
	// for why wss:// does not share it).
	var small [maxHeaderSize + smallFrame]byte
	var n int
	var err error
	c.hub.stats.writes.Add(1)
	if len(hdr)+len(p) <= len(small) {
		// One plain write of a copy costs less than writev's two iovecs
		// for the small messages most hubs send.
		n, err = sysWrite(int(c.fd), append(append(small[:0], hdr...), p...))
	} else {
		bufs := [2][]byte{hdr, p}
		n, err = sysWritev(int(c.fd), bufs[:])
	}
	if err != nil && isWouldBlock(err) {
		err = nil
	}
	return max(n, 0), err
}

// wroteLocked runs after a direct write that the socket took whole: the
// turn's cork, if any, now queues later writes (see cork), and a close
// frame just written shuts the write side.
func (c *Conn) wroteLocked() {
	if c.flags&flagCorked != 0 {
		c.flags |= flagCorkWrote
	}
	c.afterFlushLocked()
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
	if c.transport() == viaNetConn {
		return q.first // its writer takes frames out of the queue
	}
	return q.first + max(1, q.inflight)
}

func (c *Conn) queuedLocked() int {
	if c.out == nil {
		return 0
	}
	return c.out.size - c.out.unbounded
}

// queueLocked appends f, a publish's frame, taking over the caller's
// reference. The loops flush it when the publish submits (see flushBatch);
// the portable path's writer starts now.
func (c *Conn) queueLocked(f *frame) {
	c.outLocked().push(f)
	if c.transport() == viaNetConn {
		c.flushLocked()
	}
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
	q.push(newFrame(resp, nil, 0))
}

// releaseLocked ends holdLocked's hold and writes the queue.
func (c *Conn) releaseLocked() {
	q := c.out
	if q == nil || !q.held {
		return
	}
	q.held = false
	if c.state.Load() != connClosed {
		c.flushLocked()
	}
}

// cork makes the connection's writes, after the first, queue until its
// owner's turn ends (uncork), so that the answers to the messages of one
// turn, and whatever else is written to the connection meanwhile, leave in
// two system calls however many there are: a callback that writes ten
// messages makes two writes, not ten. The first goes at once because most
// turns write one answer, which a direct write sends cheapest. The loops
// only: the portable path always queues for its writer. A turn that
// blocks is uncorked by the hand-off (see loop.handoff), so its writes
// wait about a millisecond at most.
func (c *Conn) cork() {
	if c.own&ownCorked != 0 || c.transport() == viaNetConn {
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

// flushLocked has c's queue written: by the loops' transports at once, in
// the caller, until the queue is empty or the socket is full, in which
// case the next write edge resumes it; by the portable path's writer
// goroutine, which it starts unless one runs.
func (c *Conn) flushLocked() {
	if c.out.held {
		return // releaseLocked flushes
	}
	if c.transport() == viaNetConn {
		if c.flags&flagFlushing == 0 {
			c.flags |= flagFlushing
			c.hub.p.wg.Add(1)
			go c.flushPortable()
		}
		return
	}
	c.writeQueueLocked()
}

// writeQueueLocked writes c's queue, a step at a time, until it is empty or
// a step reports the socket full. The step is the transport's: a writev of
// the oldest frames; their plaintext encrypted as a record, then the
// ciphertext written; or a blocking write by the portable path's writer.
//
// The lock is released during each step, as nats-server does: a publisher
// queueing a burst for many members would otherwise wait on every member
// the loops are writing to, walk the members in step with them, and send
// each message of the burst in a writev of its own. Meanwhile the frames
// being written stay in the queue, counted in its bound and marked in
// flight so that no policy drops them; new frames go behind them; a flush
// asked for during the write (a write edge, another publish) is left to
// the writer, which writes again before it lets go.
func (c *Conn) writeQueueLocked() {
	q := c.out
	if q.writing() {
		q.again = true
		return
	}
	for q.len() > 0 || c.cipherLeftLocked() {
		var more bool
		var err error
		switch c.transport() {
		case viaSocket:
			more, err = c.writevLocked(q)
		case viaTLS:
			more, err = c.encryptLocked(q)
		case viaNetConn:
			more, err = c.writeBatchLocked(q)
		}
		if err != nil {
			c.killLocked(lostError(err), 0, "")
			return
		}
		if !more || c.out != q {
			q.stalled = q.stalled || !more && q.len() > 0
			return // the socket is full, or finish discarded the queue
		}
	}
	c.out = nil
	c.sched.And(^uint32(schedOut))
	c.hub.p.putQueue(c, q)
	c.afterFlushLocked()
}

// writevLocked is the socket's flush step: one writev of the oldest frames,
// without the lock. It reports whether to go on: the socket took them all,
// or a flush was asked for meanwhile.
func (c *Conn) writevLocked(q *outQueue) (more bool, err error) {
	var iov [maxIovecs][]byte
	k := q.gather(iov[:])
	q.inflight, q.again = k, false
	c.hub.stats.writes.Add(1) // before: the peer may read the bytes before it returns
	c.mu.Unlock()
	n, err := sysWritev(int(c.fd), iov[:k])
	c.mu.Lock()
	full := c.wroteQueuedLocked(q, n)
	if err != nil && !isWouldBlock(err) {
		return false, err
	}
	return err == nil && full || q.again, nil
}

// wroteQueuedLocked accounts for n bytes a step wrote of the frames it had
// in flight, and drops what a SlowClose decided to drop meanwhile. It
// reports whether the frames in flight went whole.
func (c *Conn) wroteQueuedLocked(q *outQueue, n int) (whole bool) {
	q.inflight = 0
	whole = q.advance(n)
	if q.dropLater {
		q.dropLater = false
		q.dropData(c.keptLocked())
	}
	return whole
}

// writeRaw writes p, the answer to an upgrade request or a last close
// frame, around the queue, before the connection is dropped. The socket's
// buffer is empty at this point, so a non-blocking write that does not take
// the whole of p means the peer is gone or misbehaving.
func (c *Conn) writeRaw(p []byte) error {
	var n int
	var err error
	switch c.transport() {
	case viaNetConn:
		_, err = c.cio.nc.Write(p)
		return err
	case viaTLS:
		if _, err = c.cio.tc.Write(p); err != nil {
			return err
		}
		if done, err := c.cio.send(c); err != nil || done {
			return err
		}
		return io.ErrShortWrite
	}
	n, err = sysWrite(int(c.fd), p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}
