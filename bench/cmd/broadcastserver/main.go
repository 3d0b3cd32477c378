// Command broadcastserver subscribes every WebSocket connection at /ws to
// one room, and publishes to the room when asked over HTTP:
//
//	go run ./cmd/broadcastserver -lib wshub -addr 127.0.0.1:9002
//	curl '127.0.0.1:9002/publish?n=20&size=64'
//
// Each message carries its sequence number in its first 8 bytes, so that a
// client can check the order. -lib gws uses gws's Broadcaster, which frames
// a message once for all connections, as wshub does. With -nats URL the
// wshub hub joins the others on that NATS server through the NATS broker:
// a publish to one reaches the room's members on all; GET /stats shows the
// hub's Stats as JSON.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
	"github.com/wshub/wshub"
	natsbroker "github.com/wshub/wshub/broker/nats"
)

func main() {
	lib := flag.String("lib", "wshub", "library: wshub or gws")
	addr := flag.String("addr", "127.0.0.1:9002", "address to listen on")
	natsURL := flag.String("nats", "", "wshub: NATS server to share the room through")
	flag.Parse()
	var publish func(payload []byte)
	mux := http.NewServeMux()
	switch *lib {
	case "wshub":
		publish = wshubRoom(mux, *natsURL)
	case "gws":
		publish = gwsRoom(mux)
	default:
		log.Fatalf("unknown -lib %q", *lib)
	}
	var seq atomic.Uint64
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		payload := make([]byte, max(size, 8))
		for range n {
			binary.BigEndian.PutUint64(payload, seq.Add(1))
			publish(payload)
		}
		fmt.Fprintln(w, "ok")
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}

func wshubRoom(mux *http.ServeMux, natsURL string) func([]byte) {
	opts := &wshub.Options{
		OnOpen: func(c *wshub.Conn) { c.Hub().Channel("room").Subscribe(c) },
	}
	if natsURL != "" {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			log.Fatal(err)
		}
		opts.Broker = natsbroker.New(nc, "bench")
	}
	hub, err := wshub.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	mux.Handle("/ws", hub)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(hub.Stats())
	})
	room := hub.Channel("room")
	return func(p []byte) { room.Publish(wshub.Binary, p) }
}

// gwsHandler keeps the set of open connections, as a gws application must
// to broadcast.
type gwsHandler struct {
	gws.BuiltinEventHandler
	mu    sync.Mutex
	conns map[*gws.Conn]struct{}
}

func (h *gwsHandler) OnOpen(c *gws.Conn) {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
}

func (h *gwsHandler) OnClose(c *gws.Conn, err error) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

func gwsRoom(mux *http.ServeMux) func([]byte) {
	h := &gwsHandler{conns: make(map[*gws.Conn]struct{})}
	up := gws.NewUpgrader(h, &gws.ServerOption{})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		go c.ReadLoop()
	})
	return func(p []byte) {
		b := gws.NewBroadcaster(gws.OpcodeBinary, p)
		h.mu.Lock()
		for c := range h.conns {
			b.Broadcast(c)
		}
		h.mu.Unlock()
		b.Close()
	}
}
