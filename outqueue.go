package wshub

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/gobwas/pool/pbytes"
)

// outQueue holds the frames a connection could not write yet. It comes
// from a pool and goes back when it drains.
type outQueue struct {
	frames []*frame
	first  int           // index of the oldest unsent frame
	head   int           // bytes of frames[first] already written
	size   int           // bytes not yet written
	total  *atomic.Int64 // the hub's queued bytes, which size is part of

	// A netpoll connection's flush writes without the connection's lock
	// (see Conn.flushLocked). Meanwhile inflight is the number of frames,
	// from first on, that its writev reads: nothing may drop them. again
	// tells it that another flush was asked for during the write, and
	// dropLater that the slow-consumer policy dropped the data behind them
	// and wants what of them the write leaves dropped too.
	inflight  int
	again     bool
	dropLater bool

	// held keeps the queue from being written: it holds the 101 answer
	// until OnOpen has returned (see Conn.holdLocked). unbounded is what
	// is left of the answer, which does not count against MaxQueuedBytes:
	// the first bytes to leave the queue are the answer's.
	held      bool
	unbounded int

	// stalled: the connection did not take all of the queue when it was
	// written, so it waits to be writable: its member cannot keep up, and
	// SlowConflate replaces its frames (see Conn.behindLocked). A queue
	// that only waits for its loop's next flush is not stalled.
	stalled bool
	// writeStart is the poller's tick when a portable connection's
	// blocking write began, 0 when none runs: one that has blocked for
	// portableStallTime is a socket that does not take the backlog.
	writeStart uint32
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
	if n < 0 && q.unbounded > 0 {
		q.unbounded = max(q.unbounded+n, 0)
	}
}

// take moves the oldest frames, up to maxFrames of them and limit bytes (at least
// one frame), to dst for a writer that writes them outside the connection's
// lock. Their bytes stay counted in size until the writer calls grow with
// their negative sum, so that the bound still sees them.
func (q *outQueue) take(dst []*frame, maxFrames, limit int) (_ []*frame, bytes int) {
	k := 0
	for k < q.len() && k < maxFrames {
		n := len(q.frames[q.first+k].b)
		if k > 0 && bytes+n > limit {
			break
		}
		bytes += n
		k++
	}
	dst = append(dst, q.frames[q.first:q.first+k]...)
	clear(q.frames[q.first : q.first+k])
	if q.first += k; q.first == len(q.frames) {
		q.frames, q.first = q.frames[:0], 0
	}
	return dst, bytes
}

// writing reports whether a flush is in a system call.
func (q *outQueue) writing() bool { return q.inflight > 0 }

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

// dropData drops every data frame from index from on, keeping control
// frames, and returns how many it dropped.
func (q *outQueue) dropData(from int) int { return q.dropFrom(from, math.MaxInt) }

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
	return q.dropFrom(from, need)
}

// dropFrom drops data frames from index from on, oldest first, until need
// bytes are freed, and returns how many it dropped.
func (q *outQueue) dropFrom(from, need int) int {
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

// plaintext returns the unsent bytes of the oldest frames, up to limit, for
// a TLS flush to encrypt as one write: the oldest frame's own bytes when it
// is alone or fills the batch, else a pooled copy. k is the number of frames
// it reads, which are in flight meanwhile, and n its length.
func (q *outQueue) plaintext(limit int) (b []byte, k, n int, pooled bool) {
	first := q.frames[q.first].b[q.head:]
	if len(first) >= limit || q.len() == 1 {
		n = min(len(first), limit)
		return first[:n], 1, n, false
	}
	b = pbytes.GetCap(min(q.size, limit))
	for i := q.first; i < len(q.frames) && len(b) < limit; i++ {
		f := q.frames[i].b
		if i == q.first {
			f = f[q.head:]
		}
		b = append(b, f[:min(len(f), limit-len(b))]...)
		k++
	}
	return b, k, len(b), true
}

// conflateScan bounds how far back from the newest frame a conflating
// publish looks for its channel's frame: a member's queue may hold many
// frames, and a publish must not cost it more than a constant.
const conflateScan = 128

// replace drops the newest frame of f's channel among the last
// conflateScan, from index from on (the frames before are on their way),
// and queues f at the end, so that what the member gets is still in the
// order it was published; it reports whether it found one. room is how
// many bytes the queue may grow by: a frame that f outgrows by more stays,
// and replace reports false. It takes over the caller's reference to f
// and drops the queue's to the frame it replaces. The frames after it
// move up one place: conflateScan at most.
func (q *outQueue) replace(f *frame, from, room int) bool {
	last := len(q.frames) - 1
	for i := last; i >= max(from, len(q.frames)-conflateScan); i-- {
		old := q.frames[i]
		if old.ch == f.ch {
			if len(f.b)-len(old.b) > room {
				return false // the queue's bound holds even for a newer value
			}
			copy(q.frames[i:], q.frames[i+1:])
			q.frames[last] = f
			q.grow(len(f.b) - len(old.b))
			old.release()
			return true
		}
	}
	return false
}
