package main

import (
	"log"
	"net"
	"net/http"
	"strconv"

	"github.com/gorilla/websocket"
	llibtls "github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio/nbhttp"
	nbws "github.com/lesismal/nbio/nbhttp/websocket"
	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
	"github.com/olahol/melody"
	"github.com/wshub/wshub"
	natsbroker "github.com/wshub/wshub/broker/nats"
)

// wshub: one hub for both routes; the path, seen by OnUpgrade, decides.
type wshubLib struct{ hub *wshub.Hub }

func newWshub(cfg config) *wshubLib {
	opts := &wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			if r.URL.Path != "/room" {
				return nil, nil
			}
			q := r.URL.Query()
			if !q.Has("offset") {
				return &wshub.Position{}, nil
			}
			off, _ := strconv.ParseUint(q.Get("offset"), 10, 64)
			return &wshub.Position{Offset: off, Epoch: q.Get("epoch")}, nil
		},
		OnOpen: func(c *wshub.Conn) {
			since, _ := c.Data().(*wshub.Position)
			switch {
			case since == nil: // /echo
			case since.Epoch == "":
				c.Hub().Channel("room").Subscribe(c)
			default: // a client that comes back: what it missed, then live
				c.Hub().Channel("room").Recover(c, *since, cfg.history)
			}
		},
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	}
	if cfg.deflate {
		opts.Compression = &wshub.Compression{} // BestSpeed, from 128 bytes
	}
	opts.FlushDelay = cfg.flushDelay
	if cfg.slow != "" {
		policy, ok := slowPolicies[cfg.slow]
		if !ok {
			log.Fatalf("-slow %q: drop-newest, drop-oldest or conflate", cfg.slow)
		}
		opts.ChannelPolicy = func(string) wshub.SlowPolicy { return policy }
	}
	if cfg.maxQueued > 0 {
		opts.MaxQueuedBytes = cfg.maxQueued
	}
	if cfg.maxMessage > 0 {
		opts.MaxMessageSize = cfg.maxMessage
		// The echo of the largest message must fit in the queue bound
		// (4 MiB by default): a frame header is 14 bytes at most.
		opts.MaxQueuedBytes = max(4<<20, int(cfg.maxMessage)+14)
	}
	if cfg.history > 0 {
		opts.ChannelHistory = func(string) wshub.History { return wshub.History{Messages: cfg.history} }
	}
	if cfg.users || cfg.presence {
		withUsers(opts, cfg)
	}
	if cfg.nats != "" {
		nc, err := nats.Connect(cfg.nats)
		if err != nil {
			log.Fatal(err)
		}
		opts.Broker = natsbroker.New(nc, "bench")
	}
	hub, err := wshub.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	return &wshubLib{hub}
}

func (l *wshubLib) echo() http.Handler { return l.hub }

func (l *wshubLib) room() (http.Handler, func(bool, []byte)) {
	room := l.hub.Channel("room")
	return l.hub, func(text bool, p []byte) { room.Publish(msgType(text, wshub.Text, wshub.Binary), p) }
}

func (l *wshubLib) publishBatch(text bool, ps [][]byte) {
	l.hub.Channel("room").PublishBatch(msgType(text, wshub.Text, wshub.Binary), ps, wshub.PublishOptions{})
}

// slowPolicies are the room's policies -slow names.
var slowPolicies = map[string]wshub.SlowPolicy{
	"drop-newest": wshub.SlowDropNewest,
	"drop-oldest": wshub.SlowDropOldest,
	"conflate":    wshub.SlowConflate,
}

func (l *wshubLib) queue() (queued int64, dropped, conflated uint64) {
	st := l.hub.Stats()
	return st.QueuedBytes, st.Dropped, st.Conflated
}

func (l *wshubLib) counts() (messagesOut, writes uint64) {
	st := l.hub.Stats()
	return st.MessagesOut, st.Writes
}

// serveOwn serves the WebSocket routes with the hub's own listener on
// addr (its ServeTLS with -tls), and mux's HTTP routes (publish, stats)
// with net/http on httpAddr, plain either way.
func (l *wshubLib) serveOwn(addr, httpAddr string, mux http.Handler) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	hln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if *useTLS {
		go l.hub.ServeTLS(ln, tlsConfig())
	} else {
		go l.hub.Serve(ln)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(hln)
	return func() { srv.Close(); l.hub.Close() }, nil
}

// msgType picks a library's text or binary message type.
func msgType[T any](text bool, t, b T) T {
	if text {
		return t
	}
	return b
}

// gorilla: a goroutine per connection reads; for the room, a writer
// goroutine per connection drains a buffered channel of prepared messages,
// as gorilla's chat example does.
type gorillaLib struct {
	up         websocket.Upgrader
	maxMessage int64 // SetReadLimit, if not 0
}

// newGorilla: with deflate, the Upgrader's EnableCompression; gorilla
// then compresses every message without context takeover, and a
// PreparedMessage once for all the connections that negotiated it.
func newGorilla(cfg config) *gorillaLib {
	return &gorillaLib{up: websocket.Upgrader{EnableCompression: cfg.deflate}, maxMessage: cfg.maxMessage}
}

// upgrade upgrades, with the read limit if one is set.
func (l *gorillaLib) upgrade(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	c, err := l.up.Upgrade(w, r, nil)
	if err == nil && l.maxMessage > 0 {
		c.SetReadLimit(l.maxMessage)
	}
	return c, err
}

func (l *gorillaLib) echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := l.upgrade(w, r)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, p); err != nil {
				return
			}
		}
	})
}

type gorillaMember struct {
	c    *websocket.Conn
	send chan *websocket.PreparedMessage
}

func (l *gorillaLib) room() (http.Handler, func(bool, []byte)) {
	var room members[*gorillaMember]
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := l.upgrade(w, r)
		if err != nil {
			return
		}
		m := &gorillaMember{c: c, send: make(chan *websocket.PreparedMessage, 256)}
		room.add(m)
		go func() {
			for pm := range m.send {
				if c.WritePreparedMessage(pm) != nil {
					break
				}
			}
			c.Close()
		}()
		for {
			if _, _, err := c.NextReader(); err != nil {
				break
			}
		}
		room.remove(m)
		close(m.send)
	})
	return h, func(text bool, p []byte) {
		pm, err := websocket.NewPreparedMessage(msgType(text, websocket.TextMessage, websocket.BinaryMessage), p)
		if err != nil {
			return
		}
		room.each(func(m *gorillaMember) {
			select {
			case m.send <- pm:
			default: // a full buffer: the chat example drops the client
			}
		})
	}
}

// melody: sessions and broadcast are melody's; deflate is its gorilla
// Upgrader's.
type melodyLib struct {
	deflate    bool
	maxMessage int64 // Config.MaxMessageSize, if not 0
}

func (l melodyLib) new() *melody.Melody {
	m := melody.New()
	m.Upgrader.EnableCompression = l.deflate
	if l.maxMessage > 0 {
		m.Config.MaxMessageSize = l.maxMessage
	}
	return m
}

func (l melodyLib) echo() http.Handler {
	m := l.new()
	m.HandleMessageBinary(func(s *melody.Session, p []byte) { s.WriteBinary(p) })
	m.HandleMessage(func(s *melody.Session, p []byte) { s.Write(p) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.HandleRequest(w, r) })
}

func (l melodyLib) room() (http.Handler, func(bool, []byte)) {
	m := l.new()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.HandleRequest(w, r) }),
		func(text bool, p []byte) {
			if text {
				m.Broadcast(p)
			} else {
				m.BroadcastBinary(p)
			}
		}
}

// gws: its event handler and Broadcaster, which compresses a message once
// for all the connections that negotiated deflate. Deflate is its
// PermessageDeflate without context takeover either way (its defaults:
// BestSpeed, messages from 512 bytes).
type gwsLib struct {
	deflate    bool
	maxMessage int64 // ReadMaxPayloadSize, if not 0
}

type gwsEcho struct{ gws.BuiltinEventHandler }

func (gwsEcho) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	c.WriteMessage(m.Opcode, m.Bytes())
}

func (l gwsLib) handler(h gws.Event) http.Handler {
	up := gws.NewUpgrader(h, &gws.ServerOption{PermessageDeflate: gws.PermessageDeflate{Enabled: l.deflate}, ReadMaxPayloadSize: int(l.maxMessage)})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		go c.ReadLoop()
	})
}

func (l gwsLib) echo() http.Handler { return l.handler(gwsEcho{}) }

type gwsRoom struct {
	gws.BuiltinEventHandler
	room *members[*gws.Conn]
}

func (h gwsRoom) OnOpen(c *gws.Conn)             { h.room.add(c) }
func (h gwsRoom) OnClose(c *gws.Conn, err error) { h.room.remove(c) }

func (l gwsLib) room() (http.Handler, func(bool, []byte)) {
	h := gwsRoom{room: new(members[*gws.Conn])}
	return l.handler(h), func(text bool, p []byte) {
		b := gws.NewBroadcaster(msgType(text, gws.OpcodeText, gws.OpcodeBinary), p)
		h.room.each(func(c *gws.Conn) { b.Broadcast(c) })
		b.Close()
	}
}

// nbio: nbhttp's engine serves the whole mux on its event loops. Deflate is
// its Upgrader's EnableCompression, which answers server and client
// no_context_takeover; each WriteMessage compresses on its own.
type nbioLib struct {
	deflate    bool
	maxMessage int64 // MessageLengthLimit, if not 0
}

func (l nbioLib) upgrader() *nbws.Upgrader {
	up := nbws.NewUpgrader()
	up.EnableCompression(l.deflate)
	if l.maxMessage > 0 {
		up.MessageLengthLimit = int(l.maxMessage)
	}
	return up
}

func (l nbioLib) echo() http.Handler {
	up := l.upgrader()
	up.OnMessage(func(c *nbws.Conn, typ nbws.MessageType, p []byte) { c.WriteMessage(typ, p) })
	return nbioHandler(up)
}

func nbioHandler(up *nbws.Upgrader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { up.Upgrade(w, r, nil) })
}

func (l nbioLib) room() (http.Handler, func(bool, []byte)) {
	var room members[*nbws.Conn]
	up := l.upgrader()
	up.OnOpen(room.add)
	up.OnClose(func(c *nbws.Conn, err error) { room.remove(c) })
	return nbioHandler(up), func(text bool, p []byte) {
		typ := msgType(text, nbws.TextMessage, nbws.BinaryMessage)
		room.each(func(c *nbws.Conn) { c.WriteMessage(typ, p) })
	}
}

// serve runs nbio's engine on addr, with its own TLS if cfg is set.
func (nbioLib) serve(addr string, h http.Handler, cfg *llibtls.Config) (stop func(), err error) {
	c := nbhttp.Config{
		Network:                 "tcp",
		Handler:                 h,
		MaxLoad:                 1 << 20,
		ReleaseWebsocketPayload: true,
	}
	if cfg != nil {
		c.AddrsTLS, c.TLSConfig = []string{addr}, cfg
	} else {
		c.Addrs = []string{addr}
	}
	e := nbhttp.NewEngine(c)
	if err := e.Start(); err != nil {
		return nil, err
	}
	return e.Stop, nil
}
