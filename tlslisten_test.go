package wshub

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// Hub.Listener: wss:// through net/http on the loops, over real sockets.

// serveWith serves h at /ws, and a file at /file, through an http.Server
// that serve runs on a new loopback listener; conf, if set, adjusts the
// server first. The server and the hub are closed when the test ends.
func serveWith(t *testing.T, h *Hub, conf func(*http.Server), serve func(*http.Server, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte(strings.Repeat("file ", 20<<10)), 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) })
	srv := &http.Server{Handler: mux, TLSConfig: serverTLSConfig(), ErrorLog: log.New(io.Discard, "", 0)}
	if conf != nil {
		conf(srv)
	}
	done := make(chan error, 1)
	go func() { done <- serve(srv, ln) }()
	t.Cleanup(func() {
		srv.Close()
		h.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("the server returned %v, want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// newHub returns a hub made with opts, closed when the test ends.
func newHub(t *testing.T, opts *Options) *Hub {
	t.Helper()
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// listenerDoors are the ways to put net/http in front of a hub, wrapped by
// Hub.Listener or not, and where their connections end up.
var listenerDoors = []struct {
	name     string
	tls      bool
	portable bool // the connections take the portable path
	serve    func(h *Hub) func(*http.Server, net.Listener) error
}{
	{name: "ServeTLS(Listener)", tls: true, serve: func(h *Hub) func(*http.Server, net.Listener) error {
		return func(srv *http.Server, ln net.Listener) error { return srv.ServeTLS(h.Listener(ln), "", "") }
	}},
	{name: "Serve(tls.NewListener(Listener))", tls: true, serve: func(h *Hub) func(*http.Server, net.Listener) error {
		return func(srv *http.Server, ln net.Listener) error {
			return srv.Serve(tls.NewListener(h.Listener(ln), srv.TLSConfig))
		}
	}},
	{name: "Serve(Listener)", serve: func(h *Hub) func(*http.Server, net.Listener) error {
		return func(srv *http.Server, ln net.Listener) error { return srv.Serve(h.Listener(ln)) }
	}},
	{name: "ServeTLS(bare)", tls: true, portable: true, serve: func(*Hub) func(*http.Server, net.Listener) error {
		return func(srv *http.Server, ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}},
}

// connectTo upgrades a client of addr, over TLS if secure.
func connectTo(t *testing.T, addr string, secure bool) *client {
	t.Helper()
	if secure {
		return connectTLS(t, addr, clientTLS(), nil)
	}
	return connect(t, addr)
}

// expectPath checks that c runs where it should: on the loops, as wss://
// if secure, or on the portable path.
func expectPath(t *testing.T, c *Conn, secure, portable bool) {
	t.Helper()
	switch {
	case portable && c.fd >= 0:
		t.Errorf("the connection is on the loops (fd %d), want the portable path", c.fd)
	case !portable && (c.fd < 0 || (c.transport() == viaTLS) != secure):
		t.Errorf("fd %d, TLS on the loops %v; want the loops, TLS %v", c.fd, (c.transport() == viaTLS), secure)
	}
}

// TestListenerDoors: WebSocket connections that net/http accepted through
// Hub.Listener, plain or TLS, echo on the loops; a *tls.Conn from the bare
// listener echoes on the portable path, counted in Stats.Portable.
func TestListenerDoors(t *testing.T) {
	t.Parallel()
	for _, d := range listenerDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			h := newHub(t, rec.options(true))
			addr := serveWith(t, h, nil, d.serve(h))
			c := connectTo(t, addr, d.tls)
			conn := <-rec.opened
			expectPath(t, conn, d.tls, d.portable)
			want := 0
			if d.portable {
				want = 1
			}
			if got := h.Stats().Portable; got != want {
				t.Errorf("Stats.Portable %d, want %d", got, want)
			}
			big := strings.Repeat("listener ", 4<<10) // more than two records
			c.write(text("hello"))
			c.expectMessage(opText, "hello")
			c.write(clientFrame(true, opBinary, []byte(big), true))
			c.expectMessage(opBinary, big)
			c.write(clientFrame(true, opClose, closeBody(CloseNormal, ""), true))
			c.expectClose(CloseNormal)
			rec.waitClosed(t)
			if got := h.Stats().Portable; got != 0 {
				t.Errorf("Stats.Portable %d after the close, want 0", got)
			}
		})
	}
}

// TestListenerServesHTTP: until a connection is upgraded, Hub.Listener's
// wrapper is the socket for net/http: a file served by sendfile (through
// ReadFrom), keep-alive, and a request that is then upgraded on the same
// connection.
func TestListenerServesHTTP(t *testing.T) {
	t.Parallel()
	for _, d := range listenerDoors[:3] {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			h := newHub(t, rec.options(true))
			addr := serveWith(t, h, nil, d.serve(h))
			var c *client
			if d.tls {
				c = dialTLS(t, addr, clientTLS(), nil)
			} else {
				c = dial(t, addr)
			}
			for range 2 {
				c.write([]byte("GET /file HTTP/1.1\r\nHost: x\r\n\r\n"))
				c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(c.br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || string(body) != strings.Repeat("file ", 20<<10) {
					t.Fatalf("got %d bytes (%v), want the file's %d", len(body), err, 100<<10)
				}
			}
			c.write([]byte(upgradeRequest(addr)))
			if status := c.readResponse(); status != 101 {
				t.Fatalf("upgrade status %d, want 101", status)
			}
			expectPath(t, <-rec.opened, d.tls, false)
			c.write(text("after two requests"))
			c.expectMessage(opText, "after two requests")
		})
	}
}

// TestListenerAddrsAfterUpgrade: code that kept the net.Conn net/http
// served (ConnContext, ConnState) or the one ServeTLS's handshake ran over
// (a GetCertificate that kept the ClientHelloInfo) can still print its
// addresses once the hub has taken the socket onto the loops.
func TestListenerAddrsAfterUpgrade(t *testing.T) {
	t.Parallel()
	type kept struct {
		name string
		nc   func() net.Conn
	}
	check := func(t *testing.T, nc net.Conn, client *client) {
		t.Helper()
		if nc == nil {
			t.Fatal("no connection kept")
		}
		local, remote := nc.LocalAddr(), nc.RemoteAddr()
		if local == nil || remote == nil {
			t.Fatalf("LocalAddr %v, RemoteAddr %v after the upgrade, want both", local, remote)
		}
		if got, want := fmt.Sprint(remote), client.nc.LocalAddr().String(); got != want {
			t.Errorf("RemoteAddr %s, want the client's %s", got, want)
		}
		if got, want := fmt.Sprint(local), client.nc.RemoteAddr().String(); got != want {
			t.Errorf("LocalAddr %s, want the server's %s", got, want)
		}
	}
	for _, d := range listenerDoors[:3] {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			h := newHub(t, rec.options(true))
			fromContext, fromState := make(chan net.Conn, 1), make(chan net.Conn, 1)
			addr := serveWith(t, h, func(srv *http.Server) {
				srv.ConnContext = func(ctx context.Context, nc net.Conn) context.Context {
					fromContext <- nc
					return ctx
				}
				srv.ConnState = func(nc net.Conn, s http.ConnState) {
					if s == http.StateHijacked {
						fromState <- nc
					}
				}
			}, d.serve(h))
			c := connectTo(t, addr, d.tls)
			expectPath(t, <-rec.opened, d.tls, false)
			c.write(text("upgraded"))
			c.expectMessage(opText, "upgraded")
			nc := <-fromContext
			if _, isTLS := nc.(*tls.Conn); isTLS != d.tls {
				t.Errorf("ConnContext got a %T", nc)
			}
			check(t, nc, c)
			check(t, <-fromState, c)
		})
	}
	t.Run("ServeTLS GetCertificate", func(t *testing.T) {
		t.Parallel()
		rec := newRecorder()
		h := newHub(t, rec.options(true))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hello := make(chan net.Conn, 1)
		cfg := &tls.Config{GetCertificate: func(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			hello <- chi.Conn
			cert := testCert()
			return &cert, nil
		}}
		done := make(chan error, 1)
		go func() { done <- h.ServeTLS(ln, cfg) }()
		t.Cleanup(func() { h.Close(); <-done })
		c := connectTLS(t, ln.Addr().String(), clientTLS(), nil)
		c.write(text("upgraded"))
		c.expectMessage(opText, "upgraded")
		expectPath(t, <-rec.opened, true, false)
		check(t, <-hello, c)
	})
}

// TestListenerIdleGoroutines runs alone (no t.Parallel) so that it can
// compare goroutine counts: idle wss:// connections through net/http over
// Hub.Listener hold no goroutine; over the bare listener each holds one.
func TestListenerIdleGoroutines(t *testing.T) {
	const n = 64
	for _, d := range []int{0, 3} {
		door := listenerDoors[d]
		t.Run(door.name, func(t *testing.T) {
			rec := newRecorder()
			h := newHub(t, rec.options(true))
			addr := serveWith(t, h, nil, door.serve(h))
			connectTo(t, addr, true) // the hub's goroutines started
			<-rec.opened
			before := runtime.NumGoroutine()
			for range n {
				c := connectTo(t, addr, true)
				c.write(text("idle"))
				c.expectMessage(opText, "idle")
			}
			// net/http's goroutines end once they have handed over.
			grew := 0
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				grew = runtime.NumGoroutine() - before
				if grew <= 2 || door.portable || time.Now().After(deadline) {
					break
				}
			}
			if door.portable {
				if grew < n || h.Stats().Portable != n+1 {
					t.Errorf("%d goroutines more, Stats.Portable %d, with %d idle connections on the portable path; want a goroutine each",
						grew, h.Stats().Portable, n)
				}
				return
			}
			if grew > 2 || h.Stats().Portable != 0 {
				t.Errorf("%d goroutines more, Stats.Portable %d, with %d idle wss:// connections; want none per connection",
					grew, h.Stats().Portable, n)
			}
		})
	}
}

// TestServeConnTLS: ServeConn given a *tls.Conn serves it on the loops when
// its handshake is over and it runs over a connection of Hub.Listener, on
// the portable path otherwise: over the bare socket, or before its
// handshake.
func TestServeConnTLS(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		listener  bool // accepted by Hub.Listener
		handshake bool // run by the accept loop
		request   bool // read and parsed by the accept loop
		portable  bool
	}{
		{name: "Listener/request", listener: true, handshake: true, request: true},
		{name: "Listener/raw", listener: true, handshake: true},
		{name: "Listener/before the handshake", listener: true, portable: true},
		{name: "bare/request", handshake: true, request: true, portable: true},
		{name: "bare/raw", handshake: true, portable: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			h := newHub(t, rec.options(true))
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := raw
			if tc.listener {
				ln = h.Listener(raw)
			}
			served := make(chan error, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					served <- err
					return
				}
				sc := tls.Server(nc, tlsConfig(serverTLSConfig()))
				if tc.handshake {
					if err := sc.Handshake(); err != nil {
						served <- err
						return
					}
				}
				if !tc.request {
					served <- h.ServeConn(sc, nil, nil)
					return
				}
				br := bufio.NewReader(sc)
				r, err := http.ReadRequest(br)
				if err != nil {
					served <- err
					return
				}
				buffered, _ := br.Peek(br.Buffered())
				served <- h.ServeConn(sc, r, buffered)
			}()
			t.Cleanup(func() { raw.Close() })
			c := connectTLS(t, raw.Addr().String(), clientTLS(), nil)
			if err := <-served; err != nil {
				t.Fatalf("ServeConn: %v", err)
			}
			expectPath(t, <-rec.opened, true, tc.portable)
			c.write(text("handed over"))
			c.expectMessage(opText, "handed over")
		})
	}
}

// TestTLSRecordInOneByteReads: a record the client sends a byte at a time,
// each read by the hub on its own before the next is sent, decrypts whole:
// crypto/tls, told "would block" after every byte, goes on where it stopped.
func TestTLSRecordInOneByteReads(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c, cp := connectCapture(t, addr, clientTLS())
			conn := <-rec.opened
			msg := strings.Repeat("one byte at a time ", 20)
			cp.holding = true
			c.write(text(msg))
			record := cp.take()
			var peek [1]byte
			for i := range record {
				if _, err := cp.Conn.Write(record[i : i+1]); err != nil {
					t.Fatal(err)
				}
				// Wait until the hub has read it: the socket holds nothing.
				waitFor(t, func() bool {
					_, err := sysPeek(int(conn.fd), peek[:])
					return err != nil && isWouldBlock(err)
				})
				if i < len(record)-1 && len(rec.messages) > 0 {
					t.Fatalf("a message before the record's last byte (%d of %d)", i+1, len(record))
				}
			}
			if m := rec.waitMessage(t); m.data != msg {
				t.Fatalf("OnMessage got %q", trim([]byte(m.data)))
			}
			c.expectMessage(opText, msg)
		})
	}
}

// keepError makes tc return err from every later read, as a crypto/tls
// that kept its transport's errors would: it writes tc's read error, which
// only tc's reader may touch. It reports false if crypto/tls's layout is
// not the one it knows.
func keepError(tc *tls.Conn, err error) bool {
	in, ok := reflect.TypeFor[tls.Conn]().FieldByName("in")
	if !ok {
		return false
	}
	e, ok := in.Type.FieldByName("err")
	if !ok || e.Type != reflect.TypeFor[error]() {
		return false
	}
	*(*error)(unsafe.Add(unsafe.Pointer(tc), in.Offset+e.Offset)) = err
	return true
}

// TestTLSKeptWouldBlock stands for a crypto/tls that keeps the "would
// block" its transport returns: the connection is closed with 1011 and a
// reason that says so, whether the error comes back as it was or wrapped,
// and whether the ciphertext it does not take is the hub's or in its own
// buffer, rather than left waiting for reads that cannot succeed.
func TestTLSKeptWouldBlock(t *testing.T) {
	t.Parallel()
	if !keepError(new(tls.Conn), nil) {
		t.Skip("crypto/tls's layout is not the one the test knows")
	}
	cases := []struct {
		name     string
		kept     error
		next     bool // a record follows, read later
		together bool // a record follows, in the same read
	}{
		{name: "as it was, next read", kept: errWouldBlock, next: true},
		{name: "as it was, same read", kept: errWouldBlock, together: true},
		{name: "wrapped", kept: fmt.Errorf("tls: %w", errWouldBlock)},
	}
	for _, d := range tlsDoors {
		for _, tc := range cases {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				rec := newRecorder()
				opts := rec.options(false)
				injected := make(chan bool, 1)
				opts.OnMessage = func(c *Conn, typ MessageType, p []byte) {
					if string(p) == "keep" {
						injected <- keepError(c.cio.tc, tc.kept)
					}
				}
				h, addr := startHub(t, opts, d)
				c, cp := connectCapture(t, addr, clientTLS())
				switch {
				case tc.together:
					cp.holding = true
					c.write(text("keep"))
					c.write(text("then this"))
					cp.Conn.Write(cp.take()) // two records, one write
				case tc.next:
					c.write(text("keep"))
					<-injected
					c.write(text("then this"))
				default:
					c.write(text("keep"))
				}
				f := c.readFrame()
				if f.op != opClose || len(f.payload) < 2 {
					t.Fatalf("got op %d %q, want a close frame", f.op, f.payload)
				}
				if code, reason := CloseCode(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:]); code != CloseInternalError || reason != reasonKeptWouldBlock {
					t.Errorf("close %d %q, want %d %q", code, reason, CloseInternalError, reasonKeptWouldBlock)
				}
				c.expectEOF()
				e := rec.waitClosed(t).err
				if e.Code != CloseInternalError || e.Reason != reasonKeptWouldBlock || e.ByPeer {
					t.Errorf("OnClose got %+v, want the hub's 1011 %q", e, reasonKeptWouldBlock)
				}
				if n := h.Stats().Closes[CloseInternalError]; n != 1 {
					t.Errorf("Stats.Closes[1011] %d, want 1", n)
				}
			})
		}
	}
}

// TestTransportAddrs: a transport reports its socket's addresses in loop
// mode, when it no longer has the socket: TCP ones as they were, a Unix
// socket's unnamed but not nil.
func TestTransportAddrs(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "s")
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			dialed, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer dialed.Close()
			nc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			x := newTransport(nc)
			x.nc = nil // loop mode, as takeSocket leaves it
			local, remote := x.LocalAddr(), x.RemoteAddr()
			if local == nil || remote == nil {
				t.Fatalf("LocalAddr %v, RemoteAddr %v in loop mode, want both", local, remote)
			}
			if network == "tcp" && (local.String() != nc.LocalAddr().String() || remote.String() != nc.RemoteAddr().String()) {
				t.Errorf("addresses %v and %v, want the socket's %v and %v", local, remote, nc.LocalAddr(), nc.RemoteAddr())
			}
			if local.Network() != network || remote.Network() != network {
				t.Errorf("networks %q and %q, want %q", local.Network(), remote.Network(), network)
			}
		})
	}
}
