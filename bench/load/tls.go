package load

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/gobwas/ws"
)

// InsecureTLS is the client configuration for the benchmarks' servers,
// whose certificates are self-signed and made at start: it trusts any
// certificate and asks for ALPN http/1.1, as a browser's WebSocket does.
// The key exchange is crypto/tls's default for both ends.
func InsecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
}

// DialTLS is Dial for wss:// URLs: n upgraded connections over TLS with
// cfg (InsecureTLS if nil), dialed up to 100 at a time, and the time each
// took, TLS handshake included. Each Conn reads and writes through its
// *tls.Conn.
func DialTLS(ctx context.Context, url string, n int, cfg *tls.Config) ([]*Conn, []time.Duration, error) {
	if cfg == nil {
		cfg = InsecureTLS()
	}
	return dial(ctx, url, n, ws.Dialer{Timeout: 30 * time.Second, TLSConfig: cfg})
}
