package wshub

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain fails the run if any goroutine of the package outlives the tests:
// every test closes its hubs, and Close and Shutdown must leave nothing.
func TestMain(m *testing.M) {
	if os.Getenv(clientProcessEnv) != "" {
		os.Exit(clientProcess())
	}
	code := m.Run()
	if code == 0 {
		if leaked := waitNoHubGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// hubGoroutines returns the stacks of goroutines running the hub's code.
func hubGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "wshub.(*") && !strings.Contains(g, "testing.tRunner") &&
			!strings.Contains(g, "wshub.hubGoroutines") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func waitNoHubGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		s := hubGoroutines()
		if s == "" || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// door is one way into a hub: net/http or the hub's own listener, on the
// netpoll path or the portable one, or ServeConn after an accept loop of the
// test's (handoff). own is set where the hub parses the request itself.
type door struct {
	name     string
	own      bool
	portable bool
	tls      bool // wss://: http.Server.ServeTLS over Hub.Listener, or Hub.ServeTLS with own
	foreign  bool // with tls and not own: http.Server.ServeTLS over the bare listener, whose *tls.Conns take the portable path
	handoff  handoff
}

// handoff is what an accept loop hands ServeConn.
type handoff uint8

const (
	handoffNone    handoff = iota
	handoffRequest         // the request as net/http's reader parses it, and the bytes buffered past it
	handoffBytes           // the bytes of the first read, raw
)

var doors = []door{
	{name: "http"},
	{name: "listener", own: true},
	{name: "http-portable", portable: true},
	{name: "listener-portable", own: true, portable: true},
	{name: "conn-request", handoff: handoffRequest},
	{name: "conn-bytes", own: true, handoff: handoffBytes},
	{name: "https", tls: true},
	{name: "listener-tls", own: true, tls: true},
}

// testCert is a self-signed certificate for 127.0.0.1, made once.
var testCert = sync.OnceValue(func() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wshub test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
})

func serverTLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCert()}}
}

// tlsAddrs holds the addresses of the hubs served over TLS, which dial
// reaches with a TLS client.
var tlsAddrs sync.Map

// dialNet connects to addr, with TLS if a TLS door serves it.
func dialNet(addr string) (net.Conn, error) {
	if _, ok := tlsAddrs.Load(addr); ok {
		return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	}
	return net.Dial("tcp", addr)
}

// startHub serves a new hub through d on a free loopback port and returns it
// with its address. The hub and server are closed when the test ends.
func startHub(t testing.TB, opts *Options, d door) (*Hub, string) {
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
	if d.handoff != handoffNone {
		done := make(chan struct{})
		go func() { serveHandoffs(h, ln, d.handoff); close(done) }()
		t.Cleanup(func() {
			ln.Close()
			<-done
			h.Close()
		})
	} else if d.own {
		done := make(chan error, 1)
		if d.tls {
			tlsAddrs.Store(ln.Addr().String(), true)
			go func() { done <- h.ServeTLS(ln, serverTLSConfig()) }()
		} else {
			go func() { done <- h.Serve(ln) }()
		}
		t.Cleanup(func() {
			h.Close()
			tlsAddrs.Delete(ln.Addr().String())
			if err := <-done; !errors.Is(err, ErrHubClosed) {
				t.Errorf("Serve returned %v, want ErrHubClosed", err)
			}
		})
	} else {
		mux := http.NewServeMux()
		mux.Handle("/ws", h)
		srv := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
		if d.tls {
			tlsAddrs.Store(ln.Addr().String(), true)
			srv.TLSConfig = serverTLSConfig()
			tln := h.Listener(ln)
			if d.foreign {
				tln = ln
			}
			go srv.ServeTLS(tln, "", "")
		} else {
			go srv.Serve(ln)
		}
		t.Cleanup(func() {
			srv.Close()
			h.Close()
			tlsAddrs.Delete(ln.Addr().String())
		})
	}
	return h, ln.Addr().String()
}

// serveHandoffs accepts connections on ln, as a server other than the hub
// would, and hands each to h.ServeConn: the request parsed by net/http's
// reader, or the raw bytes of the first read. It returns when ln is closed
// and every hand-off has returned.
func serveHandoffs(h *Hub, ln net.Listener, how handoff) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			if how == handoffBytes {
				buf := make([]byte, 4096)
				n, err := nc.Read(buf)
				if err != nil {
					nc.Close()
					return
				}
				h.ServeConn(nc, nil, buf[:n])
				return
			}
			br := bufio.NewReader(nc)
			r, err := http.ReadRequest(br)
			if err != nil {
				nc.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
				nc.Close()
				return
			}
			r.RemoteAddr = nc.RemoteAddr().String()
			buffered, _ := br.Peek(br.Buffered())
			h.ServeConn(nc, r, buffered)
		})
	}
}

// recorder collects callbacks on channels.
type recorder struct {
	opened   chan *Conn
	messages chan message
	closed   chan closed
}

type message struct {
	c    *Conn
	typ  MessageType
	data string
}

type closed struct {
	c   *Conn
	err *CloseError
}

func newRecorder() *recorder {
	return &recorder{
		opened:   make(chan *Conn, 1024),
		messages: make(chan message, 1024),
		closed:   make(chan closed, 1024),
	}
}

// options returns Options whose callbacks feed r; echo makes every message
// come back to its sender.
func (r *recorder) options(echo bool) *Options {
	return &Options{
		OnOpen: func(c *Conn) { r.opened <- c },
		OnMessage: func(c *Conn, typ MessageType, data []byte) {
			if echo {
				c.WriteMessage(typ, data)
			}
			r.messages <- message{c, typ, string(data)}
		},
		OnClose: func(c *Conn, err *CloseError) { r.closed <- closed{c, err} },
	}
}

func (r *recorder) waitClosed(t testing.TB) closed {
	t.Helper()
	select {
	case e := <-r.closed:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose was not called")
	}
	return closed{}
}

func (r *recorder) waitMessage(t testing.TB) message {
	t.Helper()
	select {
	case m := <-r.messages:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("OnMessage was not called")
	}
	return message{}
}

// client is a raw RFC 6455 client that sends exactly the bytes a test asks
// for, valid or not.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

func upgradeRequest(addr string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", addr)
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", testKey)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// dial connects to addr without upgrading.
func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := dialNet(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// connect dials addr and upgrades, sending first after the request in the
// same write.
func connect(t testing.TB, addr string, first ...[]byte) *client {
	t.Helper()
	c := dial(t, addr)
	req := []byte(upgradeRequest(addr))
	for _, f := range first {
		req = append(req, f...)
	}
	c.write(req)
	if status := c.readResponse(); status != 101 {
		t.Fatalf("upgrade status %d, want 101", status)
	}
	return c
}

func (c *client) write(p []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(p); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readResponse reads an HTTP response head and returns its status.
func (c *client) readResponse() int {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != 101 {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp.StatusCode
}

// clientFrame encodes a client frame; a client must mask, which mask=false
// breaks on purpose.
func clientFrame(fin bool, op byte, payload []byte, mask bool) []byte {
	b := []byte{op, 0}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b[1] = byte(n)
	case n <= 0xffff:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	b[1] |= 0x80
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key[:]...)
	for i, x := range payload {
		b = append(b, x^key[i%4])
	}
	return b
}

func text(s string) []byte { return clientFrame(true, opText, []byte(s), true) }

// serverFrame is a frame read from the hub.
type serverFrame struct {
	fin     bool
	rsv1    bool // compressed (permessage-deflate)
	op      byte
	payload []byte
}

// readFrame reads one frame, failing the test on timeout.
func (c *client) readFrame() serverFrame {
	c.t.Helper()
	f, err := c.tryReadFrame(10 * time.Second)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

func (c *client) tryReadFrame(d time.Duration) (serverFrame, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	var h [10]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return serverFrame{}, err
	}
	if h[1]&0x80 != 0 {
		return serverFrame{}, errors.New("server frame is masked")
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, h[2:4]); err != nil {
			return serverFrame{}, err
		}
		n = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(c.br, h[2:10]); err != nil {
			return serverFrame{}, err
		}
		n = int64(binary.BigEndian.Uint64(h[2:10]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return serverFrame{}, err
	}
	return serverFrame{fin: h[0]&0x80 != 0, rsv1: h[0]&rsv1 != 0, op: h[0] & 0xf, payload: p}, nil
}

// expectMessage reads a frame and checks it is a final frame of op with want.
func (c *client) expectMessage(op byte, want string) {
	c.t.Helper()
	f := c.readFrame()
	if !f.fin || f.op != op || string(f.payload) != want {
		c.t.Fatalf("got frame fin=%v op=%d %q, want final op=%d %q", f.fin, f.op, trim(f.payload), op, trim([]byte(want)))
	}
}

// expectClose reads frames until a close frame and checks its code, then
// checks that the hub closes the TCP connection.
func (c *client) expectClose(want CloseCode) string {
	c.t.Helper()
	for {
		f := c.readFrame()
		if f.op != opClose {
			continue
		}
		if len(f.payload) < 2 {
			c.t.Fatalf("close frame without code, want %d", want)
		}
		got := CloseCode(binary.BigEndian.Uint16(f.payload))
		if got != want {
			c.t.Fatalf("close code %d (%q), want %d", got, f.payload[2:], want)
		}
		c.write(clientFrame(true, opClose, f.payload[:2], true))
		c.expectEOF()
		c.nc.Close() // as browsers do once the server has closed
		return string(f.payload[2:])
	}
}

// expectEOF checks that the hub closes the connection soon.
func (c *client) expectEOF() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c.br); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("the hub did not close the connection")
		}
	}
}

func closeBody(code CloseCode, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func trim(p []byte) string {
	if len(p) > 40 {
		return string(p[:40]) + "..."
	}
	return string(p)
}
