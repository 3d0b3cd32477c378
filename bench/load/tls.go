package load

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"sync"
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
	d := ws.Dialer{Timeout: 30 * time.Second, TLSConfig: cfg}
	conns := make([]*Conn, n)
	lat := make([]time.Duration, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			nc, br, _, err := d.Dial(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			if _, ok := nc.(*tls.Conn); !ok {
				nc.Close()
				errs <- fmt.Errorf("%s: not a TLS connection", url)
				return
			}
			if br == nil {
				br = bufio.NewReaderSize(nc, 4096)
			}
			lat[i] = time.Since(start)
			conns[i] = &Conn{Conn: nc, br: br}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	return conns, lat, nil
}
