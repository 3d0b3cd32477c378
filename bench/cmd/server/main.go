// Command server serves the benchmark scenarios with the WebSocket library
// named by -lib, so that one load generator measures every library the same
// way:
//
//	go run ./cmd/server -lib wshub -addr 127.0.0.1:9001
//
// Routes, the same for every library:
//
//	/echo        every message comes back to its sender
//	/raw         the floor only: after the upgrade, the bytes come back
//	             as they were sent, frames or not
//	/room        the connection joins the one room
//	/publish     ?n=N&size=S publishes N binary messages of S bytes (16 at
//	             least) to the room, one after the other, each stamped
//	             with its sequence number and the time it was published
//	             (load.Stamp); with &batch=1 as one batch, where the
//	             library has a batch API (wshub's Channel.PublishBatch);
//	             with &json=1, N text messages of S bytes of chat-like
//	             JSON (load.FeedJSON), each with its sequence number in
//	             "seq"; with &every=D (a Go duration), one message
//	             every D, a steady feed, the request returning after the
//	             last
//	/stats       the Go heap (after collecting) and goroutines, as JSON;
//	             it also returns freed memory to the system, so that the
//	             process's RSS shows what is live; for wshub and the floor
//	             also the messages sent (messages_out) and the write
//	             system calls that sent them (writes); ?counts=1 returns
//	             only those two, without collecting; for wshub, ?queue=1
//	             returns, without collecting, the bytes queued for its
//	             connections now (queued_bytes) and the messages its
//	             slow-consumer policy dropped (dropped) and conflated
//	             (conflated)
//
// -deflate turns on each library's permessage-deflate, configured as its
// documentation shows for a server that does not keep a compression
// context per connection (server_no_context_takeover, and
// client_no_context_takeover when the client offers it). -flushdelay sets
// wshub's Options.FlushDelay. -slow sets the slow-consumer policy of
// wshub's room (drop-newest, drop-oldest, conflate; close by default) and
// -max-queued its Options.MaxQueuedBytes (0: 4 MiB); -sndbuf fixes each
// accepted socket's send buffer (SO_SNDBUF, which the kernel doubles and
// then no longer grows), so that what a slow reader does not take waits
// in the library's queue rather than in megabytes of the kernel's.
// -max-message sets the largest message each
// library takes (0 keeps its default): wshub's Options.MaxMessageSize
// (default 1 MiB), and MaxQueuedBytes to at least that plus a frame
// header, so that the echo of such a message can be sent; gorilla's
// SetReadLimit (no limit by default); melody's Config.MaxMessageSize (512
// bytes); gws's ReadMaxPayloadSize (16 MiB); nbio's MessageLengthLimit
// (4 MiB); the floor has none.
//
// Libraries, each used the way its documentation shows: wshub (net/http
// door, or with -listener its own listener on -addr, the HTTP routes then
// on -http; -nats URL shares the room with other wshub servers through
// NATS),
// gorilla (gorilla/websocket, a goroutine per connection, a writer goroutine
// and PreparedMessage for the room, as in its chat example), melody (its
// Broadcast), gws (its Broadcaster, which frames a message once), nbio
// (nbhttp's event loop, one WriteMessage per member), and floor, no
// library: the least a server can do (floor.go). Its /echo is a bare epoll
// echo, one read and one write per round trip on GOMAXPROCS event loops;
// its room frames each message once and writes it straight to every
// member's socket, a write per member for a single publish and one writev
// of all the messages of a burst; its /raw echoes bytes, a goroutine per
// connection, the floor of a fragmented message.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wshub/wshub/bench/load"
)

// library is one WebSocket library's implementation of the scenarios.
type library interface {
	echo() http.Handler
	// room returns the handler that joins connections to the room and the
	// function that publishes a text or binary message to it.
	room() (http.Handler, func(text bool, payload []byte))
}

// batcher is a library that can publish several messages as one batch.
type batcher interface {
	publishBatch(text bool, payloads [][]byte)
}

// counter is a library that counts what it sends: messages, one per
// member, and the write system calls that sent them.
type counter interface {
	counts() (messagesOut, writes uint64)
}

// queueReporter is a library that reports what its slow-consumer policy
// holds and did: bytes queued now, messages dropped and conflated.
type queueReporter interface {
	queue() (queued int64, dropped, conflated uint64)
}

// config is what the flags choose besides the library.
type config struct {
	nats       string        // wshub: the NATS server the room is shared through
	deflate    bool          // permessage-deflate on
	flushDelay time.Duration // wshub: Options.FlushDelay
	maxMessage int64         // the largest message taken; 0: the library's default
	slow       string        // wshub: the room's slow-consumer policy
	maxQueued  int           // wshub: Options.MaxQueuedBytes; 0: its default
	sndbuf     int           // each accepted socket's SO_SNDBUF; 0: the kernel's, growing
	history    int           // wshub: messages the room keeps (Options.ChannelHistory); 0: none

	users        bool          // wshub: ?user= sets the connection's user (see presence.go)
	presence     bool          // wshub: presence in every channel, and -users
	presenceTick time.Duration // wshub: Options.PresenceInterval
}

func main() {
	lib := flag.String("lib", "wshub", "library: wshub, gorilla, melody, gws, nbio or floor")
	addr := flag.String("addr", "127.0.0.1:9001", "address to listen on")
	var cfg config
	flag.StringVar(&cfg.nats, "nats", "", "wshub: NATS server to share the room through")
	flag.BoolVar(&cfg.deflate, "deflate", false, "turn on the library's permessage-deflate (no context takeover)")
	flag.DurationVar(&cfg.flushDelay, "flushdelay", 0, "wshub: Options.FlushDelay")
	flag.Int64Var(&cfg.maxMessage, "max-message", 0, "the largest message the library takes, in bytes (0: its default)")
	flag.StringVar(&cfg.slow, "slow", "", "wshub: the room's slow-consumer policy: drop-newest, drop-oldest or conflate (default: close)")
	flag.IntVar(&cfg.maxQueued, "max-queued", 0, "wshub: Options.MaxQueuedBytes (0: its default, 4 MiB)")
	flag.IntVar(&cfg.sndbuf, "sndbuf", 0, "each accepted socket's SO_SNDBUF, fixed (0: the kernel's, which grows)")
	flag.IntVar(&cfg.history, "history", 0, "wshub: messages the room keeps for clients that come back to /room?offset=N&epoch=E (0: none); with -nats, in JetStream")
	flag.BoolVar(&cfg.users, "users", false, "wshub: /room?user=U and /probe?user=U join as user U")
	flag.BoolVar(&cfg.presence, "presence", false, "wshub: -users, and track presence in every channel: GET /presence?channel=C")
	flag.DurationVar(&cfg.presenceTick, "presence-tick", 0, "wshub: Options.PresenceInterval (0: its default, 1s)")
	listener := flag.Bool("listener", false, "wshub: serve WebSockets with the hub's own listener on -addr, and the HTTP routes on -http")
	httpAddr := flag.String("http", "", "with -listener: address of the HTTP routes (/publish, /stats)")
	flag.Parse()
	l, err := newLibrary(*lib, cfg)
	if err != nil {
		log.Fatal(err)
	}
	mux := newMux(l)
	if w, ok := l.(*wshubLib); ok && cfg.presence {
		w.presenceRoutes(mux)
	}
	var stopServing func()
	if *listener {
		w, ok := l.(*wshubLib)
		if !ok || *httpAddr == "" {
			log.Fatal("-listener needs -lib wshub and -http")
		}
		stopServing, err = w.serveOwn(*addr, *httpAddr, mux)
	} else {
		stopServing, err = serve(l, *addr, mux, cfg.sndbuf)
	}
	if err != nil {
		log.Fatal(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	stopServing()
}

func newLibrary(name string, cfg config) (library, error) {
	switch name {
	case "wshub":
		return newWshub(cfg), nil
	case "gorilla":
		return newGorilla(cfg), nil
	case "melody":
		return melodyLib{cfg.deflate, cfg.maxMessage}, nil
	case "gws":
		return gwsLib{cfg.deflate, cfg.maxMessage}, nil
	case "nbio":
		return nbioLib{cfg.deflate, cfg.maxMessage}, nil
	case "floor":
		return newFloor()
	}
	return nil, fmt.Errorf("unknown library %q", name)
}

// newMux routes the scenarios to l.
func newMux(l library) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/echo", l.echo())
	roomHandler, publish := l.room()
	mux.Handle("/room", roomHandler)
	floor, isFloor := l.(*floorLib)
	if isFloor {
		mux.Handle("/raw", floor.raw())
	}
	var seq atomic.Uint64
	batcher, _ := l.(batcher)
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		size, _ := strconv.Atoi(q.Get("size"))
		text := q.Get("json") == "1"
		if every, err := time.ParseDuration(q.Get("every")); err == nil && every > 0 {
			t := time.NewTicker(every)
			defer t.Stop()
			for i := range n {
				if i > 0 {
					<-t.C
				}
				publish(text, message(text, seq.Add(1), size))
			}
			w.Write([]byte("ok\n"))
			return
		}
		// The floor writes a burst as one writev: its batch is its burst.
		if batcher != nil && n > 1 && (q.Get("batch") == "1" || isFloor) {
			batch := make([][]byte, n)
			for i := range batch {
				batch[i] = message(text, seq.Add(1), size)
			}
			batcher.publishBatch(text, batch)
		} else {
			for range n {
				// Fresh payloads: some libraries keep them.
				publish(text, message(text, seq.Add(1), size))
			}
		}
		w.Write([]byte("ok\n"))
	})
	if w, ok := l.(*wshubLib); ok {
		mux.HandleFunc("/position", func(w2 http.ResponseWriter, r *http.Request) {
			pos, err := w.hub.Channel("room").Position()
			if err != nil {
				http.Error(w2, err.Error(), http.StatusInternalServerError)
				return
			}
			json.NewEncoder(w2).Encode(map[string]any{"offset": pos.Offset, "epoch": pos.Epoch})
		})
	}
	counter, _ := l.(counter)
	queues, _ := l.(queueReporter)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("queue") == "1" && queues != nil {
			var st struct {
				QueuedBytes int64  `json:"queued_bytes"`
				Dropped     uint64 `json:"dropped"`
				Conflated   uint64 `json:"conflated"`
			}
			st.QueuedBytes, st.Dropped, st.Conflated = queues.queue()
			json.NewEncoder(w).Encode(st)
			return
		}
		if r.URL.Query().Get("counts") == "1" && counter != nil {
			// Only the counts, cheaply: read around a measured window.
			var st struct {
				MessagesOut uint64 `json:"messages_out"`
				Writes      uint64 `json:"writes"`
			}
			st.MessagesOut, st.Writes = counter.counts()
			json.NewEncoder(w).Encode(st)
			return
		}
		debug.FreeOSMemory()
		debug.FreeOSMemory() // the second empties the pools' victim caches
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := map[string]uint64{
			"heap":       ms.HeapAlloc,
			"goroutines": uint64(runtime.NumGoroutine()),
		}
		if counter != nil {
			st["messages_out"], st["writes"] = counter.counts()
		}
		json.NewEncoder(w).Encode(st)
	})
	return mux
}

// message returns a new message numbered seq: size bytes of chat-like
// JSON, or a binary message of size bytes (load.StampSize at least)
// stamped with seq and the time now.
func message(text bool, seq uint64, size int) []byte {
	if text {
		return load.FeedJSON(seq, size)
	}
	p := make([]byte, max(size, load.StampSize))
	load.Stamp(p, seq)
	return p
}

// serve serves h on addr: with nbio's engine for nbio, net/http otherwise,
// each accepted socket's send buffer fixed at sndbuf if it is not 0.
func serve(l library, addr string, h http.Handler, sndbuf int) (stop func(), err error) {
	if nb, ok := l.(nbioLib); ok {
		return serveNbio(nb, addr, h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if sndbuf > 0 {
		ln = sndbufListener{ln, sndbuf}
	}
	srv := &http.Server{Handler: h}
	go serveHTTP(srv, ln)
	return func() { srv.Close() }, nil
}

// sndbufListener fixes the send buffer of each connection it accepts.
type sndbufListener struct {
	net.Listener
	sndbuf int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.sndbuf)
	}
	return c, err
}

// members is a set of connections for the libraries that leave the room to
// the application.
type members[C comparable] struct {
	mu sync.Mutex
	m  map[C]struct{}
}

func (s *members[C]) add(c C) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[C]struct{})
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *members[C]) remove(c C) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *members[C]) each(fn func(C)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m {
		fn(c)
	}
}
