package main

import (
	"log"
	"net/http"

	"github.com/gorilla/websocket"
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

func newWshub(natsURL string) *wshubLib {
	opts := &wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) { return r.URL.Path == "/room", nil },
		OnOpen: func(c *wshub.Conn) {
			if c.Data().(bool) {
				c.Hub().Channel("room").Subscribe(c)
			}
		},
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
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
	return &wshubLib{hub}
}

func (l *wshubLib) echo() http.Handler { return l.hub }

func (l *wshubLib) room() (http.Handler, func([]byte)) {
	room := l.hub.Channel("room")
	return l.hub, func(p []byte) { room.Publish(wshub.Binary, p) }
}

// gorilla: a goroutine per connection reads; for the room, a writer
// goroutine per connection drains a buffered channel of prepared messages,
// as gorilla's chat example does.
type gorillaLib struct{ up websocket.Upgrader }

func (l *gorillaLib) echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := l.up.Upgrade(w, r, nil)
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

func (l *gorillaLib) room() (http.Handler, func([]byte)) {
	var room members[*gorillaMember]
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := l.up.Upgrade(w, r, nil)
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
	return h, func(p []byte) {
		pm, err := websocket.NewPreparedMessage(websocket.BinaryMessage, p)
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

// melody: sessions and broadcast are melody's.
type melodyLib struct{}

func (melodyLib) echo() http.Handler {
	m := melody.New()
	m.HandleMessageBinary(func(s *melody.Session, p []byte) { s.WriteBinary(p) })
	m.HandleMessage(func(s *melody.Session, p []byte) { s.Write(p) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.HandleRequest(w, r) })
}

func (melodyLib) room() (http.Handler, func([]byte)) {
	m := melody.New()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.HandleRequest(w, r) }),
		func(p []byte) { m.BroadcastBinary(p) }
}

// gws: its event handler and Broadcaster.
type gwsLib struct{}

type gwsEcho struct{ gws.BuiltinEventHandler }

func (gwsEcho) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	c.WriteMessage(m.Opcode, m.Bytes())
}

func gwsHandler(h gws.Event) http.Handler {
	up := gws.NewUpgrader(h, &gws.ServerOption{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		go c.ReadLoop()
	})
}

func (gwsLib) echo() http.Handler { return gwsHandler(gwsEcho{}) }

type gwsRoom struct {
	gws.BuiltinEventHandler
	room *members[*gws.Conn]
}

func (h gwsRoom) OnOpen(c *gws.Conn)             { h.room.add(c) }
func (h gwsRoom) OnClose(c *gws.Conn, err error) { h.room.remove(c) }

func (gwsLib) room() (http.Handler, func([]byte)) {
	h := gwsRoom{room: new(members[*gws.Conn])}
	return gwsHandler(h), func(p []byte) {
		b := gws.NewBroadcaster(gws.OpcodeBinary, p)
		h.room.each(func(c *gws.Conn) { b.Broadcast(c) })
		b.Close()
	}
}

// nbio: nbhttp's engine serves the whole mux on its event loops.
type nbioLib struct{}

func (nbioLib) echo() http.Handler {
	up := nbws.NewUpgrader()
	up.OnMessage(func(c *nbws.Conn, typ nbws.MessageType, p []byte) { c.WriteMessage(typ, p) })
	return nbioHandler(up)
}

func nbioHandler(up *nbws.Upgrader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { up.Upgrade(w, r, nil) })
}

func (nbioLib) room() (http.Handler, func([]byte)) {
	var room members[*nbws.Conn]
	up := nbws.NewUpgrader()
	up.OnOpen(room.add)
	up.OnClose(func(c *nbws.Conn, err error) { room.remove(c) })
	return nbioHandler(up), func(p []byte) {
		room.each(func(c *nbws.Conn) { c.WriteMessage(nbws.BinaryMessage, p) })
	}
}

func (nbioLib) serve(addr string, h http.Handler) (stop func(), err error) {
	e := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{addr},
		Handler:                 h,
		MaxLoad:                 1 << 20,
		ReleaseWebsocketPayload: true,
	})
	if err := e.Start(); err != nil {
		return nil, err
	}
	return e.Stop, nil
}
