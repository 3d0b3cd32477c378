// Command echo serves a WebSocket echo at /ws: every message comes back to
// its sender unchanged.
//
//	go run ./examples/echo -addr 127.0.0.1:8080            # through net/http
//	go run ./examples/echo -addr 127.0.0.1:8080 -listener  # the hub's own listener
//
// With -tls it serves wss:// instead, on either door: net/http's
// ServeTLS over hub.Listener(ln), which keeps the connections on the hub's
// loops, or with -listener the hub's ServeTLS. The certificate is made
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
// turns that off).
//
// -max-message N sets what an echo of N bytes needs, for conformance
// suites (Autobahn sends 16 MiB messages) and large transfers:
//
//	go run ./examples/echo -max-message 67108864   # echoes up to 64 MiB
//
// The hub then accepts messages of up to N bytes (MaxMessageSize; the
// default is 1 MiB) and queues up to N plus a frame header for each
// connection (MaxQueuedBytes, never less than its 4 MiB default): an echo
// goes back as one frame, which must fit in the queue whole, since a write
// larger than the queue is refused before any of it is sent
// (wshub.ErrMessageTooBig). The inbound budget (MaxTotalBufferedBytes)
// follows by itself: 4 x N once that is over its 64 MiB default. Each
// connection may then hold up to N bytes queued for a client that does not
// read: a test target's setting, not a default for a public server.
//
// With -stats it prints the number of connections, the heap and the
// goroutine count every few seconds, which is how the idle-memory figures in
// the README were watched. It collects garbage and returns freed memory to
// the system before each line, so that the process's RSS, read from
// /proc beside it, shows what the connections hold (bench/cmd/results
// reads it so).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
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
	addr, cfg, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		log.Fatal(err)
	}
	if err := run(addr, cfg); err != nil {
		log.Fatal(err)
	}
}

// parseFlags reads the command line args with fs: the address to listen
// on, and the config.
func parseFlags(fs *flag.FlagSet, args []string) (addr string, cfg config, err error) {
	fs.StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.BoolVar(&cfg.own, "listener", false, "serve with the hub's own listener instead of net/http")
	fs.DurationVar(&cfg.stats, "stats", 0, "print connection and memory figures at this interval (0: never)")
	fs.BoolVar(&cfg.deflate, "deflate", true, "negotiate permessage-deflate with clients that offer it")
	fs.Int64Var(&cfg.maxMessage, "max-message", 0, "echo messages of up to this many bytes: the message limit, and the write queue to hold the echo whole (0: wshub's defaults, 1 MiB messages; conformance suites send 16 MiB)")
	fs.IntVar(&cfg.maxConnsPerAddr, "max-conns-per-addr", 0, "connections one client address may hold; more get 429 (0: off)")
	fs.Float64Var(&cfg.upgradesPerAddr, "upgrades-per-addr", 0, "upgrades per second one client address may make; more get 429 with Retry-After (0: off)")
	useTLS := fs.Bool("tls", false, "serve wss:// with a self-signed certificate made in memory (or -cert and -key)")
	certFile := fs.String("cert", "", "with -key: serve wss:// with this PEM certificate (chain)")
	keyFile := fs.String("key", "", "the PEM private key of -cert")
	if err := fs.Parse(args); err != nil {
		return "", config{}, err
	}
	if cfg.maxMessage < 0 {
		return "", config{}, fmt.Errorf("-max-message %d: negative", cfg.maxMessage)
	}
	if *useTLS || *certFile != "" || *keyFile != "" {
		if cfg.tls, err = tlsconf.Config(*certFile, *keyFile); err != nil {
			return "", config{}, err
		}
	}
	return addr, cfg, nil
}

// config is what the flags choose.
type config struct {
	own        bool
	stats      time.Duration
	deflate    bool
	maxMessage int64
	tls        *tls.Config // wss:// if set

	maxConnsPerAddr int     // Options.MaxConnsPerAddr
	upgradesPerAddr float64 // Options.UpgradesPerAddr
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
	return wshub.New(hubOptions(cfg))
}

// frameHeader is the most a frame header takes: 2 bytes, 8 of length and
// a client's 4-byte mask (the hub's frames have none).
const frameHeader = 14

// defaultQueue is wshub's default MaxQueuedBytes.
const defaultQueue = 4 << 20

// hubOptions returns the echo hub's options for cfg.
func hubOptions(cfg config) *wshub.Options {
	var compression *wshub.Compression
	if cfg.deflate {
		// permessage-deflate for the clients that offer it (browsers and
		// Node's ws do).
		compression = &wshub.Compression{}
	}
	opts := &wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			// WriteMessage never blocks: the bytes are written now or
			// queued. A message whose frame could not fit in the queue
			// whole is refused before any of it is sent; hubOptions makes
			// the queue large enough for any message the hub accepts, so
			// this is only for code copied from here with other limits.
			if err := c.WriteMessage(typ, data); errors.Is(err, wshub.ErrMessageTooBig) {
				c.Close(wshub.CloseMessageTooBig, "too big to echo")
			}
		},
		// The echo serves any origin: it is a test target, not an app with
		// cookies to protect.
		CheckOrigin: func(*http.Request) bool { return true },
		Compression: compression,

		MaxConnsPerAddr: cfg.maxConnsPerAddr,
		UpgradesPerAddr: cfg.upgradesPerAddr,
	}
	if n := cfg.maxMessage; n > 0 {
		// The largest message a peer may send, and so the largest echo.
		// The inbound budget, MaxTotalBufferedBytes, follows by itself:
		// max(64 MiB, 4 x n).
		opts.MaxMessageSize = n
		// An echo is one frame, written or queued whole: the queue holds
		// n and a header, and never less than by default. (Compressed, an
		// echo is only sent if it came out smaller.)
		queue := int64(math.MaxInt)
		if n < queue-frameHeader {
			queue = max(n+frameHeader, defaultQueue)
		}
		opts.MaxQueuedBytes = int(queue)
	}
	return opts
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
			// Over hub.Listener, net/http's *tls.Conns run on the hub's
			// loops after the upgrade; over ln itself, each would keep a
			// goroutine.
			go func() { errc <- srv.ServeTLS(hub.Listener(ln), "", "") }()
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
