package wshub

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// The ServeConn door runs every door scenario through helpers_test.go's
// "conn-request" and "conn-bytes" doors (an accept loop of the test's hands
// the connection over); these tests cover what is its own: net.Pipe, the
// three forms of hand-off, the descriptor takeover and its answers.

// handOver hands the server end of a net.Pipe to h.ServeConn as how says,
// after the client wrote the upgrade request followed by first, and returns
// the client end with ServeConn's result to come.
func handOver(t *testing.T, h *Hub, how handoff, first []byte) (*client, <-chan error) {
	t.Helper()
	cnc, snc := net.Pipe()
	t.Cleanup(func() { cnc.Close() })
	c := &client{t: t, nc: cnc, br: bufio.NewReader(cnc)}
	req := append([]byte(upgradeRequest("pipe")), first...)
	go cnc.Write(req) // a pipe's write waits for the reader
	done := make(chan error, 1)
	go func() {
		switch how {
		case handoffRequest:
			br := bufio.NewReader(snc)
			r, err := http.ReadRequest(br)
			if err != nil {
				done <- err
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, "from the caller"))
			buffered, _ := br.Peek(br.Buffered())
			done <- h.ServeConn(snc, r, buffered)
		case handoffBytes:
			// Part of the request, as a server that stopped reading early
			// would have: ServeConn reads the rest.
			buf := make([]byte, 20)
			n, err := snc.Read(buf)
			if err != nil {
				done <- err
				return
			}
			done <- h.ServeConn(snc, nil, buf[:n])
		default: // nothing read: the hub reads the request itself
			done <- h.ServeConn(snc, nil, nil)
		}
	}()
	return c, done
}

type ctxKey struct{}

func TestServeConnOverPipe(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		how  handoff
	}{
		{"request", handoffRequest},
		{"partial bytes", handoffBytes},
		{"nothing read", handoffNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(true)
			seen := make(chan any, 1)
			opts.OnUpgrade = func(r *http.Request) (any, error) {
				seen <- r.Context().Value(ctxKey{})
				return "data", nil
			}
			h, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			c, done := handOver(t, h, tc.how, text("early"))
			if status := c.readResponse(); status != 101 {
				t.Fatalf("status %d, want 101", status)
			}
			if err := <-done; err != nil {
				t.Fatalf("ServeConn: %v", err)
			}
			want := any(nil)
			if tc.how == handoffRequest {
				want = "from the caller" // the caller's own request
			}
			if got := <-seen; got != want {
				t.Errorf("OnUpgrade saw context value %v, want %v", got, want)
			}
			conn := <-rec.opened
			if conn.fd >= 0 {
				t.Error("a net.Pipe end is not on the portable path")
			}
			if conn.Data() != "data" {
				t.Errorf("Data() = %v, want what OnUpgrade returned", conn.Data())
			}
			c.expectMessage(opText, "early") // sent with the request: kept
			c.write(text("then"))
			c.expectMessage(opText, "then")
			go c.nc.Write(clientFrame(true, opClose, closeBody(CloseNormal, "bye"), true))
			if f := c.readFrame(); f.op != opClose { // a pipe's write waits for this read
				t.Fatalf("got op %d, want the close frame's answer", f.op)
			}
			if e := rec.waitClosed(t); e.err.Code != CloseNormal {
				t.Errorf("OnClose code %d, want %d", e.err.Code, CloseNormal)
			}
		})
	}
}

// TestServeConnTakesTheSocket checks that a plain TCP connection handed over
// leaves the caller with nothing: its net.Conn is closed, the connection is
// on the netpoll path, and no goroutine is kept for it.
func TestServeConnTakesTheSocket(t *testing.T) {
	if !hasNetpoll {
		t.Skip("no netpoll on this system")
	}
	rec := newRecorder()
	h, err := New(rec.options(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = 200
	handed := make(chan net.Conn, n)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(nc)
			r, err := http.ReadRequest(br)
			if err != nil {
				nc.Close()
				continue
			}
			buffered, _ := br.Peek(br.Buffered())
			if err := h.ServeConn(nc, r, buffered); err != nil {
				t.Errorf("ServeConn: %v", err)
			}
			handed <- nc
		}
	}()
	before := runtime.NumGoroutine()
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = connect(t, ln.Addr().String(), text("first"))
		<-rec.opened
	}
	for _, c := range clients {
		c.expectMessage(opText, "first")
	}
	if grew := runtime.NumGoroutine() - before; grew > 5 {
		t.Errorf("%d goroutines more with %d connections handed over, want none per connection", grew, n)
	}
	nc := <-handed
	if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the handed-over net.Conn reads %v, want net.ErrClosed: the hub owns a duplicate", err)
	}
	for c := range h.Conns() {
		if c.fd < 0 {
			t.Fatal("a TCP connection handed over is on the portable path")
		}
	}
}

// TestServeConnAnswers checks the answers of the door: the same checks and
// statuses as ServeHTTP's, the error ServeConn returns, and that the
// connection is closed afterwards.
func TestServeConnAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		opts    Options
		req     string
		extra   int // bytes of frames after the request
		closed  bool
		want    int
		wantErr error
	}{
		{name: "no Upgrade header", req: "GET /ws HTTP/1.1\r\nHost: pipe\r\nConnection: Upgrade\r\n\r\n", want: 426},
		{name: "OnUpgrade refuses", opts: Options{OnUpgrade: func(*http.Request) (any, error) {
			return nil, &UpgradeError{Status: http.StatusUnauthorized, Reason: "log in"}
		}}, want: 401},
		{name: "cross origin", req: strings.Replace(upgradeRequest("pipe"), "\r\n\r\n", "\r\nOrigin: http://evil.example\r\n\r\n", 1), want: 403},
		{name: "bad version", req: strings.Replace(upgradeRequest("pipe"), "Version: 13", "Version: 8", 1), want: 426},
		{name: "hub closed", closed: true, want: 503, wantErr: ErrHubClosed},
		{name: "MaxConns", opts: Options{MaxConns: -1}, want: 503}, // replaced by a full hub below
		{name: "too much buffered", extra: maxServeConnBuffered + 1, want: 400},
	}
	for _, tc := range cases {
		for _, parsed := range []bool{true, false} {
			name := tc.name + "/bytes"
			if parsed {
				name = tc.name + "/request"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				opts := tc.opts
				full := opts.MaxConns < 0
				if full {
					opts.MaxConns = 1
				}
				h, err := New(&opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { h.Close() })
				if full {
					c, done := handOver(t, h, handoffNone, nil)
					if s := c.readResponse(); s != 101 {
						t.Fatalf("first connection: status %d", s)
					}
					<-done
				}
				if tc.closed {
					h.Close()
				}
				req := tc.req
				if req == "" {
					req = upgradeRequest("pipe")
				}
				cnc, snc := net.Pipe()
				defer cnc.Close()
				go cnc.Write([]byte(req))
				done := make(chan error, 1)
				go func() {
					buf := make([]byte, len(req)+tc.extra)
					n, err := snc.Read(buf)
					if err != nil {
						done <- err
						return
					}
					var r *http.Request
					if parsed {
						if r, err = http.ReadRequest(bufio.NewReader(strings.NewReader(req))); err != nil {
							done <- err
							return
						}
						n = 0
					}
					done <- h.ServeConn(snc, r, buf[:n+tc.extra])
				}()
				c := &client{t: t, nc: cnc, br: bufio.NewReader(cnc)}
				if got := c.readResponse(); got != tc.want {
					t.Errorf("status %d, want %d", got, tc.want)
				}
				err = <-done
				var ue *UpgradeError
				switch {
				case tc.wantErr != nil:
					if !errors.Is(err, tc.wantErr) {
						t.Errorf("ServeConn returned %v, want %v", err, tc.wantErr)
					}
				case tc.want == 426 && strings.Contains(req, "Version: 8"):
					if err == nil {
						t.Error("ServeConn returned nil for a refused handshake")
					}
				case !errors.As(err, &ue) || ue.Status != tc.want:
					t.Errorf("ServeConn returned %v, want an UpgradeError with status %d", err, tc.want)
				}
				c.expectEOF()
				left := 0
				if full {
					left = 1 // the first connection
				}
				waitFor(t, func() bool { return h.Len() == left })
			})
		}
	}
}
