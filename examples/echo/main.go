// Command echo serves a WebSocket echo at /ws: every message comes back to
// its sender unchanged.
//
//	go run ./examples/echo -addr 127.0.0.1:8080            # through net/http
//	go run ./examples/echo -addr 127.0.0.1:8080 -listener  # the hub's own listener
//
// It negotiates permessage-deflate with clients that offer it (-deflate=false
// turns that off), and -max-message raises the message limit for
// conformance suites, which send 16 MiB messages.
//
// With -stats it prints the number of connections, the heap and the
// goroutine count every few seconds, which is how the idle-memory figures in
// the README were watched.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/wshub/wshub"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	var cfg config
	flag.BoolVar(&cfg.own, "listener", false, "serve with the hub's own listener instead of net/http")
	flag.DurationVar(&cfg.stats, "stats", 0, "print connection and memory figures at this interval (0: never)")
	flag.BoolVar(&cfg.deflate, "deflate", true, "negotiate permessage-deflate with clients that offer it")
	flag.Int64Var(&cfg.maxMessage, "max-message", 0, "the largest message accepted, in bytes (0: wshub's default, 1 MiB; conformance suites send 16 MiB)")
	flag.Parse()
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
}

func run(addr string, cfg config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Printf("echo listening on ws://%s/ws (own listener: %v, deflate: %v)", ln.Addr(), cfg.own, cfg.deflate)
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
	if cfg.own {
		go func() { errc <- hub.Serve(ln) }()
	} else {
		mux := http.NewServeMux()
		mux.Handle("/ws", hub)
		srv = &http.Server{
			Handler: mux,
			// Bounded headers and header time: net/http's defaults let a
			// client hold a 1 MiB header for as long as it likes.
			MaxHeaderBytes:    16 << 10,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
		}
		go func() { errc <- srv.Serve(ln) }()
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
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := hub.Stats()
		fmt.Printf("conns=%d deflating=%d compressed=%d buffered=%d paused=%d heap_inuse=%d sys=%d goroutines=%d\n",
			hub.Len(), st.Deflating, st.Compressed, st.BufferedBytes, st.Paused, ms.HeapInuse, ms.Sys, runtime.NumGoroutine())
	}
}
