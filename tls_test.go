package wshub

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// wss:// over real sockets, with crypto/tls clients, through both doors:
// net/http's ServeTLS (the hub upgrades the hijacked *tls.Conn) and the
// hub's own ServeTLS, on the loops and on the portable path.

var tlsDoors = doors[:4] // http, listener, http-portable, listener-portable

// testCertificate is a self-signed ECDSA P-256 certificate for 127.0.0.1,
// made once for the package's tests.
var testCertificate = sync.OnceValue(func() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
})

// quietLog keeps net/http's "TLS handshake error" lines, which the tests
// cause on purpose, out of the output.
var quietLog = log.New(io.Discard, "", 0)

func serverTLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCertificate()}}
}

// startTLSHub is startHub for wss://: the hub behind net/http's ServeTLS,
// or its own ServeTLS, on a free loopback port.
func startTLSHub(t testing.TB, opts *Options, d door) (*Hub, string) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	opts.portable = d.portable
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if d.own {
		done := make(chan error, 1)
		go func() { done <- h.ServeTLS(ln, serverTLSConfig()) }()
		t.Cleanup(func() {
			h.Close()
			if err := <-done; !errors.Is(err, ErrHubClosed) {
				t.Errorf("ServeTLS returned %v, want ErrHubClosed", err)
			}
		})
	} else {
		mux := http.NewServeMux()
		mux.Handle("/ws", h)
		srv := &http.Server{Handler: mux, TLSConfig: serverTLSConfig(), ErrorLog: quietLog}
		go srv.ServeTLS(ln, "", "")
		t.Cleanup(func() {
			srv.Close()
			h.Close()
		})
	}
	return h, ln.Addr().String()
}

// clientTLSConfig trusts the test certificate blindly and asks for
// http/1.1, as a browser's WebSocket does.
func clientTLSConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
}

// dialTLS connects to addr through raw, which carries the TCP connection
// (wrapped or not), and completes the TLS handshake with cfg.
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
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startTLSHub(t, rec.options(true), d)
			c := connectTLS(t, addr, clientTLSConfig(), nil)
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
	_, addr := startTLSHub(t, rec.options(true), doors[1])
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
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startTLSHub(t, rec.options(true), d)
			cfg := clientTLSConfig()
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
	go tls.Client(a, clientTLSConfig()).Handshake()
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
	for _, d := range []door{doors[1], doors[3]} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(true)
			opts.HandshakeTimeout = 500 * time.Millisecond
			h, addr := startTLSHub(t, opts, d)
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
			c := connectTLS(t, addr, clientTLSConfig(), nil)
			c.write(text("not blocked"))
			c.expectMessage(opText, "not blocked")
			for _, nc := range stalled {
				expectClosedWithin(t, nc, start, 300*time.Millisecond, 5*time.Second)
			}
			waitFor(t, func() bool { return h.Stats().Upgrading == 0 })
			if st := h.Stats(); st.Conns != 1 {
				t.Errorf("%d connections after the stalled handshakes, want 1", st.Conns)
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
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			h, addr := startTLSHub(t, rec.options(true), d)
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
			c := connectTLS(t, addr, clientTLSConfig(), nil)
			c.write(text("after the garbage"))
			c.expectMessage(opText, "after the garbage")
			if n := len(rec.opened); n != 1 {
				t.Errorf("%d connections opened, want the real client's only", n)
			}
			waitFor(t, func() bool { return h.Stats().Upgrading == 0 })
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
	for _, d := range doors[:2] {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startTLSHub(t, rec.options(true), d)
			c := connectTLS(t, addr, clientTLSConfig(), func(nc net.Conn) net.Conn { return byteWriter{nc} })
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

// TestTLSSlowlorisMidRecord: a client that sends part of a TLS record and
// stalls is a client that sent part of a frame: on the loops, where the hub
// reads the ciphertext itself, it is closed at ReadTimeout, and the
// ciphertext it left is not held for ever. On the portable path
// crypto/tls's Read waits inside the record where the hub cannot see it:
// the heartbeat closes such a peer.
func TestTLSSlowlorisMidRecord(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(true)
			if d.portable {
				opts.PingInterval = 300 * time.Millisecond
				opts.PongTimeout = 300 * time.Millisecond
			} else {
				opts.ReadTimeout = 500 * time.Millisecond
				opts.PingInterval = -1 // the heartbeat would close it too, later
			}
			_, addr := startTLSHub(t, opts, d)
			var raw net.Conn
			c := connectTLS(t, addr, clientTLSConfig(), func(nc net.Conn) net.Conn { raw = nc; return nc })
			c.write(text("before"))
			c.expectMessage(opText, "before")
			// An application-data record header announcing 16 KiB, and
			// a tenth of it.
			partial := append([]byte{0x17, 0x03, 0x03, 0x40, 0x00}, make([]byte, 1600)...)
			if _, err := raw.Write(partial); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			expectClosedWithin(t, raw, start, 300*time.Millisecond, 5*time.Second)
			rec.waitClosed(t)
		})
	}
}

// TestTLSSlowConsumer: a client that never reads while the hub sends to it
// over wss://: its queue stays within MaxQueuedBytes whatever TLS buffers,
// and the slow-consumer policy applies as on plain connections.
func TestTLSSlowConsumer(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name+"/close", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 256 << 10
			opts.CloseTimeout = 300 * time.Millisecond // the close frame cannot go out
			h, addr := startTLSHub(t, opts, d)
			connectTLS(t, addr, clientTLSConfig(), nil) // never reads
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
			h, addr := startTLSHub(t, opts, d)
			c := connectTLS(t, addr, clientTLSConfig(), nil)
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

// recordReader is a net.Conn that keeps what it reads, to look at the TLS
// records the hub sent.
type recordReader struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recordReader) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got = append(r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// recordTypes splits b into TLS records and returns their content types.
func recordTypes(b []byte) []byte {
	var types []byte
	for len(b) >= 5 {
		n := 5 + int(binary.BigEndian.Uint16(b[3:5]))
		if n > len(b) {
			break
		}
		types = append(types, b[0])
		b = b[n:]
	}
	return types
}

// TestTLSShutdownSendsCloseNotify: Shutdown sends the close frame, then
// ends the TLS session with close_notify before closing the socket. TLS 1.2
// leaves the record type in the clear: the last record must be an alert.
func TestTLSShutdownSendsCloseNotify(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			h, addr := startTLSHub(t, rec.options(true), d)
			cfg := clientTLSConfig()
			cfg.MaxVersion = tls.VersionTLS12
			var rr *recordReader
			c := connectTLS(t, addr, cfg, func(nc net.Conn) net.Conn { rr = &recordReader{Conn: nc}; return rr })
			c.write(text("hi"))
			c.expectMessage(opText, "hi")
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				done <- h.Shutdown(ctx)
			}()
			c.expectClose(CloseGoingAway) // answers it, then reads to EOF
			if err := <-done; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			rr.mu.Lock()
			types := recordTypes(rr.got)
			rr.mu.Unlock()
			if len(types) == 0 || types[len(types)-1] != 21 {
				t.Errorf("record types from the hub %v, want the last an alert (21): close_notify", types)
			}
		})
	}
}

// The idle-memory measurement over wss://: this test binary is started
// again as a client process with tlsClientEnv set to the hub's address.
// It speaks the protocol of clientProcess (a total per line on stdin, "ok
// N" back) and holds upgraded TLS connections, reading nothing.
const tlsClientEnv = "WSHUB_TLS_CLIENT"

func init() {
	// Before TestMain: the client process runs no tests.
	if addr := os.Getenv(tlsClientEnv); addr != "" {
		os.Exit(tlsClientProcess(addr))
	}
}

func tlsClientProcess(addr string) int {
	req := []byte(upgradeRequest(addr))
	cfg := clientTLSConfig()
	var conns []net.Conn
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		want, err := strconv.Atoi(strings.TrimSpace(in.Text()))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		for len(conns) < want {
			batch := min(want-len(conns), 100)
			got := make([]net.Conn, batch)
			var wg sync.WaitGroup
			for i := range got {
				wg.Go(func() { got[i] = dialUpgradedTLS(addr, cfg, req) })
			}
			wg.Wait()
			for _, c := range got {
				if c == nil {
					fmt.Println("error dial failed")
					return 1
				}
				conns = append(conns, c)
			}
		}
		fmt.Println("ok", len(conns))
	}
	return 0
}

func dialUpgradedTLS(addr string, cfg *tls.Config, req []byte) net.Conn {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 101 {
		c.Close()
		return nil
	}
	c.SetDeadline(time.Time{})
	return c
}

// measureIdleTLS is measureIdle over wss://.
func measureIdleTLS(tb testing.TB, d door, opts *Options, counts []int) []memPoint {
	h, addr := startTLSHub(tb, opts, d)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), tlsClientEnv+"="+addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	out := bufio.NewScanner(stdout)
	var points []memPoint
	for _, n := range counts {
		holdClients(tb, h, stdin, out, n)
		// Handshake goroutines, if any, exit once their connection is
		// on the loops; give them the time, then collect twice and hand
		// freed pages back (see measureIdle).
		waitGoroutinesSettle()
		debug.FreeOSMemory()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		points = append(points, memPoint{
			conns:      n,
			rss:        float64(readRSS(tb)),
			heap:       float64(ms.HeapAlloc),
			goroutines: runtime.NumGoroutine(),
		})
	}
	return points
}

// waitGoroutinesSettle waits until the goroutine count has not moved for
// 100 ms, or 3 s have passed.
func waitGoroutinesSettle() {
	deadline := time.Now().Add(3 * time.Second)
	last := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == last {
			return
		}
		last = n
	}
}

// TestTLSIdleConnsNoGoroutines: 200 idle wss:// connections, held by
// another process, cost the hub no goroutine each once their handshakes
// are over, on both doors: the TLS connection lives on the loops.
func TestTLSIdleConnsNoGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a client process")
	}
	for _, d := range doors[:2] {
		t.Run(d.name, func(t *testing.T) {
			points := measureIdleTLS(t, d, &Options{}, []int{10, 210})
			_, heap, g := idleSlopes(points)
			t.Logf("%s: %d goroutines at %d conns, %d at %d; heap %.0f B/conn", d.name,
				points[0].goroutines, points[0].conns, points[1].goroutines, points[1].conns, heap)
			if g > 0.02 {
				t.Errorf("%s: %.2f goroutines per idle wss:// connection, want 0", d.name, g)
			}
		})
	}
}

// BenchmarkIdleMemoryTLS is BenchmarkIdleMemory over wss:// (ECDSA P-256,
// TLS 1.3, clients in another process): RSS and heap per idle connection
// as the slope over 2k to 8k connections, and goroutines per connection.
// One iteration is the whole ramp: -benchtime=1x.
func BenchmarkIdleMemoryTLS(b *testing.B) {
	counts := []int{2000, 4000, 6000, 8000}
	for _, d := range doors[:2] {
		b.Run(d.name, func(b *testing.B) {
			for range b.N {
				points := measureIdleTLS(b, d, &Options{}, counts)
				rss, heap, g := idleSlopes(points)
				for _, p := range points {
					b.Logf("%s conns=%d rss=%.0f heap=%.0f goroutines=%d", d.name, p.conns, p.rss, p.heap, p.goroutines)
				}
				b.ReportMetric(rss, "rss-bytes/conn")
				b.ReportMetric(heap, "heap-bytes/conn")
				b.ReportMetric(g, "goroutines/conn")
			}
		})
	}
}
