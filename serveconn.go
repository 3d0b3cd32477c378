package wshub

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// The third door: connections that another server accepted, and perhaps
// read from, before handing them over (fasthttp and Fiber, servers with an
// accept loop of their own, net.Pipe in tests). Behind it are the checks and
// the descriptor takeover of the other two.

// maxServeConnBuffered bounds the bytes ServeConn takes besides the socket,
// its buffered argument, which it copies and which are not charged to the
// inbound budget. A server's read buffer holds less (fasthttp's and
// net/http's are 4 KiB by default); a client that sent more before its
// upgrade was answered is refused with 400.
const maxServeConnBuffered = 64 << 10

// ServeConn serves nc, a connection that another server accepted, as the
// hub's other doors serve theirs: with the same limits, origin check and
// OnUpgrade, and, when nc is a plain *net.TCPConn or *net.UnixConn, by
// taking its descriptor over (nc is closed; the caller's goroutine and
// buffers are free once ServeConn returns). A *tls.Conn is taken onto the
// loops the same way when its handshake is over and it was made over a
// connection of Hub.Listener (tls.Server(conn, cfg) with conn accepted
// from hub.Listener(ln)); the hub then drives it as it drives those of
// ServeTLS. Any other net.Conn, such as another *tls.Conn, one whose
// handshake is still to come, or one end of a net.Pipe, is served on the
// portable path, a goroutine each (counted in Stats.Portable), and nc must
// then stay usable after the caller returns. Either way nc is the hub's
// from the call on: the caller must not read, write or close it again.
//
// r is the upgrade request, if the other server has read and parsed it, as
// fasthttp does; buffered then holds the bytes it read from nc past the
// request (its reader's buffered bytes), which the hub handles before
// anything it reads itself. ServeConn answers r as ServeHTTP does: 426
// without "Upgrade: websocket", 503 after Close or Shutdown or past
// MaxConns, the status of a refusal by CheckOrigin or OnUpgrade, 101
// otherwise; the answer is written to nc, within HandshakeTimeout, in the
// caller's goroutine.
//
// With r nil, buffered holds all that was read from nc so far, the request
// included, as raw bytes: ServeConn parses it as the own listener does. This
// is the form for servers that read before they know the protocol (a
// sniffer that tells TLS or HTTP/2 from WebSocket on one port, an accept
// loop of the application's). An event loop that keeps its descriptors for
// itself, as gnet does, cannot hand one over; give the hub a listener of
// its own (Serve) instead.
// With nothing buffered the request is read without blocking by the poller,
// within HandshakeTimeout, as for a connection accepted by Serve; with part
// of a request buffered, ServeConn reads the rest itself, blocking the
// caller for at most HandshakeTimeout.
//
// ServeConn returns nil once the connection is the poller's (OnOpen follows
// on a hub goroutine), or, after answering and closing nc, the rejection
// (an *UpgradeError), ErrHubClosed, or the handshake's or the network's
// error. buffered is not retained: it is copied (64 KiB at most; more is
// refused with 400), and may be reused.
func (h *Hub) ServeConn(nc net.Conn, r *http.Request, buffered []byte) error {
	w := &connResponse{nc: nc, timeout: h.opts.HandshakeTimeout}
	if len(buffered) > maxServeConnBuffered {
		return h.reject(w, rejection(http.StatusBadRequest, "too many bytes before the upgrade"))
	}
	// A deadline the other server left would end the portable reader.
	nc.SetDeadline(time.Time{})
	if r != nil {
		return h.answerRequest(w, r, buffered)
	}
	if h.isClosed() {
		h.reject(w, rejection(http.StatusServiceUnavailable, "shutting down"))
		return ErrHubClosed
	}
	if len(buffered) == 0 {
		return h.adopt(h.handshakingConn(nc.RemoteAddr()), nc, nil)
	}
	return h.answerBytes(w, buffered)
}

// answerBytes answers the upgrade request at the start of b, reading the
// rest of it from w.nc if b holds only part of it, and hands the connection
// to the poller with the bytes that followed the request.
func (h *Hub) answerBytes(w *connResponse, b []byte) error {
	n, rej := requestHead(b)
	if n == 0 && rej == nil {
		// Only part of the request came with the hand-off: read the rest
		// here, in a buffer of its own, within HandshakeTimeout.
		b = append(make([]byte, 0, maxRequestSize+1), b...)
		w.nc.SetReadDeadline(time.Now().Add(w.timeout))
		for n == 0 && rej == nil {
			k, err := w.nc.Read(b[len(b):cap(b)])
			b = b[:len(b)+k]
			if err != nil && k == 0 {
				w.nc.Close()
				return fmt.Errorf("wshub: reading the upgrade request: %w", err)
			}
			n, rej = requestHead(b)
		}
		w.nc.SetReadDeadline(time.Time{})
	}
	var u upgrade
	var err error
	if rej == nil {
		u, rej, err = h.answerHead(b[:n], w.nc.RemoteAddr())
	}
	switch {
	case rej != nil:
		return h.reject(w, rej)
	case err != nil: // gobwas's answer: bad method, version or key
		w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
		w.nc.Write(u.resp)
		w.nc.Close()
		return err
	}
	c := h.openedConn(u)
	c.keepEarly(b[n:], nil)
	return h.adopt(c, w.nc, u.resp)
}
