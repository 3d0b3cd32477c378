// Command cluster is one node of a chat spread over several processes: a
// client joins a room with ws://ADDR/ws?room=NAME, every text message it
// sends is published to the room, and a broker (NATS, or Redis) carries the
// room to the other nodes, whose members get it too. Run two nodes and a
// NATS server (the first node can embed one):
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
// health among them. With -redis redis://HOST:PORT the nodes use Redis
// instead of NATS.
//
// Rooms remember (wshub.Options.ChannelHistory): each message reaches the
// clients as one JSON text frame with its position in the room's history,
//
//	{"room":"lobby","offset":7,"epoch":"l2x9...","data":"hello"}
//
// kept in a JetStream stream (or a Redis Stream), so that the positions
// are the same on every node. A client that comes back, to any node, with
// the last position it saw, ws://ADDR/ws?room=lobby&offset=7&epoch=l2x9...,
// first gets the room's messages after it, in order, then
// {"recovered":true}, then the live ones; if the history does not reach
// back that far (-history messages, -history-age old), or its epoch is
// gone (the stream was deleted), it gets {"recovered":false,"epoch":"..."}
// with the current epoch, then the live ones, and should reload.
//
// A node starts whether or not its broker is up, and keeps serving while
// it is away: publishes fail at once (a POST answers 502, and with a
// history no member gets them, since the stream gives their positions),
// and it logs one line when the broker goes and one when it is back, when
// the rooms joined meanwhile are subscribed and caught up from the stream.
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
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/wshub/wshub"
	natsbroker "github.com/wshub/wshub/broker/nats"
	redisbroker "github.com/wshub/wshub/broker/redis"
)

// config is a node's: its broker, and what its rooms remember.
type config struct {
	natsURL  string // the NATS server to join, unless redisURL is set
	redisURL string
	history  int           // messages a room keeps for clients that come back
	age      time.Duration // and for how long
}

func main() {
	var cfg config
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	flag.StringVar(&cfg.natsURL, "nats", nats.DefaultURL, "NATS server (with JetStream) to join")
	embed := flag.String("embed-nats", "", "run a NATS server with JetStream in this process at this address (host:port) and join it")
	flag.StringVar(&cfg.redisURL, "redis", "", "use the Redis server at this URL (redis://host:port) instead of NATS")
	flag.IntVar(&cfg.history, "history", 100, "messages each room keeps for clients that come back (0: none)")
	flag.DurationVar(&cfg.age, "history-age", 2*time.Minute, "how long a room keeps a message for clients that come back")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *embed != "" {
		ns, err := startNATS(*embed, filepath.Join(os.TempDir(), "wshub-cluster-nats-"+*embed))
		if err != nil {
			log.Fatal(err)
		}
		defer ns.Shutdown()
		cfg.natsURL = ns.ClientURL()
		log.Printf("NATS server on %s, JetStream in %s", cfg.natsURL, ns.StoreDir())
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	joined := cfg.natsURL
	if cfg.redisURL != "" {
		joined = cfg.redisURL
	}
	log.Printf("node on ws://%s/ws?room=lobby, joined %s", ln.Addr(), joined)
	if err := serve(ctx, ln, cfg); err != nil {
		log.Fatal(err)
	}
}

// startNATS starts an in-process nats-server at addr, with JetStream
// keeping its streams in dir.
func startNATS(addr, dir string) (*server.Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: p, NoSigs: true, NoLog: true, JetStream: true, StoreDir: dir})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("nats-server did not start")
	}
	return ns, nil
}

// connectBroker connects to the configured broker; close, called after the
// hub is closed, disconnects.
func connectBroker(cfg config, name string) (b wshub.Broker, close func(), err error) {
	if cfg.redisURL != "" {
		o, err := redis.ParseURL(cfg.redisURL)
		if err != nil {
			return nil, nil, err
		}
		// Without it, a hung Redis holds a publish for ReadTimeout times
		// the retries, past the hub's BrokerTimeout.
		o.ContextTimeoutEnabled = true
		rdb := redis.NewClient(o)
		rb := redisbroker.New(rdb, "cluster")
		return rb, func() { rb.Close(); rdb.Close() }, nil
	}
	// RetryOnFailedConnect: the node starts while NATS is down, and joins
	// it when it comes.
	nc, err := nats.Connect(cfg.natsURL, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.Name(name))
	if err != nil {
		return nil, nil, err
	}
	return natsbroker.New(nc, "cluster"), nc.Close, nil
}

// A client is what a connection's upgrade request said: its room, and the
// position it comes back from, if any.
type client struct {
	room  string
	user  string // ?user=, the connection's user (see presence.go)
	since *wshub.Position
}

// The frames of the wire contract: a message, and the end of a recovery.
type (
	message struct {
		Room   string `json:"room"`
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
		Data   string `json:"data"`
	}
	recovered struct {
		Recovered bool   `json:"recovered"`
		Epoch     string `json:"epoch,omitempty"`
	}
)

// parseClient reads ?room=, and ?offset= with ?epoch= for a client that
// comes back.
func parseClient(r *http.Request) (any, error) {
	q := r.URL.Query()
	c := &client{room: q.Get("room")}
	if c.room == "" || len(c.room) > 64 {
		return nil, &wshub.UpgradeError{Status: http.StatusBadRequest, Reason: "?room= (1-64 bytes) is required"}
	}
	var err error
	if c.user, err = userOf(r); err != nil {
		return nil, err
	}
	if q.Has("offset") {
		off, err := strconv.ParseUint(q.Get("offset"), 10, 64)
		if err != nil || len(q.Get("epoch")) > 64 {
			return nil, &wshub.UpgradeError{Status: http.StatusBadRequest, Reason: "?offset= must be a number, ?epoch= at most 64 bytes"}
		}
		c.since = &wshub.Position{Offset: off, Epoch: q.Get("epoch")}
	}
	return c, nil
}

// serve runs a node on ln, joined to the configured broker, until ctx
// ends.
func serve(ctx context.Context, ln net.Listener, cfg config) error {
	broker, closeBroker, err := connectBroker(cfg, "wshub cluster node "+ln.Addr().String())
	if err != nil {
		ln.Close()
		return err
	}
	defer closeBroker() // after the hub's shutdown, deferred below
	opts := &wshub.Options{
		Broker:    broker,
		OnUpgrade: parseClient,
		OnOpen: func(c *wshub.Conn) {
			cl := c.Data().(*client)
			c.SetUser(cl.user) // before the room, whose presence counts it under its user
			ch := c.Hub().Channel(cl.room)
			if cl.since == nil {
				ch.Subscribe(c)
				return
			}
			// The marker goes out between the history and the live
			// messages, whatever races the recovery.
			ch.RecoverWith(c, *cl.since, wshub.RecoverOptions{
				Limit: cfg.history,
				Then: func(latest wshub.Position, err error) []byte {
					r := recovered{Recovered: err == nil}
					if err != nil {
						r.Epoch = latest.Epoch
					}
					b, _ := json.Marshal(r)
					return b
				},
			})
		},
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			// To every member of the room, on every node. If the broker
			// is down, it fails (counted in Stats.BrokerRefused, not
			// logged one by one).
			c.Hub().Channel(c.Data().(*client).room).Publish(wshub.Text, data)
		},
		OnEvent: func(e wshub.Event) {
			switch e.Kind {
			case wshub.EventBrokerDown, wshub.EventBrokerUp, wshub.EventBrokerLate:
				log.Printf("%s: %s", e.Kind, e.Reason) // once per change, or a second
			}
		},
	}
	if cfg.history > 0 {
		opts.ChannelHistory = func(room string) wshub.History {
			return wshub.History{
				Messages: cfg.history,
				MaxAge:   cfg.age,
				// The position goes into the frame in the contract's
				// JSON, made once per message for all the room's members.
				Stamp: func(pos wshub.Position, data []byte) []byte {
					b, _ := json.Marshal(message{Room: room, Offset: pos.Offset, Epoch: pos.Epoch, Data: string(data)})
					return b
				},
			}
		}
	}
	opts.ChannelPresence, opts.PresenceInterval = roomPresence, *presenceTick // see presence.go
	hub, err := wshub.New(opts)
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
