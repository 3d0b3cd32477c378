package wshubfiber3_test

import (
	"bufio"
	"bytes"
	"context"
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
	"github.com/gofiber/fiber/v3"
	"github.com/wshub/wshub"
	wshubfiber3 "github.com/wshub/wshub/adapters/fiber/fiber3"
)

// TestFiberV3 runs a Fiber v3 app with an authenticating middleware and the
// hub on /ws: the user reaches OnUpgrade through Locals, bytes sent with
// the request are kept, 500 idle connections cost no goroutine, and the
// app then the hub shut down gracefully.
func TestFiberV3(t *testing.T) {
	opened := make(chan *wshub.Conn, 1024)
	hub, err := wshub.New(&wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			if u, ok := r.Context().Value("user").(string); ok {
				return u, nil
			}
			return nil, &wshub.UpgradeError{Status: http.StatusUnauthorized, Reason: "log in"}
		},
		OnOpen:    func(c *wshub.Conn) { opened <- c },
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	app := fiber.New()
	app.Use("/ws", func(c fiber.Ctx) error {
		if tok := c.Query("token"); tok != "" {
			c.Locals("user", strings.Clone(tok)) // Fiber's strings are reused after the handler
		}
		return c.Next()
	})
	app.Get("/ws", wshubfiber3.Handler(hub))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true}) }()
	defer app.Shutdown()
	addr := ln.Addr().String()

	if _, status := dial(t, addr, "/ws"); status != http.StatusUnauthorized {
		t.Errorf("without a token: status %d, want 401 from OnUpgrade", status)
	}
	nc, status := dial(t, addr, "/ws?token=ann", "early")
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", status)
	}
	if c := <-opened; c.Data() != "ann" {
		t.Errorf("data %v, want the user from Locals", c.Data())
	}
	expect(t, nc, "early")
	wsutil.WriteClientText(nc, []byte("hello"))
	expect(t, nc, "hello")

	runtime.GC()
	before := runtime.NumGoroutine()
	const n = 500
	for range n {
		if _, status := dial(t, addr, "/ws?token=idle"); status != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", status)
		}
		<-opened
	}
	after := runtime.NumGoroutine()
	for range 100 {
		if after-before < 10 {
			break
		}
		time.Sleep(10 * time.Millisecond)
		after = runtime.NumGoroutine()
	}
	t.Logf("goroutines: %d before, %d with %d more idle connections", before, after, n)
	if after-before >= 10 {
		t.Errorf("%d goroutines more with %d idle connections, want none per connection", after-before, n)
	}

	if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Listener: %v", err)
	}
	go func() { // the first client answers the drain's close frame
		for {
			h, err := ws.ReadHeader(nc)
			if err != nil {
				return
			}
			p := make([]byte, h.Length)
			io.ReadFull(nc, p)
			if h.OpCode == ws.OpClose {
				ws.WriteFrame(nc, ws.MaskFrame(ws.NewCloseFrame(p[:2])))
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// The idle clients never answer: Shutdown closes them after the
	// context ends, and says so.
	if err := hub.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown: %v, want the deadline (idle clients do not answer)", err)
	}
	if hub.Len() != 0 {
		t.Errorf("%d connections left after Shutdown", hub.Len())
	}
}

// dial upgrades to path, sending the messages first right after the
// request, in the same write.
func dial(t *testing.T, addr, path string, first ...string) (net.Conn, int) {
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
	nc.Write(b.Bytes())
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Time{})
	return bufferedConn{nc, br}, resp.StatusCode
}

// bufferedConn reads what came after the response through its reader.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func expect(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := wsutil.ReadServerText(nc)
	if err != nil || string(p) != want {
		t.Fatalf("got %q, %v; want %q", p, err, want)
	}
}
