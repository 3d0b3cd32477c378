//go:build unix

package load

import (
	"context"
	"net"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// DialSlow is Dial for slow readers: each connection's socket receive
// buffer is rcvbuf bytes (the kernel doubles it), set before the TCP
// handshake so that the window it advertises is that small too. What such
// a reader does not take then waits in the server's queue, where its
// slow-consumer policy acts, rather than in the kernel's buffers, which on
// loopback hold megabytes per connection.
func DialSlow(ctx context.Context, url string, n, rcvbuf int) ([]*Conn, []time.Duration, error) {
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	return dial(ctx, url, n, ws.Dialer{Timeout: 30 * time.Second, NetDial: nd.DialContext})
}
