package wshub

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
)

// wss:// behind net/http. net/http runs the TLS handshake and hijacks the
// *tls.Conn; the hub can take such a connection onto its loops only if it
// supplied the transport under it from the start, which Hub.Listener does:
// every connection it accepts is a connIO passing reads and writes through
// to the socket, so that tls.Conn.NetConn, public API, hands it back to the
// hub at the hijack. The hub then switches it to loop mode as ServeTLS does
// after its own handshakes (connIO.takeSocket).

// Listener returns ln wrapped so that the hub can serve on its loops, with
// no goroutine of their own, the wss:// connections that net/http accepts
// from it, runs the TLS handshake of, and hands to ServeHTTP:
//
//	srv.ServeTLS(hub.Listener(ln), certFile, keyFile)
//	srv.Serve(tls.NewListener(hub.Listener(ln), cfg))
//
// Without it, a *tls.Conn hijacked by ServeHTTP (or given to ServeConn)
// takes the portable path: a goroutine and a 4 KiB read buffer for each
// connection, counted in Stats.Portable. A *tls.Conn made with tls.Server
// over one of its connections joins the loops through ServeConn too. Plain
// connections need no wrapper, but take no harm from it: ServeHTTP takes
// their descriptor either way.
//
// Until the upgrade, each connection it accepts behaves as the socket
// itself for the server (reads, writes, deadlines, addresses, CloseWrite,
// and ReadFrom, which keeps sendfile for plain HTTP responses), at a cost
// of 160 bytes; after the upgrade it still reports the socket's addresses
// to whoever kept the connection or the *tls.Conn over it (a ConnContext or
// ConnState hook), and nothing else of it is usable. A Unix socket's
// addresses are reported without their names. Its connections may be
// served by any hub. Closing ln closes it; the hub's Close and Shutdown do
// not: the server that serves it does.
func (h *Hub) Listener(ln net.Listener) net.Listener { return listener{ln} }

// listener is what Hub.Listener returns.
type listener struct{ net.Listener }

// Accept returns the next connection of ln as a transport the hub can take
// over later.
func (l listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newTransport(nc), nil
}

// ReadFrom passes a server's io.Copy to the socket before loop mode, where
// net.TCPConn sends files with sendfile or splice; tls.Conn never calls it.
func (x *connIO) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := x.nc.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{x}, r)
}

// writerOnly hides its writer's other methods from io.Copy.
type writerOnly struct{ io.Writer }

// CloseWrite shuts the socket's write side before loop mode: net/http does
// so before it closes a connection whose request body it did not read, so
// that the client sees the response rather than a reset.
func (x *connIO) CloseWrite() error {
	if cw, ok := x.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// plainConn returns the socket under nc if nc is a plain connection of
// Hub.Listener, which the hub then serves as if net/http had accepted the
// socket itself; otherwise nc.
func plainConn(nc net.Conn) net.Conn {
	if x, ok := nc.(*connIO); ok && x.tc == nil && x.nc != nil {
		return x.nc
	}
	return nc
}

// takeConn takes the socket under nc, a connection a server hands over, for
// the loops. A *tls.Conn whose handshake is over and whose transport is a
// connection of Hub.Listener comes with x, that transport, now in loop
// mode; a plain socket comes alone. It reports false, leaving nc as it was,
// for any other connection, which takes the portable path: a *tls.Conn over
// a socket of its own, or one whose handshake is still to come (the
// portable goroutine's first read runs it), a net.Pipe.
func takeConn(nc net.Conn) (fd int, x *connIO, ok bool) {
	tc, isTLS := nc.(*tls.Conn)
	if !isTLS {
		fd, ok = takeFD(nc)
		return fd, nil, ok
	}
	x, ours := tc.NetConn().(*connIO)
	if !ours || x.tc != nil || x.nc == nil || !tc.ConnectionState().HandshakeComplete {
		return -1, nil, false
	}
	if fd, ok = x.takeSocket(tc); !ok {
		return -1, nil, false
	}
	return fd, x, true
}
