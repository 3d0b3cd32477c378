package wshub

import (
	"net"
)

// The portable path serves a connection that the netpoll cannot: on systems
// without epoll or kqueue, and for connections without a raw socket, such as
// a *tls.Conn the hub has no transport under (see Hub.Listener). It costs a goroutine and a read buffer per connection, and a
// writer goroutine while frames are queued, but behaves like the netpoll
// path in every other way: same parser, same queue, same deadlines (the
// sweep closes the net.Conn), same callbacks.

// portableReadBufferSize is the read buffer of a portable connection's goroutine.
const portableReadBufferSize = 4 << 10

// portableMaxBatch bounds the frames a portable connection's writer takes at once.
const portableMaxBatch = 64

// servePortable is the goroutine that reads a portable connection. It is the
// connection's owner for its whole life. While the inbound budget is spent
// it blocks until its turn comes (see inBudget); a close wakes it too.
func (c *Conn) servePortable() {
	defer c.hub.p.wg.Done()
	buf := make([]byte, portableReadBufferSize)
	for c.own&ownDone == 0 {
		c.openedOnce()
		if c.own&ownDone != 0 {
			return
		}
		dst, kind := c.nextRead(buf, false)
		if kind == readPaused {
			<-c.rd.wait.wake
			continue
		}
		n, err := c.io.nc.Read(dst)
		if n > 0 {
			c.touched(c.hub.p.now())
			c.consume(kind, dst[:n])
		}
		if err != nil && c.own&ownDone == 0 {
			c.finish(lostError(err))
		}
	}
}

// flushPortable is the goroutine that writes a portable connection's queue. It
// runs while frames are queued: it takes a batch, writes it with one writev
// where the connection supports it, and exits when the queue is empty.
func (c *Conn) flushPortable() {
	defer c.hub.p.wg.Done()
	var batch []*frame
	var bufs net.Buffers
	for {
		c.mu.Lock()
		q := c.out
		if q == nil || q.len() == 0 || c.state.Load() == connClosed {
			c.flags &^= flagFlushing
			if q != nil && q.len() == 0 {
				c.out = nil
				c.sched.And(^uint32(schedOut))
				c.hub.p.putQueue(c, q)
				c.afterFlushLocked()
			}
			c.mu.Unlock()
			return
		}
		// Take the oldest frames, but leave their bytes counted in q.size
		// until they are written, so MaxQueuedBytes still sees them. At
		// most half the bound is taken: the rest stays in the queue, where
		// SlowDropOldest can drop it to make room for newer frames.
		var taken int
		batch, taken = q.take(batch[:0], portableMaxBatch, c.hub.opts.MaxQueuedBytes/2)
		c.mu.Unlock()

		bufs = bufs[:0]
		for _, f := range batch {
			bufs = append(bufs, f.b)
		}
		c.hub.stats.writes.Add(1)
		_, err := bufs.WriteTo(c.io.nc)
		for i, f := range batch {
			f.release()
			batch[i] = nil
		}
		c.mu.Lock()
		if c.out != nil { // else finish discarded it, taken bytes included
			c.out.grow(-taken)
		}
		if err != nil {
			c.flags &^= flagFlushing
			c.killLocked(lostError(err), 0, "")
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}
