package wshub

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pollEvent is what a readiness queue reported for one socket.
type pollEvent uint8

const (
	pollRead  pollEvent = 1 << iota // readable, hung up or failed: the owner must read
	pollWrite                       // writable: queued frames can go out
	pollHup                         // the peer hung up or the socket failed
)

// PollerOptions configures a Poller. The zero value means defaults.
type PollerOptions struct {
	// Loops is the number of event loops, each with its own epoll or kqueue
	// instance; connections are spread across them by descriptor. Zero
	// means runtime.GOMAXPROCS(0).
	Loops int

	// Workers bounds how many connections are processed at once: read,
	// parsed and handed to callbacks. Each loop processes its ready
	// connections on its own goroutine; when a callback has held a loop
	// for about a millisecond, a new goroutine takes over the loop and the
	// blocked one finishes that connection only, then exits. Workers bounds
	// the goroutines doing this, blocked ones included: past it, a loop
	// waits for its callback to return. A connection whose callback blocks
	// is not read meanwhile (its peer sees TCP back-pressure). Zero means
	// 128; less than Loops means Loops.
	Workers int

	// portableOnly starts no event loop: for hubs that serve every
	// connection on the portable path (tests, testing/synctest bubbles).
	portableOnly bool
}

// A Poller owns the event loops and the goroutines that serve connections
// without a goroutine per connection. Several hubs may share one Poller; a hub
// given none makes its own and closes it with itself.
//
// Each loop waits for readiness, flushes queued frames to writable sockets,
// and reads its readable connections itself: it reads a connection until
// the socket is drained, parses frames incrementally and runs the
// callbacks, with no hand-off to another goroutine. A callback that blocks
// makes the poller hand the loop to a new goroutine (see
// PollerOptions.Workers), so it holds only its own connection. One
// connection is processed by one goroutine at a time, which keeps its
// messages in order.
//
// Where the operating system offers neither epoll nor kqueue, and for
// connections without a raw socket (a net.Pipe, a net.Conn wrapper of the
// application's), the portable path is used instead: one reader goroutine
// per connection and a writer goroutine while frames are queued, with the
// same Conn behaviour. TLS connections run on the loops when the hub
// supplied the transport under their *tls.Conn (Hub.ServeTLS, Hub.Listener).
//
// A Poller is safe for concurrent use.
//
// The order in which the hub takes its internal locks is in the
// repository's ARCHITECTURE.md.
type Poller struct {
	loops []*loop
	start time.Time

	// Runners: the goroutines that run the loops (dispatch.go). runners
	// counts them, retired ones in a blocked turn included, within
	// maxRunners; handoffs counts the loops handed on.
	runners    atomic.Int32
	maxRunners int
	handoffs   atomic.Uint64

	// The watchdog: asleep when no loop has had a turn for a while, until
	// a runner kicks it.
	watchAsleep atomic.Bool
	watchKick   chan struct{}

	// tableMu guards table, which maps a descriptor to its connection. It is
	// indexed by descriptor and grows on demand; descriptors are dense and
	// reused, so it costs one pointer per connection.
	tableMu sync.RWMutex
	table   []*Conn

	// portableMu guards portable, the connections on the portable path.
	portableMu sync.Mutex
	portable   map[*Conn]struct{}

	// sweepEvery is the period of the deadline sweep in nanoseconds, set by
	// the hubs that use the poller (the finest one wins).
	sweepEvery atomic.Int64
	sweepKick  chan struct{}

	// expiries are the connections' credential expiries (Conn.SetExpiry),
	// which the sweep checks too.
	expiries expiryTable

	closed    atomic.Bool // no more registrations
	stopping  atomic.Bool // loops exit
	closeOnce sync.Once
	done      chan struct{}  // closed by Close: stops the sweeper
	wg        sync.WaitGroup // runners, watchdog, sweeper, portable goroutines
}

// errPollerClosed is returned when a connection is offered to a closed poller.
var errPollerClosed = errors.New("wshub: poller closed")

// NewPoller starts a poller's event loops. Where no netpoll exists, it returns
// a poller that serves every connection on the portable path.
func NewPoller(opts *PollerOptions) (*Poller, error) {
	var o PollerOptions
	if opts != nil {
		o = *opts
	}
	if o.Loops <= 0 {
		o.Loops = runtime.GOMAXPROCS(0)
	}
	if o.Workers <= 0 {
		o.Workers = 128
	}
	p := &Poller{
		start:      time.Now(),
		maxRunners: max(o.Workers, o.Loops),
		watchKick:  make(chan struct{}, 1),
		portable:   make(map[*Conn]struct{}),
		sweepKick:  make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	p.sweepEvery.Store(int64(time.Second))
	if hasNetpoll && !o.portableOnly {
		for range o.Loops {
			np, err := openNetpoll()
			if err != nil {
				for _, l := range p.loops {
					l.np.close()
				}
				return nil, err
			}
			p.loops = append(p.loops, &loop{p: p, np: np})
		}
		for _, l := range p.loops {
			p.runners.Add(1)
			p.wg.Add(1)
			go l.run(0)
		}
		p.wg.Add(1)
		go p.watch()
	}
	p.wg.Add(1)
	go p.sweeper()
	return p, nil
}

// Close closes every connection of every hub on the poller at once, as
// Hub.Close does, waits for them to end, then stops the loops, the sweeper
// and the watchdog and waits for them. Close the hubs first to have their
// listeners closed too; a hub whose poller is closed refuses connections.
func (p *Poller) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true) // register refuses from now on
		p.each(func(c *Conn) {
			c.kill(&CloseError{Code: CloseGoingAway, Reason: "poller closed"}, CloseGoingAway, "poller closed")
		})
		for delay := time.Millisecond; p.registered() > 0; delay = min(2*delay, 50*time.Millisecond) {
			time.Sleep(delay)
		}
		p.stopping.Store(true)
		close(p.done)
		for _, l := range p.loops {
			l.np.wake()
		}
	})
	p.wg.Wait()
	for _, l := range p.loops {
		l.closeNetpoll()
	}
	return nil
}

// registered counts the connections still registered.
func (p *Poller) registered() int {
	n := 0
	p.each(func(*Conn) { n++ })
	return n
}

// register hands a connection to the poller. An fd connection is added to
// the table and to a loop; a portable one is recorded for the sweeper. Either
// way it is scheduled at once, so that OnOpen runs and bytes that arrived with
// the handshake are parsed without waiting for more.
func (p *Poller) register(c *Conn) error {
	if p.closed.Load() {
		return errPollerClosed
	}
	if c.transport() == viaNetConn {
		p.portableMu.Lock()
		p.portable[c] = struct{}{}
		p.portableMu.Unlock()
		return nil
	}
	fd := int(c.fd)
	p.tableMu.Lock()
	if fd >= len(p.table) {
		n := max(2*len(p.table), fd+1, 1024)
		t := make([]*Conn, n)
		copy(t, p.table)
		p.table = t
	}
	p.table[fd] = c
	p.tableMu.Unlock()
	if err := p.loops[fd%len(p.loops)].np.add(fd); err != nil {
		p.unregister(c)
		return err
	}
	p.schedule(c)
	return nil
}

// unregister forgets a connection. For an fd connection it must run before
// the descriptor is closed, so that a new socket given the same number is
// never mistaken for this one.
func (p *Poller) unregister(c *Conn) {
	if c.transport() == viaNetConn {
		p.portableMu.Lock()
		delete(p.portable, c)
		p.portableMu.Unlock()
		return
	}
	p.tableMu.Lock()
	if int(c.fd) < len(p.table) && p.table[c.fd] == c {
		p.table[c.fd] = nil
	}
	p.tableMu.Unlock()
}

// each calls fn for every registered connection, holding the table lock for
// reading, so fn must not register or unregister connections.
func (p *Poller) each(fn func(c *Conn)) {
	p.tableMu.RLock()
	for _, c := range p.table {
		if c != nil {
			fn(c)
		}
	}
	p.tableMu.RUnlock()
	p.portableMu.Lock()
	for c := range p.portable {
		fn(c)
	}
	p.portableMu.Unlock()
}

// loop is one event loop: a goroutine waiting on one netpoll.
type loop struct {
	p  *Poller
	np *netpoll
	rq runQueue // the connections to process, and who processes them

	ready    []*Conn // the current runner's scratch: readable after a wait
	writable []*Conn // the current runner's scratch: writable after a wait, flushed after the lookup
	once     sync.Once

	// flushMu guards flush, the connections that publishes queued frames
	// for, and the fields after it. The loop writes them out, so a publish
	// only queues, the loops write in parallel, and frames published in a
	// burst leave in one writev per connection.
	flushMu sync.Mutex
	flush   []*Conn
	spare   []*Conn
	// flushAt is when a delayed flush is due (Options.FlushDelay), in
	// nanoseconds since the poller started; zero when none waits.
	// flushTimer wakes the loop then; closed tells it the wake descriptor
	// is gone.
	flushAt    int64
	flushTimer *time.Timer
	closed     bool

	// Deferring a flush while publishers queue (see flushRequested).
	// publishing counts the publish calls queueing to this loop's members
	// now: each adds itself at its first such member, without the lock,
	// and leaves under it when it submits. ended counts the calls that
	// left, and pendingFrom is what it was when flush last went from empty
	// to not. The loop sets deferred when it put a flush off, so that the
	// next publisher to leave wakes it.
	publishing  atomic.Int32
	ended       uint32
	pendingFrom uint32
	deferred    bool

	// queueMu guards queues, write queues free for reuse. A publish takes
	// queues for the members of this loop and the loop, flushing them,
	// gives them back; a sync.Pool would miss when the two run on
	// different Ps and allocate per member.
	queueMu sync.Mutex
	queues  []*outQueue
}

// maxFreeQueues bounds a loop's free list; beyond it drained queues are
// left to the garbage collector.
const maxFreeQueues = 16 << 10

// getQueue returns an empty write queue for c.
func (p *Poller) getQueue(c *Conn) *outQueue {
	if c.transport() == viaNetConn {
		return queuePool.Get().(*outQueue)
	}
	l := p.loopOf(c)
	l.queueMu.Lock()
	defer l.queueMu.Unlock()
	if n := len(l.queues); n > 0 {
		q := l.queues[n-1]
		l.queues[n-1] = nil
		l.queues = l.queues[:n-1]
		return q
	}
	return new(outQueue)
}

// putQueue takes back c's drained write queue.
func (p *Poller) putQueue(c *Conn, q *outQueue) {
	q.held, q.unbounded, q.stalled, q.writeStart = false, 0, false, 0
	if c.transport() == viaNetConn {
		queuePool.Put(q)
		return
	}
	l := p.loopOf(c)
	l.queueMu.Lock()
	if len(l.queues) < maxFreeQueues {
		l.queues = append(l.queues, q)
	}
	l.queueMu.Unlock()
}

// loopOf returns the loop that serves fd connection c.
func (p *Poller) loopOf(c *Conn) *loop { return p.loops[int(c.fd)%len(p.loops)] }

// flushBatch collects, during one publish, the connections each loop must
// flush, so that each loop's list is locked and woken once per publish.
type flushBatch struct {
	p     *Poller
	lists [][]*Conn // by loop
	// busy marks the loops this publish counts itself in as publishing
	// (see loop.publishing), from its first member there until submit.
	busy []bool
}

var flushBatchPool sync.Pool

func (p *Poller) newFlushBatch() *flushBatch {
	b, _ := flushBatchPool.Get().(*flushBatch)
	if b == nil || len(b.lists) != len(p.loops) {
		b = &flushBatch{lists: make([][]*Conn, len(p.loops)), busy: make([]bool, len(p.loops))}
	}
	b.p = p
	return b
}

// queued records that the publish queued a frame for fd connection c,
// whose mu is held: it counts the publish as publishing on c's loop, and
// adds c to the loop's list unless c is on its flush list already.
func (b *flushBatch) queued(c *Conn) {
	i := int(c.fd) % len(b.lists)
	if !b.busy[i] {
		b.busy[i] = true
		b.p.loops[i].publishing.Add(1)
	}
	if c.flags&flagFlushQueued == 0 {
		c.flags |= flagFlushQueued
		b.lists[i] = append(b.lists[i], c)
	}
}

// submit appends the batch to the loops' flush lists and wakes each loop
// whose list was empty, at once or, with a delay (Options.FlushDelay), when
// it is due; and each loop that put its flush off until a publisher left.
func (b *flushBatch) submit(delay time.Duration) {
	for i, list := range b.lists {
		if len(list) == 0 && !b.busy[i] {
			continue
		}
		l := b.p.loops[i]
		l.flushMu.Lock()
		wake := false
		if len(list) > 0 {
			if len(l.flush) == 0 {
				l.pendingFrom = l.ended
			}
			wake = l.requestFlushLocked(delay)
			l.flush = append(l.flush, list...)
		}
		if b.busy[i] {
			b.busy[i] = false
			l.publishing.Add(-1)
			l.ended++
			wake = wake || l.deferred
			l.deferred = false
		}
		l.flushMu.Unlock()
		if wake {
			l.np.wake()
		}
		clear(list)
		b.lists[i] = list[:0]
	}
	b.p = nil
	flushBatchPool.Put(b)
}

// requestFlushLocked sets when the loop must flush for a request that may
// wait delay, and reports whether the loop must be woken now. A flush
// already due sooner serves the request too.
func (l *loop) requestFlushLocked(delay time.Duration) (wake bool) {
	pending := len(l.flush) > 0
	if delay <= 0 {
		wake = !pending || l.flushAt != 0 // nothing asked yet, or only for later
		l.flushAt = 0
		return wake
	}
	at := l.p.nanotime() + int64(delay)
	if pending && (l.flushAt == 0 || l.flushAt <= at) {
		return false
	}
	l.flushAt = at
	if l.flushTimer == nil {
		l.flushTimer = time.AfterFunc(delay, l.flushDue)
	} else {
		l.flushTimer.Reset(delay)
	}
	return false
}

// flushDue is the flush timer's: it wakes the loop, unless the poller is
// closed, whose wake descriptor may belong to someone else by now.
func (l *loop) flushDue() {
	l.flushMu.Lock()
	if !l.closed {
		l.np.wake()
	}
	l.flushMu.Unlock()
}

// nanotime is the time since the poller started, in nanoseconds.
func (p *Poller) nanotime() int64 { return int64(time.Since(p.start)) }

// maxDeferrals bounds how many publish calls may end while a flush waits:
// a writev takes no more frames than that anyway, and publishers that
// never stop, from many goroutines, must not starve the flush.
const maxDeferrals = maxIovecs

// flushRequested writes out what publishes queued, unless they may wait.
//
// They wait, too, while another publish call is queueing to the loop's
// members: a burst of publishes, back to back from one goroutine, would
// otherwise race the loop, which would write each member what reached it
// so far, a frame or two, and the rest in more writes. The loop puts the
// flush off until the publish in progress submits, which wakes it, and
// then until the next one if another started meanwhile, until
// maxDeferrals publishes have ended since the flush was asked for; so a
// burst reaches most members in one writev. A lone publish is flushed as
// soon as it submits, as before: nothing else is queueing then. If a
// publish starts while the loop writes (the second of a burst, which the
// loop could not tell from a lone one), the members not written yet wait
// for it as well (holdRest).
func (l *loop) flushRequested() {
	l.flushMu.Lock()
	if len(l.flush) == 0 || l.flushAt != 0 && l.p.nanotime() < l.flushAt {
		l.flushMu.Unlock()
		return
	}
	if l.ended-l.pendingFrom < maxDeferrals && l.publishing.Load() > 0 {
		l.deferred = true // the next publisher to submit wakes the loop
		l.flushMu.Unlock()
		return
	}
	l.flushAt = 0
	list, from := l.flush, l.pendingFrom
	l.flush, l.spare = l.spare[:0], nil
	l.flushMu.Unlock()
	mayHold := true
	for i, c := range list {
		// A publish that starts queueing while the loop writes is a burst
		// the loop did not see coming: the members not written yet wait
		// for it too, rather than get its first message alone.
		if mayHold && l.publishing.Load() > 0 {
			if l.holdRest(list, i, from) {
				return
			}
			mayHold = false
		}
		c.mu.Lock()
		c.flags &^= flagFlushQueued
		if c.out != nil && c.state.Load() != connClosed {
			c.flushLocked()
		}
		c.mu.Unlock()
		list[i] = nil
	}
	l.flushMu.Lock()
	l.spare = list[:0]
	l.flushMu.Unlock()
}

// holdRest puts list[i:], the members a flush pass has not written yet,
// back on the loop's flush list, ahead of what publishes added since, to
// wait for the publish in progress, unless maxDeferrals publishes have
// ended since from, when the flush was asked for; it reports whether it
// did.
func (l *loop) holdRest(list []*Conn, i int, from uint32) bool {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	// Under the lock, publishing tells whether the publisher's submit
	// is still to come, and so will see deferred and wake the loop.
	if l.ended-from >= maxDeferrals || l.publishing.Load() == 0 {
		return false
	}
	// The rest moves to the front of list's array, which becomes the
	// flush list; the array publishes appended to becomes the spare.
	n := copy(list, list[i:])
	clear(list[n:])
	added := l.flush
	l.flush = append(list[:n], added...)
	clear(added)
	l.spare = added[:0]
	l.pendingFrom = from
	l.deferred = true // the next publisher to submit wakes the loop
	return true
}

// collect looks up the connections of the last wait's n events, flushes the
// queues of those that turned writable and returns those that turned
// readable, in l.ready, for the runner to queue. The lookup holds the table
// lock; the flushes come after it, so that no system call or encryption
// runs under it and a register waits for none.
func (l *loop) collect(n int) []*Conn {
	// A descriptor may have been closed and reused between the kernel's
	// report and this lookup; the new connection then sees one spurious
	// readiness, which costs it a read that finds nothing. A connection
	// finished after the lookup is seen closed by onWritable, under its
	// lock, before its descriptor is closed.
	l.ready, l.writable = l.ready[:0], l.writable[:0]
	l.p.tableMu.RLock()
	for i := range n {
		fd, ev := l.np.event(i)
		if fd < 0 || fd >= len(l.p.table) {
			continue
		}
		c := l.p.table[fd]
		if c == nil {
			continue
		}
		// Edge-triggered epoll reports writability with most events;
		// the bit spares the lock when nothing is queued.
		if ev&pollWrite != 0 && c.sched.Load()&schedOut != 0 {
			l.writable = append(l.writable, c)
		}
		if ev&pollHup != 0 {
			c.sched.Or(schedHup)
		}
		if ev&pollRead != 0 {
			l.ready = append(l.ready, c)
		}
	}
	l.p.tableMu.RUnlock()
	for i, c := range l.writable {
		c.onWritable()
		l.writable[i] = nil
	}
	return l.ready
}

func (l *loop) closeNetpoll() {
	l.once.Do(func() {
		l.flushMu.Lock()
		l.closed = true
		if l.flushTimer != nil {
			l.flushTimer.Stop()
		}
		l.np.close()
		l.flushMu.Unlock()
	})
}
