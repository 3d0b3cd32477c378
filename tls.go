package wshub

import (
	"crypto/tls"
	"net"
	"slices"
)

// ServeTLS is Serve for wss://: it accepts connections on ln, runs the TLS
// handshake with cfg and upgrades them without net/http. cfg must hold a
// certificate (Certificates, GetCertificate or GetConfigForClient); the hub
// offers ALPN "http/1.1" if cfg.NextProtos names nothing. It returns like
// Serve.
func (h *Hub) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	return h.Serve(tls.NewListener(ln, tlsConfig(cfg)))
}

// ListenAndServeTLS listens on the TCP address addr and calls ServeTLS.
func (h *Hub) ListenAndServeTLS(addr string, cfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return h.ServeTLS(ln, cfg)
}

// tlsConfig returns the configuration the own listener serves with: cfg,
// cloned, offering ALPN "http/1.1" (WebSockets are upgraded over HTTP/1.1
// only) unless it names protocols itself.
func tlsConfig(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"http/1.1"}
	} else if !slices.Contains(cfg.NextProtos, "http/1.1") {
		cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
	}
	return cfg
}
