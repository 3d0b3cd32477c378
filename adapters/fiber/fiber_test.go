package wshubfiber_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/gofiber/fiber/v2"
	"github.com/wshub/wshub"
	wshubfiber "github.com/wshub/wshub/adapters/fiber"
)

// server is a Fiber app with a hub on /ws behind an authentication
// middleware, as an application would mount it.
type server struct {
	app    *fiber.App
	hub    *wshub.Hub
	addr   string
	opened chan *wshub.Conn
	closed chan *wshub.CloseError
	served chan error
}

// user is what the middleware stores in Fiber's Locals, and OnUpgrade
// attaches to the connection.
type user struct{ name string }

func startServer(t *testing.T, configure func(*fiber.App)) *server {
	t.Helper()
	s := &server{
		opened: make(chan *wshub.Conn, 2048),
		closed: make(chan *wshub.CloseError, 2048),
		served: make(chan error, 1),
	}
	hub, err := wshub.New(&wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			u, _ := r.Context().Value("user").(*user)
			if u == nil {
				return nil, errors.New("no user") // the middleware lets none through
			}
			if r.URL.Query().Get("refuse") != "" {
				return nil, &wshub.UpgradeError{Status: http.StatusForbidden, Reason: "refused by OnUpgrade"}
			}
			return u, nil
		},
		OnOpen: func(c *wshub.Conn) {
			if room := c.Data().(*user).name; strings.HasPrefix(room, "room-") {
				c.Hub().Channel(strings.TrimPrefix(room, "room-")).Subscribe(c)
			}
			s.opened <- c
		},
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			c.WriteMessage(typ, data)
		},
		OnClose: func(c *wshub.Conn, err *wshub.CloseError) { s.closed <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.hub = hub
	s.app = fiber.New(fiber.Config{DisableStartupMessage: true})
	if configure != nil {
		configure(s.app)
	}
	s.app.Use("/ws", func(c *fiber.Ctx) error {
		// Fiber's strings point into fasthttp's buffers, reused after
		// the handler: what outlives it (the connection's data) is copied.
		name := strings.Clone(c.Query("token"))
		if name == "" {
			return c.Status(fiber.StatusUnauthorized).SendString("log in")
		}
		c.Locals("user", &user{name: name})
		return c.Next()
	})
	s.app.Get("/ws", wshubfiber.Handler(hub))
	s.app.Get("/health", func(c *fiber.Ctx) error { return c.SendString("ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go func() { s.served <- s.app.Listener(ln) }()
	t.Cleanup(func() {
		s.app.Shutdown()
		hub.Close()
	})
	return s
}

// client is a WebSocket client over a raw connection.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dial upgrades to path, sending first right after the request, in the same
// write, and returns the client with the response's status.
func dial(t *testing.T, addr, path string, first ...string) (*client, int) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	for _, m := range first {
		ws.WriteFrame(&b, ws.MaskFrame(ws.NewTextFrame([]byte(m))))
	}
	if _, err := nc.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, resp.Body)
	}
	return c, resp.StatusCode
}

func mustDial(t *testing.T, addr, path string, first ...string) *client {
	t.Helper()
	c, status := dial(t, addr, path, first...)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade of %s: status %d, want 101", path, status)
	}
	return c
}

func (c *client) send(m string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.nc, []byte(m)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) expect(want string) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := wsutil.ReadServerText(struct {
		io.Reader
		io.Writer
	}{c.br, c.nc})
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if string(got) != want {
		c.t.Fatalf("got %q, want %q", got, want)
	}
}

// expectClose reads the hub's close frame, answers it as a browser does and
// returns its code.
func (c *client) expectClose() ws.StatusCode {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(p)
			ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewCloseFrame(p[:2])))
			return code
		}
	}
}

func TestUpgradeEchoAndEarlyBytes(t *testing.T) {
	s := startServer(t, nil)
	c := mustDial(t, s.addr, "/ws?token=ann", "sent with the request")
	conn := <-s.opened
	if u := conn.Data().(*user); u.name != "ann" {
		t.Errorf("connection data %q, want the middleware's user", u.name)
	}
	c.expect("sent with the request") // fasthttp's reader had it: kept
	c.send("hello")
	c.expect("hello")
	// The app's other routes go on working.
	resp, err := http.Get("http://" + s.addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/health: %d", resp.StatusCode)
	}
}

func TestRefusals(t *testing.T) {
	s := startServer(t, nil)
	for _, tc := range []struct {
		name, path string
		want       int
	}{
		{"middleware", "/ws", http.StatusUnauthorized},
		{"OnUpgrade", "/ws?token=ann&refuse=1", http.StatusForbidden},
	} {
		if _, status := dial(t, s.addr, tc.path); status != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.want)
		}
	}
	// A plain GET on the route is answered by fasthttp, keep-alive intact.
	resp, err := http.Get("http://" + s.addr + "/ws?token=ann")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" {
		t.Errorf("plain GET: %d, Upgrade %q; want 426 with Upgrade: websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	if n := s.hub.Len(); n != 0 {
		t.Errorf("hub holds %d connections after refusals", n)
	}
	// A closed hub answers 503, and the app keeps serving its other routes.
	s.hub.Close()
	if _, status := dial(t, s.addr, "/ws?token=ann"); status != http.StatusServiceUnavailable {
		t.Errorf("after Close: status %d, want 503", status)
	}
	resp, err = http.Get("http://" + s.addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestRooms(t *testing.T) {
	s := startServer(t, nil)
	a1 := mustDial(t, s.addr, "/ws?token=room-a")
	a2 := mustDial(t, s.addr, "/ws?token=room-a")
	b := mustDial(t, s.addr, "/ws?token=room-b")
	for range 3 {
		<-s.opened
	}
	if n, err := s.hub.Channel("a").Publish(wshub.Text, []byte("to a")); err != nil || n != 2 {
		t.Fatalf("Publish to a: %d, %v; want 2 members", n, err)
	}
	s.hub.Channel("b").Publish(wshub.Text, []byte("to b"))
	a1.expect("to a")
	a2.expect("to a")
	b.expect("to b") // and not "to a", which would come first
}

// TestIdleConnectionsCostNoGoroutine holds 1,000 connections through Fiber
// and counts the process's goroutines before and after: the hijack
// goroutines have returned and fasthttp keeps nothing per connection.
func TestIdleConnectionsCostNoGoroutine(t *testing.T) {
	s := startServer(t, nil)
	mustDial(t, s.addr, "/ws?token=warm").send("warm")
	<-s.opened
	runtime.GC()
	before := runtime.NumGoroutine()
	const n = 1000
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = mustDial(t, s.addr, "/ws?token=idle")
	}
	for range n {
		<-s.opened
	}
	// Let fasthttp's hijack goroutines finish returning.
	var after int
	for range 100 {
		if after = runtime.NumGoroutine(); after-before < 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d with %d more idle connections", before, after, n)
	if per := float64(after-before) / n; per >= 0.02 {
		t.Errorf("%d goroutines more with %d idle connections (%.3f per connection), want none per connection", after-before, n, per)
	}
	// They are alive: each still echoes.
	for _, c := range clients[:10] {
		c.send("still here")
		c.expect("still here")
	}
	if got := s.hub.Stats().Conns; got != n+1 {
		t.Errorf("Stats().Conns = %d, want %d", got, n+1)
	}
}

// TestGracefulShutdown stops the app, then drains the hub: every client gets
// a 1001 close frame, every OnClose runs, Shutdown returns nil, and no
// goroutine of the hub or of fasthttp's hijacks is left.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, nil)
	const n = 50
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = mustDial(t, s.addr, "/ws?token=room-all")
	}
	for range n {
		<-s.opened
	}
	if err := s.app.ShutdownWithTimeout(5 * time.Second); err != nil {
		t.Fatalf("app shutdown: %v", err)
	}
	if err := <-s.served; err != nil {
		t.Fatalf("app.Listener returned %v", err)
	}
	// The WebSockets outlive the app's shutdown, which is not theirs.
	s.hub.Channel("all").Publish(wshub.Text, []byte("still served"))
	for _, c := range clients {
		c.expect("still served")
	}
	answered := make(chan ws.StatusCode, n)
	for _, c := range clients {
		go func() { answered <- c.expectClose() }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.hub.Shutdown(ctx); err != nil {
		t.Fatalf("hub shutdown: %v", err)
	}
	for range n {
		if code := <-answered; code != ws.StatusGoingAway {
			t.Errorf("close code %d, want 1001", code)
		}
		if e := <-s.closed; e.Code != wshub.CloseGoingAway {
			t.Errorf("OnClose code %d, want 1001", e.Code)
		}
	}
	if _, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		t.Error("the app still accepts connections")
	}
	waitGoroutines(t)
}

// TestPortablePath serves connections fasthttp wraps (Server.MaxConnsPerIP
// puts its counter around each), which the hub cannot take the descriptor
// of: they run on its portable path, and a close from either side ends the
// hijack goroutine fasthttp keeps for them.
func TestPortablePath(t *testing.T) {
	s := startServer(t, func(app *fiber.App) { app.Server().MaxConnsPerIP = 100 })
	c := mustDial(t, s.addr, "/ws?token=ann", "early")
	<-s.opened
	c.expect("early")
	c.send("hello")
	c.expect("hello")
	ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	if e := <-s.closed; e.Code != wshub.CloseNormal {
		t.Errorf("OnClose code %d, want 1000", e.Code)
	}
	// The per-IP counter was released: 100 more connections fit.
	for range 100 {
		mustDial(t, s.addr, "/ws?token=ann")
		<-s.opened
	}
	s.app.Shutdown()
	s.hub.Close()
	waitGoroutines(t)
}

// waitGoroutines waits until no goroutine runs the hub's code or a hijack
// handler of fasthttp's. (fasthttp's worker pool keeps a cleaner goroutine
// for up to 10 s after its server stops: not ours to wait for.)
func waitGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if (strings.Contains(g, "wshub.(*") || strings.Contains(g, "hijackConnHandler")) && !strings.Contains(g, "testing.tRunner") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the hub or of hijacks left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
