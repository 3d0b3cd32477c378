// Command echo serves a WebSocket echo at /ws: every message comes back to
// its sender unchanged.
//
//	go run ./examples/echo -addr 127.0.0.1:8080            # through net/http
//	go run ./examples/echo -addr 127.0.0.1:8080 -listener  # the hub's own listener
//
// With -tls it serves wss:// instead, on either door: net/http's
// ServeTLS, or with -listener the hub's ServeTLS. The certificate is made
// in memory at start (self-signed, ECDSA P-256, for localhost and
// 127.0.0.1: tell clients to trust it, e.g. Chromium's
// --ignore-certificate-errors); -cert and -key name PEM files of a real one
// instead, and imply -tls.
//
//	go run ./examples/echo -tls              # wss://127.0.0.1:8080/ws
//	go run ./examples/echo -tls -listener
//	go run ./examples/echo -cert fullchain.pem -key privkey.pem
//
// It negotiates permessage-deflate with clients that offer it (-deflate=false
// turns that off), and -max-message raises the message limit for
// conformance suites, which send 16 MiB messages.
//
// With -stats it prints the number of connections, the heap and the
// goroutine count every few seconds, which is how the idle-memory figures in
// the README were watched. It collects garbage and returns freed memory to
// the system before each line, so that the process's RSS, read from
// /proc beside it, shows what the connections hold (bench/cmd/tlsidle
// reads it so).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/examples/internal/tlsconf"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	var cfg config
	flag.BoolVar(&cfg.own, "listener", false, "serve with the hub's own listener instead of net/http")
	flag.DurationVar(&cfg.stats, "stats", 0, "print connection and memory figures at this interval (0: never)")
	flag.BoolVar(&cfg.deflate, "deflate", true, "negotiate permessage-deflate with clients that offer it")
	flag.Int64Var(&cfg.maxMessage, "max-message", 0, "the largest message accepted, in bytes (0: wshub's default, 1 MiB; conformance suites send 16 MiB)")
	useTLS := flag.Bool("tls", false, "serve wss:// with a self-signed certificate made in memory (or -cert and -key)")
	certFile := flag.String("cert", "", "with -key: serve wss:// with this PEM certificate (chain)")
	keyFile := flag.String("key", "", "the PEM private key of -cert")
	flag.Parse()
	if *useTLS || *certFile != "" || *keyFile != "" {
		var err error
		if cfg.tls, err = tlsconf.Config(*certFile, *keyFile); err != nil {
			log.Fatal(err)
		}
	}
	if err := run(*addr, cfg); err != nil {
		log.Fatal(err)
	}
}

// config is what the flags choose.
type config struct {
	own        bool
	stats      time.Duration
	deflate    bool
	maxMessage int64
	tls        *tls.Config // wss:// if set
}

func run(addr string, cfg config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	scheme := "ws"
	if cfg.tls != nil {
		scheme = "wss"
	}
	log.Printf("echo listening on %s://%s/ws (own listener: %v, deflate: %v)", scheme, ln.Addr(), cfg.own, cfg.deflate)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, ln, cfg)
}

// newHub returns the echo's hub: every message goes back to its sender.
func newHub(cfg config) (*wshub.Hub, error) {
	var compression *wshub.Compression
	if cfg.deflate {
		// permessage-deflate for the clients that offer it (browsers and
		// Node's ws do).
		compression = &wshub.Compression{}
	}
	return wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			// WriteMessage never blocks: the bytes are written now or queued.
			c.WriteMessage(typ, data)
		},
		// The echo serves any origin: it is a test target, not an app with
		// cookies to protect.
		CheckOrigin:    func(*http.Request) bool { return true },
		Compression:    compression,
		MaxMessageSize: cfg.maxMessage, // the inbound budget follows: 4x at least
	})
}

// serve runs the echo on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, cfg config) error {
	hub, err := newHub(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	if cfg.stats > 0 {
		go printStats(ctx, hub, cfg.stats)
	}

	var srv *http.Server
	errc := make(chan error, 1)
	switch {
	case cfg.own && cfg.tls != nil:
		go func() { errc <- hub.ServeTLS(ln, cfg.tls) }()
	case cfg.own:
		go func() { errc <- hub.Serve(ln) }()
	default:
		mux := http.NewServeMux()
		mux.Handle("/ws", hub)
		srv = &http.Server{
			Handler: mux,
			// Bounded headers and header time: net/http's defaults let a
			// client hold a 1 MiB header for as long as it likes.
			MaxHeaderBytes:    16 << 10,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
			// net/http clones it, keeping its certificate, and offers
			// ALPN h2 and http/1.1; a WebSocket client asks for
			// http/1.1 (the upgrade is HTTP/1.1's).
			TLSConfig: cfg.tls,
		}
		if cfg.tls != nil {
			go func() { errc <- srv.ServeTLS(ln, "", "") }()
		} else {
			go func() { errc <- srv.Serve(ln) }()
		}
	}

	select {
	case err := <-errc:
		hub.Close()
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if srv != nil {
		srv.Shutdown(shutdownCtx)
	}
	if err := hub.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, wshub.ErrHubClosed) && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func printStats(ctx context.Context, hub *wshub.Hub, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Twice: the first collection only moves the pools' buffers to
		// their victim caches.
		debug.FreeOSMemory()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := hub.Stats()
		fmt.Printf("conns=%d deflating=%d compressed=%d buffered=%d paused=%d heap_inuse=%d sys=%d goroutines=%d\n",
			hub.Len(), st.Deflating, st.Compressed, st.BufferedBytes, st.Paused, ms.HeapInuse, ms.Sys, runtime.NumGoroutine())
	}
}
