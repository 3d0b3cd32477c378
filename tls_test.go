package wshub

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wss:// over real sockets, with crypto/tls clients, through both doors:
// net/http's ServeTLS (the hub upgrades the hijacked *tls.Conn) and the
// hub's own ServeTLS, on the loops and on the portable path.

// tlsAllDoors are the wss:// doors, on the loops (helpers_test.go's https,
// over Hub.Listener, and listener-tls) and on the portable path: forced
// (Options.portable), or net/http's ServeTLS over a bare listener.
var tlsAllDoors = []door{
	doorNamed("https"),
	doorNamed("listener-tls"),
	{name: "https-portable", tls: true, portable: true},
	{name: "listener-tls-portable", own: true, tls: true, portable: true},
	httpsForeign,
}

// httpsForeign is net/http's ServeTLS over the listener itself, not
// Hub.Listener: the hub gets *tls.Conns it cannot take onto the loops.
var httpsForeign = door{name: "https-foreign", tls: true, foreign: true}

// tlsOwnDoors are the doors whose TLS handshakes the hub runs (ServeTLS):
// net/http runs the others'.
var tlsOwnDoors = []door{tlsAllDoors[1], tlsAllDoors[3]}

// dialTLS connects to addr, through wrap's net.Conn around the TCP
// connection if wrap is set, and completes the TLS handshake with cfg.
func dialTLS(t testing.TB, addr string, cfg *tls.Config, wrap func(net.Conn) net.Conn) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	var raw net.Conn = nc
	if wrap != nil {
		raw = wrap(nc)
	}
	tc := tls.Client(raw, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	return &client{t: t, nc: tc, br: bufio.NewReader(tc)}
}

// connectTLS dials addr over TLS and upgrades.
func connectTLS(t testing.TB, addr string, cfg *tls.Config, wrap func(net.Conn) net.Conn) *client {
	t.Helper()
	c := dialTLS(t, addr, cfg, wrap)
	c.write([]byte(upgradeRequest(addr)))
	if status := c.readResponse(); status != 101 {
		t.Fatalf("upgrade status %d, want 101", status)
	}
	return c
}

// TestTLSEcho: messages both ways over wss://, ALPN http/1.1, and the close
// handshake, through every door.
func TestTLSEcho(t *testing.T) {
	t.Parallel()
	for _, d := range tlsAllDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c := connectTLS(t, addr, clientTLS(), nil)
			if p := c.nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "http/1.1" {
				t.Errorf("ALPN %q, want http/1.1", p)
			}
			big := strings.Repeat("wss ", 40<<10) // 160 KiB: ten TLS records
			c.write(text("hello"))
			c.expectMessage(opText, "hello")
			c.write(clientFrame(true, opBinary, []byte(big), true))
			c.expectMessage(opBinary, big)
			c.write(clientFrame(true, opClose, closeBody(4000, "bye"), true))
			f := c.readFrame()
			if f.op != opClose || CloseCode(binary.BigEndian.Uint16(f.payload)) != 4000 {
				t.Fatalf("got op %d %q, want the close 4000 echoed", f.op, f.payload)
			}
			c.expectEOF()
			if e := rec.waitClosed(t).err; e.Code != 4000 {
				t.Errorf("OnClose got %v, want 4000", e)
			}
		})
	}
}

// TestTLSALPN: the own listener offers http/1.1 whatever the client offers
// beside it, and serves clients that offer no ALPN at all.
func TestTLSALPN(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	_, addr := startHub(t, rec.options(true), doorNamed("listener-tls"))
	for _, offer := range [][]string{{"h2", "http/1.1"}, nil} {
		cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: offer}
		c := connectTLS(t, addr, cfg, nil)
		want := "http/1.1"
		if offer == nil {
			want = ""
		}
		if p := c.nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != want {
			t.Errorf("offer %q: ALPN %q, want %q", offer, p, want)
		}
		c.write(text("alpn"))
		c.expectMessage(opText, "alpn")
	}
}

// TestTLSSessionResumption: a client that kept the session ticket of its
// first connection resumes it on the second, on both doors.
func TestTLSSessionResumption(t *testing.T) {
	t.Parallel()
	for _, d := range tlsAllDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			cfg := clientTLS()
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			first := connectTLS(t, addr, cfg, nil)
			// TLS 1.3 tickets come after the handshake: reading an echo
			// makes the client process them.
			first.write(text("ticket"))
			first.expectMessage(opText, "ticket")
			first.nc.Close()
			second := connectTLS(t, addr, cfg, nil)
			if !second.nc.(*tls.Conn).ConnectionState().DidResume {
				t.Error("the second connection did not resume the first's session")
			}
			second.write(text("resumed"))
			second.expectMessage(opText, "resumed")
		})
	}
}

// rawPrefix returns the first n bytes a crypto/tls client sends: the start
// of a real ClientHello.
func rawPrefix(t *testing.T, n int) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, clientTLS()).Handshake()
	buf := make([]byte, n)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	return buf
}

// expectClosedWithin checks that the hub closes nc, which the test holds
// silent, no sooner than min and within max; anything the hub sends before
// is read and dropped (an alert).
func expectClosedWithin(t *testing.T, nc net.Conn, start time.Time, min, max time.Duration) {
	t.Helper()
	nc.SetReadDeadline(start.Add(max))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the hub did not close the connection within %v", max)
	}
	if took := time.Since(start); took < min {
		t.Fatalf("the hub closed the connection after %v, before %v", took, min)
	}
}

// TestTLSHandshakeSlowloris: a client that sends part of a ClientHello and
// stalls is closed at HandshakeTimeout, and the hub serves others meanwhile.
// net/http's door leaves this to http.Server (ReadHeaderTimeout bounds its
// TLS handshake).
func TestTLSHandshakeSlowloris(t *testing.T) {
	t.Parallel()
	for _, d := range tlsOwnDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(true)
			opts.HandshakeTimeout = 500 * time.Millisecond
			h, addr := startHub(t, opts, d)
			hello := rawPrefix(t, 40) // the record header and some of the hello
			var stalled []net.Conn
			for range 5 {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				if _, err := nc.Write(hello); err != nil {
					t.Fatal(err)
				}
				stalled = append(stalled, nc)
			}
			start := time.Now()
			c := connectTLS(t, addr, clientTLS(), nil)
			c.write(text("not blocked"))
			c.expectMessage(opText, "not blocked")
			for _, nc := range stalled {
				expectClosedWithin(t, nc, start, 300*time.Millisecond, 5*time.Second)
			}
			waitFor(t, func() bool { return h.Stats().Handshaking == 0 && h.Stats().Upgrading == 0 })
			if st := h.Stats(); st.Conns != 1 || st.HandshakeErrors != 5 {
				t.Errorf("after the stalled handshakes: %d connections, %d handshake errors; want 1, 5", st.Conns, st.HandshakeErrors)
			}
		})
	}
}

// TestTLSGarbageInsteadOfClientHello: peers that send plain HTTP, random
// bytes or a TLS record header with an absurd length are closed; nothing
// panics and the hub serves a real client afterwards.
func TestTLSGarbageInsteadOfClientHello(t *testing.T) {
	t.Parallel()
	garbage := map[string][]byte{
		"plain http":     []byte(upgradeRequest("127.0.0.1")),
		"random":         func() []byte { b := make([]byte, 4096); rand.Read(b); return b }(),
		"huge record":    {0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff, 0xfb},
		"not a hello":    {0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}, // a ServerHello
		"alert first":    {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28},
		"zero length":    {0x16, 0x03, 0x01, 0x00, 0x00},
		"sslv2-like ish": {0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00},
	}
	for _, d := range tlsAllDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			h, addr := startHub(t, rec.options(true), d)
			for name, b := range garbage {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				nc.Write(b)
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = io.Copy(io.Discard, nc)
				nc.Close()
				if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("%s: the connection is still open after 5 s", name)
				}
			}
			c := connectTLS(t, addr, clientTLS(), nil)
			c.write(text("after the garbage"))
			c.expectMessage(opText, "after the garbage")
			if n := len(rec.opened); n != 1 {
				t.Errorf("%d connections opened, want the real client's only", n)
			}
			waitFor(t, func() bool { return h.Stats().Upgrading == 0 && h.Stats().Handshaking == 0 })
			if st := h.Stats(); d.own && st.HandshakeErrors != uint64(len(garbage)) {
				t.Errorf("%d handshake errors, want %d", st.HandshakeErrors, len(garbage))
			}
		})
	}
}

// byteWriter is a net.Conn that writes one byte per write, pausing between
// them, so that the hub reads TLS records in pieces of any size.
type byteWriter struct{ net.Conn }

func (w byteWriter) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := w.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
		if i%16 == 0 {
			time.Sleep(20 * time.Microsecond)
		}
	}
	return len(p), nil
}

// TestTLSRecordByteByByte: the client's ciphertext, handshake included,
// arrives a byte at a time; messages still arrive whole, a small one and
// one of two records.
func TestTLSRecordByteByByte(t *testing.T) {
	t.Parallel()
	for _, d := range tlsAllDoors[:2] {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c := connectTLS(t, addr, clientTLS(), func(nc net.Conn) net.Conn { return byteWriter{nc} })
			small := "split byte by byte"
			big := strings.Repeat("0123456789abcdef", 1200) // 19,200 bytes: two records
			c.write(text(small))
			c.write(clientFrame(true, opBinary, []byte(big), true))
			if m := rec.waitMessage(t); m.typ != Text || m.data != small {
				t.Fatalf("OnMessage got %v %q", m.typ, trim([]byte(m.data)))
			}
			if m := rec.waitMessage(t); m.typ != Binary || m.data != big {
				t.Fatalf("OnMessage got %v of %d bytes, want the %d-byte binary", m.typ, len(m.data), len(big))
			}
			c.expectMessage(opText, small)
			c.expectMessage(opBinary, big)
		})
	}
}

// TestTLSSlowlorisMidRecordPortable: on the portable path crypto/tls's
// Read waits inside a partial record, where the hub cannot see it (on the
// loops TestTLSPartialRecord has ReadTimeout close such a peer): the
// heartbeat closes it.
func TestTLSSlowlorisMidRecordPortable(t *testing.T) {
	t.Parallel()
	for _, d := range tlsAllDoors[2:] {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(true)
			opts.PingInterval = 300 * time.Millisecond
			opts.PongTimeout = 300 * time.Millisecond
			_, addr := startHub(t, opts, d)
			var raw net.Conn
			c := connectTLS(t, addr, clientTLS(), func(nc net.Conn) net.Conn { raw = nc; return nc })
			c.write(text("before"))
			c.expectMessage(opText, "before")
			// An application-data record header announcing 16 KiB, and
			// a tenth of it.
			partial := append([]byte{0x17, 0x03, 0x03, 0x40, 0x00}, make([]byte, 1600)...)
			if _, err := raw.Write(partial); err != nil {
				t.Fatal(err)
			}
			expectClosedWithin(t, raw, time.Now(), 300*time.Millisecond, 5*time.Second)
			if e := rec.waitClosed(t).err; e.Reason != ReasonPongTimeout {
				t.Errorf("OnClose got %v, want a pong timeout", e)
			}
		})
	}
}

// TestTLSMaxHandshakes: with MaxHandshakes handshakes stalled, the next
// client waits in the backlog until HandshakeTimeout frees a slot, then is
// served; no more than MaxHandshakes run at once.
func TestTLSMaxHandshakes(t *testing.T) {
	t.Parallel()
	for _, d := range tlsOwnDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(true)
			opts.MaxHandshakes = 2
			opts.HandshakeTimeout = 600 * time.Millisecond
			h, addr := startHub(t, opts, d)
			hello := rawPrefix(t, 40)
			for range 2 {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				nc.Write(hello)
			}
			waitFor(t, func() bool { return h.Stats().Handshaking == 2 })
			stop := make(chan struct{})
			most := make(chan int, 1)
			go func() {
				m := 0
				for {
					select {
					case <-stop:
						most <- m
						return
					default:
					}
					m = max(m, h.Stats().Handshaking)
					time.Sleep(time.Millisecond)
				}
			}()
			start := time.Now()
			c := connectTLS(t, addr, clientTLS(), nil)
			took := time.Since(start)
			close(stop)
			c.write(text("served"))
			c.expectMessage(opText, "served")
			if took < 300*time.Millisecond {
				t.Errorf("the third handshake took %v: it did not wait for a slot", took)
			}
			if m := <-most; m > 2 {
				t.Errorf("%d handshakes at once, MaxHandshakes 2", m)
			}
		})
	}
}

// TestTLSSlowConsumer: a client that never reads while the hub sends to it
// over wss://: its queue stays within MaxQueuedBytes whatever TLS buffers,
// and the slow-consumer policy applies as on plain connections.
func TestTLSSlowConsumer(t *testing.T) {
	t.Parallel()
	for _, d := range tlsAllDoors {
		t.Run(d.name+"/close", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 256 << 10
			opts.CloseTimeout = 300 * time.Millisecond // the close frame cannot go out
			h, addr := startHub(t, opts, d)
			connectTLS(t, addr, clientTLS(), nil) // never reads
			conn := <-rec.opened
			chunk := make([]byte, 16<<10)
			var err error
			for i := 0; err == nil; i++ {
				if i == 10000 { // 160 MB: far more than socket buffers hold
					t.Fatal("10,000 writes of 16 KiB to a client that does not read, and no slow consumer")
				}
				err = conn.WriteMessage(Binary, chunk)
				if q := conn.queued(); q > opts.MaxQueuedBytes {
					t.Fatalf("queued %d bytes, bound %d", q, opts.MaxQueuedBytes)
				}
			}
			if !errors.Is(err, ErrSlowConsumer) {
				t.Fatalf("write failed with %v, want ErrSlowConsumer", err)
			}
			e := rec.waitClosed(t).err
			if e.Code != ClosePolicyViolation || e.Reason != "slow consumer" {
				t.Errorf("OnClose got %v, want 1008 slow consumer", e)
			}
			if st := h.Stats(); st.Reasons["slow consumer"] != 1 {
				t.Errorf("reasons %v", st.Reasons)
			}
			waitFor(t, func() bool { return h.Stats().QueuedBytes == 0 })
		})
		t.Run(d.name+"/drop-oldest", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 256 << 10
			opts.SlowConsumer = SlowDropOldest
			h, addr := startHub(t, opts, d)
			c := connectTLS(t, addr, clientTLS(), nil)
			conn := <-rec.opened
			h.Channel("feed").Subscribe(conn)
			const total = 2000 // 32 MB
			pad := make([]byte, 16<<10)
			for i := range total {
				h.Channel("feed").Publish(Binary, append(fmt.Appendf(nil, "%06d", i), pad...))
				if q := conn.queued(); q > opts.MaxQueuedBytes {
					t.Fatalf("queued %d bytes, bound %d", q, opts.MaxQueuedBytes)
				}
			}
			prev, received := -1, 0
			for prev != total-1 {
				f := c.readFrame()
				n, _ := strconv.Atoi(string(f.payload[:6]))
				if n <= prev {
					t.Fatalf("message %d after %d", n, prev)
				}
				prev = n
				received++
			}
			st := h.Stats()
			if st.Dropped == 0 || int(st.Dropped)+received != total || len(rec.closed) != 0 {
				t.Errorf("%d dropped + %d received, want %d; %d closed", st.Dropped, received, total, len(rec.closed))
			}
		})
	}
}
