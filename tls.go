package wshub

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
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
// handshake), so it runs on a goroutine of its own over the blocking socket:
// on the own listener ServeTLS runs it, at most MaxHandshakes at once within
// HandshakeTimeout; on the ServeHTTP door net/http has run it before the
// hijack, and the hub swaps the transport under the *tls.Conn it gets.
//
// At rest a tls.Conn keeps its read buffers at the largest size they ever
// had (rawInput, the ciphertext of the record being read, and hand, the
// handshake message being read: together 3.5 KB after a handshake with a
// post-quantum key share, 17 KB after one large record). The hub empties
// them when they hold nothing, which leaves 3.2 KB of heap a connection,
// 2.9 KB of it crypto/tls's own: the tls.Conn (896 bytes), its two AES-GCM
// states (896 bytes each) and its secrets. crypto/tls offers no way to
// reach the buffers, so the hub finds them by reflection, checks their
// types, and does without where they differ: see tlsLayout.

// tlsLayout locates the fields of tls.Conn the hub touches: conn, the
// transport, and rawInput and hand, the read buffers. If a future crypto/tls
// renames or retypes one, ok is false: TLS connections of the ServeHTTP door
// then take the portable path, and those of ServeTLS keep their buffers.
var tlsLayout = func() (l struct {
	ok                   bool
	conn, rawInput, hand uintptr
}) {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, want reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && f.Type == want && len(f.Index) == 1
	}
	var ok1, ok2, ok3 bool
	l.conn, ok1 = field("conn", reflect.TypeFor[net.Conn]())
	l.rawInput, ok2 = field("rawInput", reflect.TypeFor[bytes.Buffer]())
	l.hand, ok3 = field("hand", reflect.TypeFor[bytes.Buffer]())
	l.ok = ok1 && ok2 && ok3
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
// next read, with more ciphertext, goes on where this one stopped.
var errWouldBlock error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "wshub: no ciphertext yet" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

// connIO is what a connection needs besides a plain socket on the loops.
//
// On the portable path it is the net.Conn its goroutine reads (nc). On a
// wss:// connection on the loops it is the transport under tc: nc is the
// socket until the handshake ends, then nil, and the loops move the
// ciphertext through in and out. The connection's owner alone touches in,
// held and charged; out is guarded by mu, since both the owner (answering a
// key update) and writers append to it. 96 bytes.
type connIO struct {
	nc net.Conn
	tc *tls.Conn

	in      []byte // ciphertext read, from inOff, and not yet taken by tc
	inOff   int32
	held    bool  // in is a pooled copy, charged, kept while the connection waits for the budget
	charged int32 // bytes of the budget charged for tc's buffers: a partial record

	mu  sync.Mutex
	off int32  // out's bytes already written
	out []byte // pooled: ciphertext tc made that the socket has not taken
}

func (x *connIO) Read(p []byte) (int, error) {
	if x.nc != nil {
		return x.nc.Read(p) // the handshake
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
		return x.nc.Write(p) // the handshake
	}
	x.mu.Lock()
	if x.out == nil {
		x.out = pbytes.GetCap(max(len(p), 4<<10))
	}
	x.out = append(x.out, p...)
	x.mu.Unlock()
	return len(p), nil
}

// Close closes the socket during the handshake (tls.Conn does so when its
// context ends); after it the hub closes the descriptor itself.
func (x *connIO) Close() error {
	if x.nc != nil {
		return x.nc.Close()
	}
	return nil
}

func (x *connIO) LocalAddr() net.Addr {
	if x.nc != nil {
		return x.nc.LocalAddr()
	}
	return nil
}

func (x *connIO) RemoteAddr() net.Addr {
	if x.nc != nil {
		return x.nc.RemoteAddr()
	}
	return nil
}

// The deadlines are the hub's own after the handshake (see Poller.sweep).

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

// takeTLS moves a *tls.Conn that net/http handshook and hijacked onto the
// loops: it puts a connIO under it in place of its socket, whose descriptor
// the hub takes. It reports false, leaving tc as it was, where it cannot.
func takeTLS(tc *tls.Conn) (fd int, x *connIO, ok bool) {
	if !tlsLayout.ok || !tc.ConnectionState().HandshakeComplete {
		return -1, nil, false
	}
	raw := tc.NetConn()
	x = &connIO{tc: tc}
	conn := (*net.Conn)(unsafe.Add(unsafe.Pointer(tc), tlsLayout.conn))
	*conn = x
	if fd, ok = takeFD(raw); !ok {
		*conn = raw
		return -1, nil, false
	}
	return fd, x, true
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
		if err == errWouldBlock {
			c.restTLS()
			return true
		}
		// io.EOF is the peer's close_notify; anything else a TLS alert or
		// a record that does not decrypt.
		c.finish(lostError(err))
		return false
	}
	return false
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
// b, one small frame, as one record, and writes what the socket takes of
// the ciphertext. The rest waits in c.cio, behind an empty queue, so that
// the loops finish it on the next write edge.
func (c *Conn) encryptNowLocked(b []byte) error {
	x := c.cio
	if _, err := x.tc.Write(b); err != nil {
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
	x := &connIO{nc: nc}
	tc := tls.Server(x, cfg)
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.HandshakeTimeout)
	err := tc.HandshakeContext(ctx) // closes nc if ctx ends first
	cancel()
	if err != nil {
		h.stats.handshakeErrors.Add(1)
		nc.Close()
		return
	}
	c := h.handshakingConn(nc.RemoteAddr())
	if !h.opts.portable {
		if fd, ok := takeFD(nc); ok {
			x.nc, x.tc = nil, tc
			c.fd, c.cio = int32(fd), x
		}
	}
	if c.fd < 0 {
		c.cio = &connIO{nc: tc}
	}
	if err := h.attach(c); err != nil {
		if c.fd >= 0 {
			sysClose(int(c.fd))
		} else {
			tc.Close()
		}
		c.dropReader()
	}
}
