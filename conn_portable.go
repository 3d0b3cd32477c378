package wshub

import (
	"net"
	"time"
)

// The portable path serves a connection that the netpoll cannot: on
// systems without epoll or kqueue, and for connections without a raw
// socket, such as a *tls.Conn the hub has no transport under (see
// Hub.Listener). It costs a goroutine and a read buffer per connection,
// and a writer goroutine while frames are queued, but behaves like the
// netpoll path in every other way: same parser, same queue, same
// deadlines (the sweep closes the net.Conn), same callbacks.

// portableReadBufferSize is the read buffer of a portable connection's goroutine.
const portableReadBufferSize = 4 << 10

// portableMaxBatch bounds the frames a portable connection's writer takes at once.
const portableMaxBatch = 64

// portableStallTime is how long a portable connection's write must block
// for its member to count as one that cannot keep up (see
// outQueue.stalled): its writes block, so no short write tells. A socket
// with room takes a batch in microseconds.
const portableStallTime = 50 * time.Millisecond

// servePortable is the goroutine that reads a portable connection: the
// connection's owner for its whole life, in one turn (see Conn.process).
// While the inbound budget is spent it blocks until its turn comes (see
// inBudget); a close wakes it too.
func (c *Conn) servePortable() {
	defer c.hub.p.wg.Done()
	c.process(make([]byte, portableReadBufferSize))
}

// flushPortable is the goroutine that writes a portable connection's
// queue (see writeQueueLocked). It runs while frames are queued and exits
// when the queue is empty or the connection failed.
func (c *Conn) flushPortable() {
	defer c.hub.p.wg.Done()
	c.mu.Lock()
	if c.out != nil && c.state.Load() != connClosed {
		c.writeQueueLocked()
	}
	c.flags &^= flagFlushing
	c.mu.Unlock()
}

// writeBatchLocked is the portable path's flush step: it takes the oldest
// frames and writes them, without the lock, with one writev where the
// connection supports it. It reports whether the write went whole.
func (c *Conn) writeBatchLocked(q *outQueue) (more bool, err error) {
	// Take the oldest frames, but leave their bytes counted in q.size
	// until they are written, so MaxQueuedBytes still sees them. At most
	// half the bound is taken: the rest stays in the queue, where
	// SlowDropOldest can drop it to make room for newer frames.
	var arr [portableMaxBatch]*frame
	batch, taken := q.take(arr[:0], portableMaxBatch, c.hub.opts.MaxQueuedBytes/2)
	q.writeStart = c.hub.p.now() | 1 // never 0: see writeStart
	c.mu.Unlock()
	bufs := make(net.Buffers, len(batch))
	for i, f := range batch {
		bufs[i] = f.b
	}
	c.hub.stats.writes.Add(1)
	_, err = bufs.WriteTo(c.cio.nc)
	for _, f := range batch {
		f.release()
	}
	c.mu.Lock()
	if c.out == q { // else finish discarded it, taken bytes included
		q.grow(-taken)
		// Frames waited behind a write that blocked: the socket did not
		// take the backlog.
		q.stalled = q.stalled || c.writeBlockedLocked(q) && q.len() > 0
		q.writeStart = 0
	}
	return err == nil, err
}

// writeBlockedLocked reports whether q's portable write has been blocked
// for portableStallTime.
func (c *Conn) writeBlockedLocked(q *outQueue) bool {
	return q.writeStart != 0 && since(c.hub.p.now(), q.writeStart) >= uint32(portableStallTime/time.Millisecond)
}
