package wshub

import (
	"context"
	"crypto/tls"
	"errors"
	"iter"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A Hub accepts WebSocket connections and runs the application's callbacks
// for them. It has two doors to the same connections: it is an http.Handler
// to mount on a route of an existing server, and it serves listeners of its
// own with Serve, without net/http; ServeConn takes connections that other
// servers accepted. Either way the socket is handed to the Poller: no
// goroutine, buffer or timer is kept per idle connection.
//
// A Hub is safe for concurrent use. Close or Shutdown releases it.
type Hub struct {
	opts      Options
	p         *Poller
	ownPoller bool

	conns atomic.Int64 // registered connections, upgrading ones included

	// heartbeats is set when PingInterval or IdleTimeout is; heartbeatAfter
	// is the shorter of them in poller ticks: the sweep looks no closer at
	// a connection silent for less. lifetimes is set with MaxLifetime.
	heartbeats     bool
	lifetimes      bool
	heartbeatAfter uint32

	// msgCost and maxCredit are MessageRate and MessageBurst in
	// milliseconds of credit (see Conn.touched); zero when unlimited.
	msgCost, maxCredit uint32

	stats   counters
	inbound inBudget    // Options.MaxTotalBufferedBytes
	perAddr *addrLimits // Options.MaxConnsPerAddr and UpgradesPerAddr; nil without them
	bridge  *bridge     // nil without Options.Broker

	presence *presenceHub // nil without Options.ChannelPresence

	histMu       sync.RWMutex // guards histories and historyBytes
	histories    map[string]*history
	historyBytes int
	histSweep    chan struct{} // closed to stop sweepHistories' goroutine
	histStop     sync.Once
	histSwept    sync.WaitGroup

	chMu     sync.RWMutex // guards channels and users
	channels map[string]*Channel
	users    map[string]*Channel

	mu        sync.Mutex // guards closed and listeners
	closed    bool
	listeners map[net.Listener]struct{}

	// ctx ends with closed: it ends Serve's back-off and the TLS
	// handshakes in progress.
	ctx    context.Context
	cancel context.CancelFunc

	handshakes chan struct{} // a token per TLS handshake ServeTLS runs: MaxHandshakes
}

// New returns a hub configured by opts, which may be nil.
func New(opts *Options) (*Hub, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Hub{
		opts:       o,
		p:          o.Poller,
		listeners:  make(map[net.Listener]struct{}),
		channels:   make(map[string]*Channel),
		users:      make(map[string]*Channel),
		handshakes: make(chan struct{}, o.MaxHandshakes),
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if h.p == nil {
		if h.p, err = NewPoller(&PollerOptions{portableOnly: o.portable}); err != nil {
			return nil, err
		}
		h.ownPoller = true
	} else if h.p.closed.Load() {
		return nil, ErrHubClosed
	}
	if o.PingInterval > 0 || o.IdleTimeout > 0 {
		h.heartbeats = true
		after := o.PingInterval
		if after <= 0 || o.IdleTimeout > 0 && o.IdleTimeout < after {
			after = o.IdleTimeout
		}
		h.heartbeatAfter = uint32(after / time.Millisecond)
	}
	if o.Broker != nil {
		h.bridge = newBridge(h, o.Broker)
	}
	if o.ChannelPresence != nil {
		h.presence = newPresenceHub(h)
	}
	if o.ChannelHistory != nil {
		h.histSweep = make(chan struct{})
		h.histSwept.Add(1)
		go h.sweepHistories()
	}
	h.lifetimes = o.MaxLifetime > 0
	h.perAddr = newAddrLimits(&o)
	h.inbound.limit = max(o.MaxTotalBufferedBytes, 0)
	if o.MessageRate > 0 {
		h.msgCost = o.msgCost()
		h.maxCredit = h.msgCost * uint32(o.MessageBurst)
	}
	// A quarter of the finest timeout keeps the sweep's lateness under 25%.
	h.p.setSweep(o.finestTimeout() / 4)
	return h, nil
}

func (h *Hub) channelMap(user bool) map[string]*Channel {
	if user {
		return h.users
	}
	return h.channels
}

// Conns returns an iterator over the hub's open connections, in no
// particular order. It visits a snapshot taken when the loop starts, without
// holding any lock, so the loop body may write to or close them; taking the
// snapshot costs a pointer per connection.
func (h *Hub) Conns() iter.Seq[*Conn] {
	return func(yield func(*Conn) bool) {
		var conns []*Conn
		h.p.each(func(c *Conn) {
			if c.hub == h && c.state.Load() == connOpen {
				conns = append(conns, c)
			}
		})
		for _, c := range conns {
			if !yield(c) {
				return
			}
		}
	}
}

// Len returns the number of connections, those still upgrading included.
func (h *Hub) Len() int { return int(h.conns.Load()) }

// ServeHTTP upgrades the request to a WebSocket connection and returns at
// once: the socket is detached from net/http and served by the poller, so
// the server's per-connection goroutine and buffers are freed. Bytes the
// client sent after its request are kept. A request without "Upgrade:
// websocket" gets 426 Upgrade Required; one refused by CheckOrigin or
// OnUpgrade gets its status; one that arrives after Close or Shutdown gets
// 503 Service Unavailable. Each refusal is counted in Stats.Refused by its
// status.
//
// Behind wss:// (http.Server.ServeTLS and the like) the connection joins
// the loops only if the server accepted it from Hub.Listener, which gives
// the hub the transport under net/http's *tls.Conn; any other *tls.Conn
// takes the portable path, a goroutine and a read buffer per connection,
// counted in Stats.Portable.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.answerRequest(w, r, nil)
}

// Serve accepts connections on ln and upgrades them without net/http: the
// request is read without blocking by the poller and parsed by the gobwas
// zero-copy upgrader, within HandshakeTimeout; a request it refuses gets the
// answer ServeHTTP would give, counted in Stats.Refused by its status, and
// an unfinished one is dropped when HandshakeTimeout passes. It returns
// ErrHubClosed after Close or Shutdown, which close ln, or the listener's
// error. Other accept
// errors, such as running out of descriptors, are counted in
// Stats.AcceptErrors, reported to OnEvent as EventAcceptError, and retried
// after a pause that doubles from 5 ms to a second, as net/http does.
func (h *Hub) Serve(ln net.Listener) error { return h.serve(ln, nil) }

// serve is Serve, and ServeTLS with cfg.
func (h *Hub) serve(ln net.Listener, cfg *tls.Config) error {
	if !h.track(ln, true) {
		return ErrHubClosed
	}
	defer h.track(ln, false)
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if h.isClosed() {
				return ErrHubClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors (EMFILE, ENFILE), or the like: say so, and
			// try again after a pause that doubles up to a second, as
			// net/http does, so that a full table is not spun on.
			h.event(EventAcceptError, nil, err.Error())
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-h.ctx.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		if cfg != nil {
			h.startHandshake(nc, cfg)
			continue
		}
		if c := h.admitAccepted(nc); c != nil {
			h.adopt(c, nc, nil)
		}
	}
}

// admitAccepted returns the connection for nc, just accepted on the own
// listener, or nil if its address already has MaxConnsPerAddr upgrades
// unfinished: nc is then closed at once, unanswered, since its request
// is not read. Without this an address could hold as many sockets, each
// with its Conn and what it sent so far, as the process has descriptors,
// for HandshakeTimeout. With Options.ClientAddr the address is in the
// request: only admit counts it.
func (h *Hub) admitAccepted(nc net.Conn) *Conn {
	c := h.handshakingConn(nc.RemoteAddr())
	if h.perAddr == nil || h.opts.ClientAddr != nil {
		return c
	}
	if !h.perAddr.startPending(c, addrKey(nc.RemoteAddr().String())) {
		h.event(EventRejected, nil, "too many unfinished upgrades from this address")
		nc.Close()
		c.dropReader()
		return nil
	}
	c.own |= ownPending // before c is shared
	return c
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (h *Hub) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return h.Serve(ln)
}

// Close closes the hub's listeners and every connection at once, with a
// best-effort CloseGoingAway frame, and waits until every OnClose has
// returned and, if the hub owns its poller, every goroutine has exited.
func (h *Hub) Close() error {
	h.stop()
	h.p.each(func(c *Conn) {
		if c.hub == h {
			c.kill(&CloseError{Code: CloseGoingAway, Reason: "hub closed"}, CloseGoingAway, "hub closed")
		}
	})
	h.waitEnded(context.Background())
	h.stopServices()
	return nil
}

// stopServices stops what the hub runs besides its connections: the broker
// bridge, which unsubscribes from every topic, and the poller if it is the
// hub's own.
func (h *Hub) stopServices() {
	h.presence.close() // its goodbye goes out before the bridge stops
	if h.bridge != nil {
		h.bridge.close()
	}
	if h.histSweep != nil {
		h.histStop.Do(func() { close(h.histSweep) })
		h.histSwept.Wait()
	}
	h.dropHistories()
	if h.ownPoller {
		h.p.Close()
	}
}

// Shutdown closes the hub gracefully: it closes the listeners, refuses new
// upgrades with 503, sends every connection a close frame with DrainCode
// (CloseGoingAway by default) after what is already queued for it, and waits
// for the peers to answer (or for CloseTimeout) and every OnClose to return.
// With DrainRate set, connections are closed at that pace, in random order
// and with jittered gaps, so that clients do not all reconnect at once.
//
// ctx must allow for the slowest peer: one that never answers its close
// frame (its network gone, or a client that stopped reading) is dropped
// after CloseTimeout, 5 seconds by default, by a sweep that may see it up
// to a quarter of CloseTimeout late. So give Shutdown at least 1.25 times
// CloseTimeout (6.25 s by default), plus the number of connections divided
// by DrainRate when that is set, plus the time the OnClose callbacks take;
// a 5-second ctx with the default CloseTimeout fails as soon as one peer
// stays silent. To fit a tighter budget, such as what is left of a
// deployment's grace period after the HTTP server's own Shutdown, lower
// CloseTimeout.
//
// If ctx ends first, Shutdown closes what remains as Close does, waits for
// the remaining OnClose callbacks, and returns ctx.Err(): the hub is
// closed all the same, and the error says only that some peers were
// dropped without their answer.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.stop()
	err := h.drain(ctx)
	if err == nil {
		err = h.waitEnded(ctx)
	}
	if err != nil {
		h.Close()
		return err
	}
	h.stopServices()
	return nil
}

// stop refuses new connections and closes the listeners. After it returns,
// every connection the hub will ever have is registered with the poller.
func (h *Hub) stop() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		h.cancel()
	}
	for ln := range h.listeners {
		ln.Close()
		delete(h.listeners, ln)
	}
	h.mu.Unlock()
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// track adds ln to the listeners that stop closes, or removes it.
func (h *Hub) track(ln net.Listener, add bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !add {
		delete(h.listeners, ln)
		return true
	}
	if h.closed {
		return false
	}
	h.listeners[ln] = struct{}{}
	return true
}

// waitEnded waits until the hub has no connection left, polling as
// net/http's Shutdown does, so that no helper goroutine is left behind.
func (h *Hub) waitEnded(ctx context.Context) error {
	delay := time.Millisecond
	for h.conns.Load() > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
	return nil
}

// drainReturnRate is the pace, in connections per second, at which the
// advice of a drain that closes every connection at once spreads their
// return, within 30 s: a pace any hub takes in comfortably.
const (
	drainReturnRate   = 1000
	maxDrainAdviceSec = 30
)

// drainReason returns the reason of a drain's close frame: what happens,
// and the delay after which the client should reconnect, in whole
// seconds, in a form clients parse ("server shutting down; retry after
// 3s"). With DrainRate, the closes themselves are spread: the advice is
// 1 s, time for a load balancer to see the server go. Without it, every
// client is closed at once: each is told a delay drawn from 1 s to 1 s
// plus conns/drainReturnRate, so that they come back at about that rate
// rather than together.
func (h *Hub) drainReason(conns int64) string {
	reason := "server shutting down"
	if h.opts.DrainCode == CloseServiceRestart {
		reason = "server restarting"
	}
	secs := int64(1)
	if h.opts.DrainRate <= 0 {
		secs += rand.Int64N(min(conns/drainReturnRate, maxDrainAdviceSec) + 1)
	}
	return reason + "; retry after " + strconv.FormatInt(secs, 10) + "s"
}

// drain sends the connections of the hub their close frames, all at once or
// at DrainRate.
func (h *Hub) drain(ctx context.Context) error {
	code, n := h.opts.DrainCode, h.conns.Load()
	var conns []*Conn
	h.p.each(func(c *Conn) {
		if c.hub == h {
			if h.opts.DrainRate <= 0 {
				c.Close(code, h.drainReason(n))
			} else {
				conns = append(conns, c)
			}
		}
	})
	if len(conns) == 0 {
		return nil
	}
	// Close in steps of at least 10 ms, each gap drawn from half to one
	// and a half times the step, so the pace is DrainRate on average.
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	step := max(10*time.Millisecond, time.Second/time.Duration(h.opts.DrainRate))
	perStep := max(1, int(int64(h.opts.DrainRate)*int64(step)/int64(time.Second)))
	t := time.NewTimer(0)
	defer t.Stop()
	for len(conns) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		k := min(perStep, len(conns))
		for _, c := range conns[:k] {
			c.Close(code, h.drainReason(0))
		}
		conns = conns[k:]
		t.Reset(step/2 + rand.N(step))
	}
	return nil
}

// handshakingConn returns a connection whose upgrade request is still to
// be read, from the peer at remote, within HandshakeTimeout.
func (h *Hub) handshakingConn(remote net.Addr) *Conn {
	c := h.newConn(connHandshake)
	c.reader().remote = remote
	c.deadline.Store(h.p.after(h.opts.HandshakeTimeout))
	return c
}

// openedConn returns a connection whose upgrade request u accepted.
func (h *Hub) openedConn(u upgrade) *Conn {
	c := h.newConn(connOpen)
	c.accept(u)
	return c
}

// newConn returns a connection in state, not yet on a transport.
func (h *Hub) newConn(state uint32) *Conn {
	c := &Conn{hub: h, fd: -1}
	c.state.Store(state)
	now := h.p.now()
	c.active.Store(now)
	c.credit = uint16(h.maxCredit)
	if life := h.opts.MaxLifetime; life > 0 {
		// Up to a tenth shorter, at random, so that connections opened
		// together, after a deploy say, do not all reconnect together.
		life -= rand.N(life/10 + 1)
		end := now + uint32(life/time.Millisecond)
		c.sched.Store(lifeBits(end))
	}
	return c
}

// adopt hands an accepted or hijacked socket to the poller: its descriptor
// when it has one, with the transport under it for a *tls.Conn of
// Hub.Listener (see takeConn), else the net.Conn itself on the portable
// path. resp, if any, is the 101 answer, which waits in the queue for
// OnOpen (see Conn.holdLocked). If the hub is closed it closes the socket
// and returns the error.
func (h *Hub) adopt(c *Conn, nc net.Conn, resp []byte) error {
	nc = plainConn(nc)
	if !h.opts.portable {
		if fd, x, ok := takeConn(nc); ok {
			c.fd, c.cio = int32(fd), x
		}
	}
	if c.fd < 0 {
		c.cio = &connIO{nc: nc}
	}
	if resp != nil {
		c.mu.Lock()
		c.holdLocked(resp)
		c.mu.Unlock()
	}
	if err := h.attach(c); err != nil {
		if c.out != nil {
			c.out.discard()
			c.out = nil
		}
		if c.own&ownPending != 0 {
			h.perAddr.endPending(c)
		}
		if c.state.Load() == connOpen {
			h.freeSlot(c, nil)
			// The client was admitted: tell it why it goes.
			var buf [maxHeaderSize + maxControlPayload]byte
			c.writeRaw(resp)
			c.writeRaw(closeFrame(&buf, CloseGoingAway, "server shutting down"))
		}
		if c.fd < 0 {
			c.cio.nc.Close()
		} else {
			sysClose(int(c.fd))
		}
		c.dropReader()
		return err
	}
	return nil
}

// attach registers c unless the hub is closed.
func (h *Hub) attach(c *Conn) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrHubClosed
	}
	h.conns.Add(1)
	if err := h.p.register(c); err != nil {
		h.conns.Add(-1)
		return err
	}
	if c.fd < 0 {
		h.stats.portable.Add(1) // until ended
		h.p.wg.Add(1)
		go c.servePortable()
	}
	return nil
}

// ended reports the end of a connection; its owner calls it once.
func (h *Hub) ended(c *Conn, opened bool, err *CloseError) {
	if c.own&ownPending != 0 {
		h.perAddr.endPending(c) // an unfinished upgrade: see admitAccepted
	}
	if opened {
		if err == nil {
			err = lostError(nil)
		}
		h.freeSlot(c, nil)
		h.stats.closed(err.Code)
		if f := h.opts.OnClose; f != nil {
			f(c, err)
		}
	}
	h.p.expiries.remove(c) // after finish marked it closed: SetExpiry adds no more
	if c.fd < 0 {
		h.stats.portable.Add(-1)
	}
	h.conns.Add(-1)
}
