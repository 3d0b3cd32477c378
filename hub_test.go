package wshub

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

type user struct{ name string }

func TestOnUpgradeSeesRequestAndAttachesData(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.OnUpgrade = func(r *http.Request) (any, error) {
				if r.URL.Path != "/ws" || r.URL.Query().Get("room") != "7" {
					return nil, &UpgradeError{Status: http.StatusNotFound, Reason: "no such room"}
				}
				if !strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") {
					return nil, &UpgradeError{Status: http.StatusBadRequest, Reason: "remote " + r.RemoteAddr}
				}
				ck, err := r.Cookie("session")
				if err != nil {
					return nil, &UpgradeError{Status: http.StatusUnauthorized, Reason: "log in first"}
				}
				if ck.Value == "banned" {
					return nil, errors.New("banned") // any other error: 403
				}
				return &user{name: ck.Value}, nil
			}
			_, addr := startHub(t, opts, d)

			try := func(uri string, headers ...string) (*client, int) {
				c := dial(t, addr)
				req := strings.Replace(upgradeRequest(addr, headers...), "GET /ws ", "GET "+uri+" ", 1)
				c.write([]byte(req))
				return c, c.readResponse()
			}
			if _, got := try("/ws?room=7"); got != http.StatusUnauthorized {
				t.Errorf("without cookie: status %d, want 401", got)
			}
			if _, got := try("/ws?room=7", "Cookie: session=banned"); got != http.StatusForbidden {
				t.Errorf("banned: status %d, want 403", got)
			}
			if _, got := try("/ws?room=8", "Cookie: session=ann"); got != http.StatusNotFound {
				t.Errorf("wrong room: status %d, want 404", got)
			}
			c, got := try("/ws?room=7", "Cookie: session=ann")
			if got != 101 {
				t.Fatalf("status %d, want 101", got)
			}
			conn := <-rec.opened
			if u, ok := conn.Data().(*user); !ok || u.name != "ann" {
				t.Errorf("Data() = %#v, want user ann", conn.Data())
			}
			if a := conn.RemoteAddr(); a == nil || a.String() != c.nc.LocalAddr().String() {
				t.Errorf("RemoteAddr() = %v, want %v", a, c.nc.LocalAddr())
			}
		})
	}
}

func TestOriginCheck(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			_, addr := startHub(t, nil, d)
			cases := []struct {
				name   string
				origin string
				want   int
			}{
				{"no origin", "", 101},
				{"same origin", "Origin: http://" + addr, 101},
				{"same origin, other case", "Origin: http://" + strings.ToUpper(addr), 101},
				{"other site", "Origin: http://evil.example", http.StatusForbidden},
			}
			for _, tc := range cases {
				c := dial(t, addr)
				var extra []string
				if tc.origin != "" {
					extra = append(extra, tc.origin)
				}
				c.write([]byte(upgradeRequest(addr, extra...)))
				if got := c.readResponse(); got != tc.want {
					t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
				}
			}
		})
	}
}

func TestServeHTTPRefusesPlainRequests(t *testing.T) {
	t.Parallel()
	_, addr := startHub(t, nil, doors[0])
	resp, err := http.Get("http://" + addr + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("status %d, want 426", resp.StatusCode)
	}
}

func TestBadUpgradeRequestOnOwnListener(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		if !d.own {
			continue
		}
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, nil, d)
			c := dial(t, addr)
			c.write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"))
			if got := c.readResponse(); got != http.StatusBadRequest {
				t.Errorf("without Sec-WebSocket-Key: status %d, want 400", got)
			}
			c = dial(t, addr)
			c.write([]byte("GET /ws HTTP/1.1\r\nX: " + strings.Repeat("a", maxRequestSize) + "\r\n"))
			if got := c.readResponse(); got != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("huge request: status %d, want 431", got)
			}
			waitFor(t, func() bool { return h.Len() == 0 })
		})
	}
}

func TestCloseCallsOnCloseOncePerOpen(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			const n = 50
			rec := newRecorder()
			h, addr := startHub(t, rec.options(true), d)
			clients := make([]*client, n)
			for i := range clients {
				clients[i] = connect(t, addr)
			}
			for range n {
				<-rec.opened
			}
			h.Close()
			if len(rec.closed) != n {
				t.Fatalf("OnClose called %d times after Close, want %d", len(rec.closed), n)
			}
			seen := make(map[*Conn]bool)
			for range n {
				e := <-rec.closed
				if seen[e.c] {
					t.Fatal("OnClose called twice for one connection")
				}
				seen[e.c] = true
				if e.err.Code != CloseGoingAway {
					t.Errorf("OnClose code %d, want %d", e.err.Code, CloseGoingAway)
				}
			}
			for _, c := range clients {
				c.expectEOF()
			}
			if h.Len() != 0 {
				t.Errorf("Len() = %d after Close, want 0", h.Len())
			}
		})
	}
}

func TestUpgradeAfterCloseGets503(t *testing.T) {
	t.Parallel()
	h, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	defer srv.Close()
	c := dial(t, ln.Addr().String())
	c.write([]byte(upgradeRequest(ln.Addr().String())))
	if got := c.readResponse(); got != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", got)
	}
	if err := h.Serve(ln); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Serve after Close returned %v, want ErrHubClosed", err)
	}
}

// TestShutdownLeavesNoGoroutine runs alone (no t.Parallel) so that it can
// compare goroutine counts: Shutdown must drain every connection, answer
// close handshakes, and stop the loops, the sweeper and the workers.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			rec := newRecorder()
			opts := rec.options(false)
			opts.portable = d.portable
			h, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			served := make(chan error, 1)
			var srv *http.Server
			if d.own {
				go func() { served <- h.Serve(ln) }()
			} else {
				srv = &http.Server{Handler: h}
				go func() { served <- srv.Serve(ln) }()
			}
			const n = 20
			clients := make([]*client, n)
			for i := range clients {
				clients[i] = connect(t, addr)
			}
			for range n {
				<-rec.opened
			}
			// Clients answer the close frame as a browser would.
			answered := make(chan error, n)
			for _, c := range clients {
				go func() {
					for {
						f, err := c.tryReadFrame(10 * time.Second)
						if err != nil {
							answered <- err
							return
						}
						if f.op == opClose {
							c.nc.Write(clientFrame(true, opClose, f.payload[:2], true))
							io.Copy(io.Discard, c.br)
							answered <- nil
							return
						}
					}
				}()
			}
			if srv != nil {
				srv.Shutdown(context.Background())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			for range n {
				if err := <-answered; err != nil {
					t.Errorf("client did not get a close frame: %v", err)
				}
			}
			if err := <-served; err == nil {
				t.Errorf("Serve returned nil")
			}
			for range n {
				if e := rec.waitClosed(t); e.err.Code != CloseGoingAway {
					t.Errorf("OnClose code %d, want %d", e.err.Code, CloseGoingAway)
				}
			}
			for _, c := range clients {
				c.nc.Close()
			}
			if s := waitNoHubGoroutines(5 * time.Second); s != "" {
				t.Fatalf("goroutines left after Shutdown:\n%s", s)
			}
			waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
		})
	}
}

func TestShutdownReturnsContextErrorWhenPeersStall(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	h, addr := startHub(t, rec.options(false), doors[1])
	connect(t, addr) // never answers the close frame
	<-rec.opened
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown returned %v, want context.DeadlineExceeded", err)
	}
	if h.Len() != 0 {
		t.Errorf("Len() = %d after Shutdown gave up, want 0", h.Len())
	}
	rec.waitClosed(t)
}

func TestSharedPoller(t *testing.T) {
	t.Parallel()
	p, err := NewPoller(&PollerOptions{Loops: 1, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() }) // after the hubs' cleanups
	var addrs []string
	var hubs []*Hub
	for range 2 {
		rec := newRecorder()
		opts := rec.options(true)
		opts.Poller = p
		h, addr := startHub(t, opts, doors[1])
		hubs = append(hubs, h)
		addrs = append(addrs, addr)
	}
	for _, addr := range addrs {
		c := connect(t, addr)
		c.write(text("shared"))
		c.expectMessage(opText, "shared")
	}
	hubs[0].Close()
	c := connect(t, addrs[1]) // the other hub still serves
	c.write(text("still here"))
	c.expectMessage(opText, "still here")
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	for _, o := range []*Options{
		{MaxMessageSize: -1},
		{ReadTimeout: -time.Second},
		{CloseTimeout: 100 * 24 * time.Hour},
		{MaxLifetime: -time.Minute},
		{MaxConns: -1},
		{MaxTotalQueuedBytes: -1},
		{SlowConsumer: SlowConflate}, // for channels only
		{SlowConsumer: SlowConflate + 1},
		{DrainCode: CloseNormal},
		{DrainRate: -5},
		{MessageRate: 2000},
		{MessageRate: math.NaN()},
		{UpgradesPerAddr: math.NaN()}, // would never limit, nor let an address go
		{UpgradesPerAddr: math.Inf(1)},
		{MessageRate: 1, MessageBurst: 100}, // 100 s of credit: over 65 s
		{FlushDelay: -time.Millisecond},
		{FlushDelay: 11 * time.Millisecond},
		{PresenceInterval: -time.Second},
		{PresenceInterval: time.Microsecond}, // a busy loop
	} {
		if h, err := New(o); err == nil {
			h.Close()
			t.Errorf("New(%+v) succeeded, want an error", *o)
		}
	}
}

// TestConnSize keeps an idle connection in the 96-byte size class: a field
// added to Conn must fit in what is there or pay for itself elsewhere.
func TestConnSize(t *testing.T) {
	t.Parallel()
	if got := unsafe.Sizeof(Conn{}); got > 96 {
		t.Errorf("Conn is %d bytes, budget 96", got)
	}
	// The read state of a connection with incomplete input, or waiting for
	// the budget: the docs state its size as a connection's worst case.
	if got := unsafe.Sizeof(readState{}); got > 328 {
		t.Errorf("readState is %d bytes, the docs say 328", got)
	}
}
