// Command expvar serves a WebSocket price feed with the hub's limits turned
// on, and exports Hub.Stats with the standard library's expvar:
//
//	go run ./examples/expvar -addr 127.0.0.1:8080
//	curl -s 127.0.0.1:8080/debug/vars | jq .wshub
//
// Every client is subscribed to "ticks", published ten times a second with
// SlowConflate (a client that reads late gets the newest tick in place of
// those it missed, not a backlog); a client may send 5 messages a second (bursts of 10); the hub
// takes at most -max-conns connections and refuses upgrades with 503 while
// more than 64 MiB wait for slow clients. OnEvent counts each limit it
// enforces in the "wshub_events" map. On SIGTERM the hub drains at -drain
// connections per second with 1012 Service Restart.
package main

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wshub/wshub"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	maxConns := flag.Int("max-conns", 10000, "connections the hub accepts")
	drain := flag.Int("drain", 1000, "connections closed per second on shutdown")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("feed on ws://%s/ws, stats on http://%s/debug/vars", ln.Addr(), ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, ln, *maxConns, *drain, 100*time.Millisecond); err != nil {
		log.Fatal(err)
	}
}

// events counts OnEvent's events by kind and reason. expvar.Map is safe
// for concurrent use and quick, as OnEvent requires.
var events = expvar.NewMap("wshub_events")

// served is the hub being served. expvar's names are global to the process,
// so "wshub" is published once and reads the current hub's Stats, computed
// on each request to /debug/vars.
var served atomic.Pointer[wshub.Hub]

func init() {
	expvar.Publish("wshub", expvar.Func(func() any {
		if h := served.Load(); h != nil {
			return h.Stats()
		}
		return nil
	}))
}

func newHub(maxConns, drain int) (*wshub.Hub, error) {
	hub, err := wshub.New(&wshub.Options{
		MaxConns:            maxConns,
		MaxTotalQueuedBytes: 64 << 20,
		MaxQueuedBytes:      64 << 10,
		MessageRate:         5,
		MessageBurst:        10,
		ChannelPolicy: func(channel string) wshub.SlowPolicy {
			if channel == "ticks" {
				return wshub.SlowConflate // only the latest price matters
			}
			return wshub.SlowDefault
		},
		OnOpen: func(c *wshub.Conn) { c.Hub().Channel("ticks").Subscribe(c) },
		OnEvent: func(e wshub.Event) {
			events.Add(fmt.Sprintf("%s: %s", kindName(e.Kind), e.Reason), 1)
		},
		DrainRate: drain,
		DrainCode: wshub.CloseServiceRestart,
	})
	if err != nil {
		return nil, err
	}
	served.Store(hub)
	return hub, nil
}

func kindName(k wshub.EventKind) string {
	switch k {
	case wshub.EventRejected:
		return "rejected"
	case wshub.EventDropped:
		return "dropped"
	case wshub.EventClosed:
		return "closed"
	}
	return "other"
}

// routes returns the feed's routes: the hub at /ws, and the expvar
// variables, Hub.Stats among them, at /debug/vars.
func routes(hub *wshub.Hub) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/debug/vars", expvar.Handler())
	return mux
}

// feed publishes a price to "ticks" at each interval until ctx ends.
func feed(ctx context.Context, hub *wshub.Hub, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	price := 100.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			price += float64(now.UnixNano()%7-3) / 100
			hub.Channel("ticks").Publish(wshub.Text, fmt.Appendf(nil, `{"t":%d,"price":%.2f}`, now.UnixMilli(), price))
		}
	}
}

// serve runs the feed on ln until ctx ends, then drains.
func serve(ctx context.Context, ln net.Listener, maxConns, drain int, every time.Duration) error {
	hub, err := newHub(maxConns, drain)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler: routes(hub),
		// Bounded headers and header time: net/http's defaults let a
		// client hold a 1 MiB header for as long as it likes.
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	feedCtx, stopFeed := context.WithCancel(ctx)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		feed(feedCtx, hub, every)
	}()
	defer func() {
		stopFeed()
		<-fed
	}()

	select {
	case err := <-errc:
		hub.Close()
		return err
	case <-ctx.Done():
	}
	// Stop taking requests, then drain the connections at the set pace.
	shut, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv.Shutdown(shut)
	if err := hub.Shutdown(shut); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
