package wshub

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/gobwas/pool/pbytes"
)

// wss:// on the loops.
//
// crypto/tls does all the cryptography. The hub drives a *tls.Conn over a
// transport of its own, connIO, instead of the socket: a read hands it the
// ciphertext the loop just read and reports "would block", a temporary
// net.Error that tls.Conn does not keep, when there is no more; a write
// collects the records it makes, which the hub then writes to the socket
// without blocking, as it writes a plain connection's frames. Frames stay
// plaintext in the queue, shared by every member a publish reaches; each
// connection encrypts them when its socket has room, so the slow-consumer
// policies work as on plain connections and a burst becomes one record.
//
// A handshake cannot be driven that way (tls.Conn keeps every error of its
// handshake), so it runs on a goroutine of its own over the blocking socket,
// with connIO passing reads and writes through: on the own listener
// ServeTLS runs it, at most MaxHandshakes at once within HandshakeTimeout;
// on the ServeHTTP door net/http runs it before the hijack, over the connIO
// that Hub.Listener accepted, which tls.Conn.NetConn returns to the hub.
// Either way the hub then takes the socket's descriptor and switches the
// connIO the tls.Conn was made over into loop mode: crypto/tls's fields are
// never written. A *tls.Conn over any other net.Conn takes the portable
// path.
//
// Whether "would block" is passed through rests on the deprecated
// Temporary method. drainTLS does not trust it alone: a tls.Conn that
// answers "would block" without taking the ciphertext it was offered has
// kept the error, and the connection is failed rather than left waiting
// for reads that can never succeed.
//
// At rest a tls.Conn keeps its read buffers at the largest size they ever
// had (rawInput, the ciphertext of the record being read, and hand, the
// handshake message being read: a few KB after a handshake with a
// post-quantum key share, a whole record's worth after one large record).
// The hub empties them when they hold nothing, which leaves what is
// crypto/tls's own: the tls.Conn, its two AEAD states and its secrets (the
// wss:// section of bench/RESULTS.md has the figures). crypto/tls offers no
// way to reach the buffers, so the hub finds them by reflection, checks
// their types, and does without where they differ: see tlsLayout.

// tlsLayout locates the read buffers of tls.Conn, rawInput and hand, which
// the hub empties between reads. If a future crypto/tls renames or retypes
// one, ok is false and the buffers are kept as crypto/tls leaves them: that
// costs memory (up to a record's worth a connection), nothing else. Nothing else of
// tls.Conn is reached: its transport is the connIO it was made over.
var tlsLayout = func() (l struct {
	ok             bool
	rawInput, hand uintptr
}) {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, want reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && f.Type == want && len(f.Index) == 1
	}
	var ok1, ok2 bool
	l.rawInput, ok1 = field("rawInput", reflect.TypeFor[bytes.Buffer]())
	l.hand, ok2 = field("hand", reflect.TypeFor[bytes.Buffer]())
	l.ok = ok1 && ok2
	return l
}()

// tlsBuffers returns tc's read buffers, which only the goroutine that reads
// tc may touch, between its reads.
func tlsBuffers(tc *tls.Conn) (rawInput, hand *bytes.Buffer) {
	p := unsafe.Pointer(tc)
	return (*bytes.Buffer)(unsafe.Add(p, tlsLayout.rawInput)), (*bytes.Buffer)(unsafe.Add(p, tlsLayout.hand))
}

// tlsBatch is the most plaintext a TLS connection's flush encrypts at once:
// one record's worth.
const tlsBatch = 16 << 10

// maxCipherBacklog bounds the ciphertext a TLS connection holds for a socket
// that does not take it. The hub's own writes leave at most one batch there
// (a flush encrypts no more until it is written); the rest is what tls.Conn
// writes by itself, answering the peer's key update requests, which a peer
// that sends them and never reads could pile up without end. One past the
// bound closes it as a slow consumer.
const maxCipherBacklog = 2 * tlsBatch

// errWouldBlock is what connIO.Read returns when it has no ciphertext left.
// crypto/tls passes a temporary net.Error through without keeping it, so the
// next read, with more ciphertext, goes on where this one stopped (drainTLS
// checks that it did).
var errWouldBlock error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "wshub: no ciphertext yet" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

// connIO is what a connection needs besides a plain socket on the loops.
//
// On the portable path it is the net.Conn its goroutine reads (nc). Under a
// tls.Conn it is the transport: nc is the socket, read and written through,
// while the handshake runs (and, for a connection of Hub.Listener, while
// net/http serves it), then nil once the hub has taken the descriptor (loop
// mode), and the loops move the ciphertext through in and out. local and
// remote are the socket's addresses, kept from the start for whoever holds
// the tls.Conn (see newTransport); inline, since keeping nc's net.Addrs
// measured 130 bytes more heap a connection. The connection's owner alone
// touches in, held and charged; out is guarded by mu, since both the owner
// (answering a key update) and writers append to it. 160 bytes.
type connIO struct {
	nc net.Conn
	tc *tls.Conn

	in      []byte // ciphertext read, from inOff, and not yet taken by tc
	inOff   int32
	held    bool  // in is a pooled copy, charged, kept while the connection waits for the budget
	unix    bool  // the socket is a Unix socket's: local and remote hold nothing
	charged int32 // bytes of the budget charged for tc's buffers: a partial record

	mu  sync.Mutex
	off int32  // out's bytes already written
	out []byte // pooled: ciphertext tc made that the socket has not taken

	local, remote netip.AddrPort
}

// newTransport returns a connIO over nc, the socket a tls.Conn is to be
// made over, with its addresses kept for loop mode.
func newTransport(nc net.Conn) *connIO {
	x := &connIO{nc: nc}
	if a, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		x.local = a.AddrPort()
	}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		x.remote = a.AddrPort()
	}
	_, x.unix = nc.(*net.UnixConn)
	return x
}

// takeSocket switches x, the transport of tc, whose handshake is over, to
// loop mode: the hub takes the socket's descriptor, and x feeds tc the
// ciphertext the loops read. It reports false, leaving x as it was, if nc
// has no descriptor to take.
func (x *connIO) takeSocket(tc *tls.Conn) (fd int, ok bool) {
	if fd, ok = takeFD(x.nc); ok {
		x.nc, x.tc = nil, tc
	}
	return fd, ok
}

func (x *connIO) Read(p []byte) (int, error) {
	if x.nc != nil {
		return x.nc.Read(p) // the handshake, or net/http's requests
	}
	if int(x.inOff) == len(x.in) {
		return 0, errWouldBlock
	}
	n := copy(p, x.in[x.inOff:])
	x.inOff += int32(n)
	return n, nil
}

// Write takes a record of tc's. It never blocks: the record waits in out
// until send writes it.
func (x *connIO) Write(p []byte) (int, error) {
	if x.nc != nil {
		return x.nc.Write(p) // the handshake, or net/http's responses
	}
	x.mu.Lock()
	if x.out == nil {
		x.out = pbytes.GetCap(max(len(p), 4<<10))
	}
	x.out = append(x.out, p...)
	x.mu.Unlock()
	return len(p), nil
}

// Close closes the socket before loop mode (tls.Conn does so when its
// handshake's context ends, net/http when it is done with a connection); in
// loop mode the hub closes the descriptor itself.
func (x *connIO) Close() error {
	if x.nc != nil {
		return x.nc.Close()
	}
	return nil
}

// LocalAddr and RemoteAddr return the socket's addresses, in loop mode too:
// code that kept the tls.Conn (net/http's ConnContext or ConnState, a
// GetCertificate that kept the ClientHelloInfo) may log them at any time.
// They read only what newTransport set before x was shared. A Unix
// socket's names are not kept: its addresses are reported unnamed.

func (x *connIO) LocalAddr() net.Addr { return x.addr(x.local, (net.Conn).LocalAddr) }

func (x *connIO) RemoteAddr() net.Addr { return x.addr(x.remote, (net.Conn).RemoteAddr) }

func (x *connIO) addr(ap netip.AddrPort, ofConn func(net.Conn) net.Addr) net.Addr {
	switch {
	case ap.IsValid():
		return net.TCPAddrFromAddrPort(ap)
	case x.unix:
		return &net.UnixAddr{Net: "unix"}
	}
	return ofConn(x.nc) // the portable path's, or a socket never taken
}

// The deadlines are the hub's own in loop mode (see Poller.sweep).

func (x *connIO) SetDeadline(t time.Time) error {
	if x.nc != nil {
		return x.nc.SetDeadline(t)
	}
	return nil
}

func (x *connIO) SetReadDeadline(t time.Time) error {
	if x.nc != nil {
		return x.nc.SetReadDeadline(t)
	}
	return nil
}

func (x *connIO) SetWriteDeadline(t time.Time) error {
	if x.nc != nil {
		return x.nc.SetWriteDeadline(t)
	}
	return nil
}

// pending returns how much ciphertext waits for the socket.
func (x *connIO) pending() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.out) - int(x.off)
}

// send writes the ciphertext waiting in out to the socket, as much as it
// takes, and reports whether all of it went; out goes back to its pool then.
func (x *connIO) send(c *Conn) (done bool, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for int(x.off) < len(x.out) {
		c.hub.stats.writes.Add(1) // before: the peer may read the bytes before it returns
		n, err := sysWrite(int(c.fd), x.out[x.off:])
		x.off += int32(n)
		if err != nil {
			if isWouldBlock(err) {
				return false, nil
			}
			return false, err
		}
	}
	if x.out != nil {
		pbytes.Put(x.out)
		x.out, x.off = nil, 0
	}
	return true, nil
}

// release returns what x holds to its pools when the connection ends.
func (x *connIO) release() {
	x.mu.Lock()
	if x.out != nil {
		pbytes.Put(x.out)
		x.out, x.off = nil, 0
	}
	x.mu.Unlock()
	if x.held {
		pbytes.Put(x.in) // its charge goes back with the readState's
	}
	x.in, x.inOff, x.held = nil, 0, false
}

// cipherSpace is nextRead for a wss:// connection's socket: the owner's
// cipher buffer, unless tc holds a partial record and the budget is short:
// the next read could grow it, so the connection waits like one holding a
// partial message.
func (c *Conn) cipherSpace(cipher []byte) ([]byte, readKind) {
	if c.cio.charged > 0 && c.hub.inbound.pressed() && !c.prepay(int64(len(cipher))) {
		return nil, readPaused
	}
	return cipher, readCipher
}

// drainTLS hands tc the ciphertext in x.in and handles all the plaintext it
// yields. It reports false if the connection ended or must wait for the
// budget; the ciphertext not yet taken is then copied, since it lies in the
// runner's buffer.
func (c *Conn) drainTLS(plain []byte) bool {
	x := c.cio
	for c.own&ownDone == 0 {
		dst, kind := c.nextRead(plain, false)
		if kind == readPaused {
			c.holdTLS()
			return false
		}
		n, err := x.tc.Read(dst)
		if n > 0 {
			c.consume(kind, dst[:n])
			continue
		}
		if err == errWouldBlock && int(x.inOff) == len(x.in) && !recordWaits(x.tc) {
			c.restTLS()
			return true
		}
		if errors.Is(err, errWouldBlock) { // and ciphertext left untaken
			c.keptWouldBlock()
			return false
		}
		// io.EOF is the peer's close_notify; anything else a TLS alert or
		// a record that does not decrypt.
		c.finish(lostError(err))
		return false
	}
	return false
}

// reasonKeptWouldBlock is the reason of a connection whose tls.Conn kept
// errWouldBlock.
const reasonKeptWouldBlock = "crypto/tls kept a would-block read error"

// recordWaits reports whether tc's rawInput holds a whole record. crypto/tls
// reads from its transport only when it lacks one, so it cannot answer
// "would block" with one waiting unless it kept the error. Where tlsLayout
// does not know rawInput, the next ciphertext read tells instead.
func recordWaits(tc *tls.Conn) bool {
	if !tlsLayout.ok {
		return false
	}
	raw, _ := tlsBuffers(tc)
	b := raw.Bytes()
	return len(b) >= 5 && len(b) >= 5+(int(b[3])<<8|int(b[4]))
}

// keptWouldBlock fails a connection whose tls.Conn answered "would block"
// with ciphertext it had not taken (in x.in, or a whole record in its
// rawInput), or wrapped the error as one it keeps: a crypto/tls that no
// longer passes temporary errors through. Every later read would return
// the error at once and the connection would wait for ever; instead it is
// closed with CloseInternalError and this reason, which OnClose reports and
// Stats.Closes counts (the hub closes with 1011 for nothing else). Only the
// read side is broken, so the peer gets the close frame too.
func (c *Conn) keptWouldBlock() {
	err := &CloseError{Code: CloseInternalError, Reason: reasonKeptWouldBlock}
	c.kill(err, CloseInternalError, reasonKeptWouldBlock)
	c.finish(err)
}

// holdTLS copies the ciphertext tc has not taken out of the runner's buffer
// before the connection waits for the budget. It is at most one read, the
// same bound as the bytes a plain connection may have read past the budget
// (see Options.MaxTotalBufferedBytes), and charged to the budget.
func (c *Conn) holdTLS() {
	x := c.cio
	if int(x.inOff) == len(x.in) || x.held {
		return
	}
	x.in = append(pbytes.GetCap(len(x.in)-int(x.inOff)), x.in[x.inOff:]...)
	x.inOff, x.held = 0, true
	c.reader()
	c.spend(int64(cap(x.in)))
}

// restTLS runs when tc has taken every byte read: it empties tc's read
// buffers if they hold nothing, and charges them to the budget if they hold
// a partial record, which also makes the read deadline run, as for a
// partial frame: a peer that dribbles a record is closed after ReadTimeout.
func (c *Conn) restTLS() {
	x := c.cio
	if x.held {
		c.freeStored(x.in)
	}
	x.in, x.inOff, x.held = nil, 0, false // not the runner's buffer past this turn
	charge := int32(0)
	if tlsLayout.ok {
		raw, hand := tlsBuffers(x.tc)
		if raw.Len() == 0 {
			*raw = bytes.Buffer{}
		} else {
			charge += int32(raw.Cap())
		}
		if hand.Len() == 0 {
			*hand = bytes.Buffer{}
		} else {
			charge += int32(hand.Cap())
		}
	}
	if d := charge - x.charged; d > 0 {
		c.reader()
		c.spend(int64(d))
	} else if d < 0 {
		c.rd.charged += int64(d)
		c.hub.inbound.give(int64(-d))
	}
	x.charged = charge
	c.settleRead()
	if x.pending() > 0 {
		// tc answered something itself (a key update), or a writer is
		// about to send: send what waits if no writer will.
		c.mu.Lock()
		if c.state.Load() != connClosed {
			c.outLocked() // an empty queue, if none: the loops finish it on the next write edge
			c.flushLocked()
		}
		if x.pending() > maxCipherBacklog && c.state.Load() != connClosed && c.flags&flagShut == 0 {
			c.killLocked(&CloseError{Code: ClosePolicyViolation, Reason: ReasonSlowConsumer}, 0, "")
			c.hub.event(EventClosed, c, ReasonSlowConsumer)
		}
		c.mu.Unlock()
	}
}

// encryptNowLocked is the direct write of a wss:// connection: it encrypts
// hdr and p, one small frame, as one record, and writes what the socket
// takes of the ciphertext. The rest waits in c.cio, behind an empty queue,
// so that the loops finish it on the next write edge. The frame is joined
// in a pooled buffer: tc.Write is a call through an interface, so a buffer
// on the stack would move to the heap, each call.
func (c *Conn) encryptNowLocked(hdr, p []byte) error {
	x := c.cio
	b := append(append(pbytes.GetCap(len(hdr)+len(p)), hdr...), p...)
	_, err := x.tc.Write(b)
	pbytes.Put(b)
	if err != nil {
		return err
	}
	done, err := x.send(c)
	if err == nil && !done {
		c.outLocked()
		c.writeQueueLocked() // the socket may have drained before schedOut was set
	}
	return err
}

// encryptLocked is the flush step of a wss:// connection. First the
// ciphertext the socket did not take; then up to a record's worth of the
// oldest frames, encrypted without the lock while they are marked in
// flight, as writevLocked marks the frames of its writev. It reports
// whether to go on: the socket took all the ciphertext it had.
func (c *Conn) encryptLocked(q *outQueue) (more bool, err error) {
	x := c.cio
	done, err := x.send(c)
	if err != nil || !done || q.len() == 0 {
		return done, err
	}
	plain, k, n, pooled := q.plaintext(tlsBatch)
	q.inflight, q.again = k, false
	c.mu.Unlock()
	_, err = x.tc.Write(plain)
	if pooled {
		pbytes.Put(plain)
	}
	c.mu.Lock()
	c.wroteQueuedLocked(q, n)
	return err == nil, err
}

// cipherLeftLocked reports whether ciphertext waits for c's socket.
func (c *Conn) cipherLeftLocked() bool {
	return c.transport() == viaTLS && c.cio.pending() > 0
}

// closeNotifyLocked sends TLS's close_notify before the write side is shut,
// if the socket takes it at once.
func (c *Conn) closeNotifyLocked() {
	if err := c.cio.tc.CloseWrite(); err == nil {
		c.cio.send(c)
	}
}

// ServeTLS is Serve for wss://: it accepts connections on ln, runs their TLS
// handshakes with cfg and upgrades them without net/http. The handshake runs
// on a goroutine of its own, at most Options.MaxHandshakes at once (the
// listener's backlog keeps the others waiting), within HandshakeTimeout;
// then the connection joins the loops, with no goroutine of its own, like a
// plain one. cfg must hold a certificate (Certificates, GetCertificate or
// GetConfigForClient); the hub offers ALPN "http/1.1" unless cfg.NextProtos
// names it. It returns like Serve.
func (h *Hub) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	return h.serve(ln, tlsConfig(cfg))
}

// ListenAndServeTLS listens on the TCP address addr and calls ServeTLS.
func (h *Hub) ListenAndServeTLS(addr string, cfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return h.ServeTLS(ln, cfg)
}

// tlsConfig returns the configuration the own listener serves with: cfg,
// cloned, offering ALPN "http/1.1" (WebSockets are upgraded over HTTP/1.1
// only).
func tlsConfig(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	if !slices.Contains(cfg.NextProtos, "http/1.1") {
		cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
	}
	return cfg
}

// startHandshake runs nc's TLS handshake on a goroutine, once fewer than
// MaxHandshakes run; it waits for that, and gives up when the hub closes.
func (h *Hub) startHandshake(nc net.Conn, cfg *tls.Config) {
	select {
	case h.handshakes <- struct{}{}:
	case <-h.ctx.Done():
		nc.Close()
		return
	}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.conns.Add(1) // Close and Shutdown wait for it
	}
	h.mu.Unlock()
	if closed {
		<-h.handshakes
		nc.Close()
		return
	}
	h.stats.handshaking.Add(1)
	go h.handshake(nc, cfg)
}

// handshake runs nc's TLS handshake and hands the connection to the loops,
// where its upgrade request is read.
func (h *Hub) handshake(nc net.Conn, cfg *tls.Config) {
	defer func() {
		h.stats.handshaking.Add(-1)
		<-h.handshakes
		h.conns.Add(-1) // after attach counted the connection, if it did
	}()
	x := newTransport(nc)
	tc := tls.Server(x, cfg)
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.HandshakeTimeout)
	err := tc.HandshakeContext(ctx) // closes nc if ctx ends first
	cancel()
	if err != nil {
		h.stats.handshakeErrors.Add(1)
		nc.Close()
		return
	}
	// The same takeover as a *tls.Conn of Hub.Listener's through
	// ServeHTTP: tc runs over x, whose socket the loops take.
	h.adopt(h.handshakingConn(nc.RemoteAddr()), tc, nil)
}
