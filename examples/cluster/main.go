// Command cluster is one node of a chat spread over several processes: a
// client joins a room with ws://ADDR/ws?room=NAME, every text message it
// sends is published to the room, and NATS carries the room to the other
// nodes, whose members get it too. Run two nodes and a NATS server (the
// first node can embed one):
//
//	cd examples/cluster
//	go run . -addr 127.0.0.1:8081 -embed-nats 127.0.0.1:4222 &
//	go run . -addr 127.0.0.1:8082 -nats nats://127.0.0.1:4222 &
//	curl -d 'hello from 8081' '127.0.0.1:8081/publish?room=lobby'
//
// A client of 8082 in room "lobby" gets what is published through 8081.
// With ?user=U a client joins as user U, and GET /presence?room=NAME shows
// who is in the room on every node (see presence.go).
// POST /publish?room=NAME publishes the request body from outside, as a
// backend service would; GET /stats shows the hub's Stats, the broker's
// health among them.
//
// A node starts whether or not NATS is up, and keeps serving while NATS is
// away: its members get what is published on it, publishes to the other
// nodes fail at once (a POST answers 502), and it logs one line when NATS
// goes and one when it is back, when the rooms joined meanwhile are
// subscribed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/wshub/wshub"
	natsbroker "github.com/wshub/wshub/broker/nats"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	natsURL := flag.String("nats", nats.DefaultURL, "NATS server to join")
	embed := flag.String("embed-nats", "", "run a NATS server in this process at this address (host:port) and join it")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *embed != "" {
		ns, err := startNATS(*embed)
		if err != nil {
			log.Fatal(err)
		}
		defer ns.Shutdown()
		*natsURL = ns.ClientURL()
		log.Printf("NATS server on %s", *natsURL)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("node on ws://%s/ws?room=lobby, joined %s", ln.Addr(), *natsURL)
	if err := serve(ctx, ln, *natsURL); err != nil {
		log.Fatal(err)
	}
}

// startNATS starts an in-process nats-server at addr.
func startNATS(addr string) (*server.Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: p, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("nats-server did not start")
	}
	return ns, nil
}

// serve runs a node on ln, joined to the NATS server at natsURL, until ctx
// ends.
func serve(ctx context.Context, ln net.Listener, natsURL string) error {
	// RetryOnFailedConnect: the node starts while NATS is down, and joins
	// it when it comes.
	nc, err := nats.Connect(natsURL, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.Name("wshub cluster node "+ln.Addr().String()))
	if err != nil {
		ln.Close()
		return err
	}
	defer nc.Close() // after the hub's shutdown, deferred below
	hub, err := wshub.New(&wshub.Options{
		Broker:           natsbroker.New(nc, "cluster"),
		ChannelPresence:  roomPresence, // see presence.go
		PresenceInterval: *presenceTick,
		OnUpgrade: func(r *http.Request) (any, error) {
			room := r.URL.Query().Get("room")
			if room == "" || len(room) > 64 {
				return nil, &wshub.UpgradeError{Status: http.StatusBadRequest, Reason: "?room= (1-64 bytes) is required"}
			}
			return memberOf(room, r)
		},
		OnOpen: join,
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			// To every member of the room, on every node. If NATS is
			// down, this node's members still get it; the others cannot
			// (counted in Stats.BrokerRefused, not logged one by one).
			c.Hub().Channel(c.Data().(member).room).Publish(typ, data)
		},
		OnEvent: func(e wshub.Event) {
			switch e.Kind {
			case wshub.EventBrokerDown, wshub.EventBrokerUp, wshub.EventBrokerLate:
				log.Printf("%s: %s", e.Kind, e.Reason) // once per change, or a second
			}
		},
	})
	if err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.HandleFunc("GET /presence", presenceHandler(hub))
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(hub.Stats())
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		room := r.URL.Query().Get("room")
		if err != nil || room == "" {
			http.Error(w, "POST /publish?room=NAME with the message as body", http.StatusBadRequest)
			return
		}
		if _, err := hub.Channel(room).Publish(wshub.Text, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{
		Handler: mux,
		// Bounded headers and header time: net/http's defaults let a
		// client hold a 1 MiB header for as long as it likes.
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		hub.Close()
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shut)
	return hub.Shutdown(shut)
}
