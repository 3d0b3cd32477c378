// Package wshubfiber mounts a wshub.Hub on a Fiber v2 app or any fasthttp
// server:
//
//	app.Get("/ws", wshubfiber.Handler(hub))
//
// The upgrade request is checked by the hub as on its other doors (origin,
// limits, Options.OnUpgrade, which sees an *http.Request copied from the
// fasthttp one), then the connection is hijacked and handed to
// wshub.Hub.ServeConn with the bytes fasthttp's reader already holds. A plain
// TCP or Unix socket leaves fasthttp altogether: the hub takes its
// descriptor over, fasthttp's hijack goroutine returns at once and the
// connection costs no goroutine while idle, as on the net/http door. Others
// (TLS, or the wrapper fasthttp puts around connections when
// Server.MaxConnsPerIP is set) are served on the hub's portable path, and
// keep fasthttp's hijack goroutine until they close.
//
// Fiber's Locals, and any fasthttp user value, set by middleware before the
// handler are visible to OnUpgrade as r.Context().Value(key): an
// authentication middleware can store the user there, and OnUpgrade return
// it as the connection's data. Strings Fiber returns (c.Query, c.Params,
// ...) point into fasthttp's buffers, which are reused once the request is
// done: copy what is kept in Locals for the connection (strings.Clone), or
// set fiber.Config.Immutable.
//
// On shutdown, stop the app first (Fiber's Shutdown does not wait for
// hijacked connections, which are no longer its own), then the hub:
//
//	app.ShutdownWithContext(ctx)
//	hub.Shutdown(ctx)
package wshubfiber

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"github.com/wshub/wshub"
)

// Handler returns a Fiber v2 handler that upgrades the request to a
// WebSocket connection of hub (see Upgrade).
func Handler(hub *wshub.Hub) fiber.Handler {
	return func(c *fiber.Ctx) error {
		Upgrade(hub, c.Context())
		return nil
	}
}

// RequestHandler returns a fasthttp handler that upgrades every request to a
// WebSocket connection of hub (see Upgrade).
func RequestHandler(hub *wshub.Hub) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { Upgrade(hub, ctx) }
}

// Upgrade hands the request of ctx to hub. A request without "Upgrade:
// websocket" is answered with 426 Upgrade Required through fasthttp, and
// the connection stays fasthttp's. Any other is hijacked when the handler
// returns: the hub answers it on the connection itself, with 101 or with
// the status of a refusal (CheckOrigin, OnUpgrade, MaxConns, a closed hub),
// and serves the connection from then on.
func Upgrade(hub *wshub.Hub, ctx *fasthttp.RequestCtx) {
	if !hasToken(string(ctx.Request.Header.Peek(fasthttp.HeaderUpgrade)), "websocket") {
		ctx.Error("websocket upgrade required", fasthttp.StatusUpgradeRequired)
		ctx.Response.Header.Set(fasthttp.HeaderUpgrade, "websocket") // Error resets the header
		return
	}
	// Copied now: fasthttp reuses ctx once the hijack handler returns.
	r := newRequest(ctx)
	ctx.HijackSetNoResponse(true) // the hub writes the answer
	ctx.Hijack(func(nc net.Conn) { serve(hub, nc, r) })
}

// serve hands a hijacked connection to the hub. It runs on the goroutine
// fasthttp starts for the hijack, which returns at once when the hub takes
// the socket over; fasthttp then closes its own net.Conn, which the hub no
// longer uses.
func serve(hub *wshub.Hub, nc net.Conn, r *http.Request) {
	raw := nc
	if u, ok := nc.(interface{ UnsafeConn() net.Conn }); ok {
		raw = u.UnsafeConn() // fasthttp's hijackConn: its reader around the socket
	}
	switch raw.(type) {
	case *net.TCPConn, *net.UnixConn:
		hub.ServeConn(raw, r, buffered(nc))
		return
	}
	// No socket to take over. fasthttp closes the connection, and reuses
	// its reader, when this function returns, so it waits until the hub is
	// done with both.
	held := &heldConn{Conn: raw, r: nc, done: make(chan struct{})}
	if hub.ServeConn(held, r, nil) == nil {
		<-held.done
	}
}

// buffered returns what fasthttp's reader holds of the bytes the client sent
// after its request. nc reads from that reader first; with a deadline in the
// past, the read that would reach the socket fails at once instead.
func buffered(nc net.Conn) []byte {
	var b []byte
	nc.SetReadDeadline(time.Unix(1, 0))
	buf := make([]byte, 1024)
	for len(b) <= 64<<10 { // ServeConn refuses more, as will the hub
		n, err := nc.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	nc.SetReadDeadline(time.Time{})
	return b
}

// heldConn is a hijacked connection served on the hub's portable path: it
// reads through fasthttp's hijacked connection (and so its reader, which may
// hold bytes already), and writes and closes the connection under it. With
// Server.KeepHijackedConns unset, closing the hijacked connection itself
// does nothing, and the hub's reader would never wake.
//
// done is closed once the connection is closed and no read is in progress:
// from then on fasthttp may reuse its reader, which heldConn no longer
// touches.
type heldConn struct {
	net.Conn           // the connection under fasthttp's reader
	r        io.Reader // fasthttp's hijacked connection

	mu      sync.Mutex // guards reading and closed
	reading bool       // the hub's reader is in r.Read
	closed  bool
	done    chan struct{}
}

// Read reads through fasthttp's reader, until the connection is closed.
func (c *heldConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.reading = true
	c.mu.Unlock()
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.reading = false
	if c.closed {
		close(c.done)
	}
	c.mu.Unlock()
	return n, err
}

// Close closes the connection, which ends a read in progress, and lets the
// hijack goroutine return once no read is.
func (c *heldConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if !c.reading {
			close(c.done)
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// newRequest copies the request of ctx into an *http.Request for the hub's
// checks and OnUpgrade. Its context holds ctx's user values (Fiber's
// Locals).
func newRequest(ctx *fasthttp.RequestCtx) *http.Request {
	uri := string(ctx.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		u = &url.URL{Path: string(ctx.Path())}
	}
	header := make(http.Header, ctx.Request.Header.Len())
	for k, v := range ctx.Request.Header.All() {
		if string(k) != fasthttp.HeaderHost { // net/http keeps Host apart
			header.Add(string(k), string(v))
		}
	}
	proto := string(ctx.Request.Header.Protocol())
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		major, minor = 1, 1
	}
	var values map[any]any
	ctx.VisitUserValuesAll(func(k, v any) {
		if values == nil {
			values = make(map[any]any)
		}
		values[k] = v
	})
	r := &http.Request{
		Method:     string(ctx.Method()),
		URL:        u,
		RequestURI: uri,
		Proto:      proto,
		ProtoMajor: major,
		ProtoMinor: minor,
		Header:     header,
		Host:       string(ctx.Host()),
		RemoteAddr: ctx.RemoteAddr().String(),
		TLS:        ctx.TLSConnectionState(),
	}
	return r.WithContext(userValues{context.Background(), values})
}

// userValues is a request's context that holds fasthttp's user values.
type userValues struct {
	context.Context
	values map[any]any
}

// Value returns the user value of key, else the parent's value.
func (c userValues) Value(key any) any {
	if v, ok := c.values[key]; ok {
		return v
	}
	return c.Context.Value(key)
}

// hasToken reports whether the comma-separated list v holds token, in any
// case.
func hasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}
