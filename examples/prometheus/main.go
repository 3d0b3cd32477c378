// Command prometheus serves a WebSocket room chat and its metrics for
// Prometheus:
//
//	cd examples/prometheus && go run . -addr 127.0.0.1:8080
//	curl -s 127.0.0.1:8080/metrics | grep ^wshub_
//
// ws://ADDR/ws?room=NAME joins a room; each message goes to the room's other
// members. /metrics serves the hub's statistics (wshubprom, registered in
// one line) beside the Go runtime's and the process's, which the default
// registry holds. The hub pings silent clients every 25 s, so the pong
// round-trip summary fills as clients stay. SIGTERM or Ctrl-C shuts the
// server and then the hub down gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wshub/wshub"
	wshubprom "github.com/wshub/wshub/metrics/prometheus"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("chat on ws://%s/ws?room=NAME, metrics on http://%s/metrics", ln.Addr(), ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, ln, prometheus.DefaultRegisterer, promhttp.Handler()); err != nil {
		log.Fatal(err)
	}
}

// newHub returns the room chat's hub.
func newHub() (*wshub.Hub, error) {
	return wshub.New(&wshub.Options{
		MaxConns: 10000,
		OnUpgrade: func(r *http.Request) (any, error) {
			room := r.URL.Query().Get("room")
			if room == "" {
				return nil, &wshub.UpgradeError{Status: http.StatusBadRequest, Reason: "?room= required"}
			}
			return room, nil
		},
		OnOpen: func(c *wshub.Conn) { c.Hub().Channel(c.Data().(string)).Subscribe(c) },
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			c.Hub().Channel(c.Data().(string)).PublishExcept(typ, data, c)
		},
	})
}

// serve runs the chat on ln, with the hub's collector registered in reg and
// metrics served by the handler, until ctx ends.
func serve(ctx context.Context, ln net.Listener, reg prometheus.Registerer, metrics http.Handler) error {
	hub, err := newHub()
	if err != nil {
		return err
	}
	if err := reg.Register(wshubprom.New(hub, nil)); err != nil {
		hub.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /metrics", metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		hub.Close()
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	if e := <-served; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return errors.Join(err, hub.Shutdown(shutdown))
}
