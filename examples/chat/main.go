// Command chat is a chat server with a web page, in the style of the
// articles wshub grew from: everyone is in a global room, people can join
// public rooms and send private messages, and the server broadcasts to
// everyone every few seconds.
//
//	go run ./examples/chat          # then open http://127.0.0.1:8080
//	go run ./examples/chat -tls     # https://127.0.0.1:8080, the chat over wss://
//
// -tls serves the page and the WebSocket over TLS with a self-signed
// certificate made in memory (ECDSA P-256, for localhost and 127.0.0.1; a
// browser asks to trust it first); -cert and -key name PEM files of a real
// certificate instead, and imply -tls. The page connects to wss:// when it
// was loaded over https://.
//
// Clients send JSON events:
//
//	{"event":"SET_NAME","new_name":"ann"}
//	{"event":"SAY","message":"hi"}                 (to the global room)
//	{"event":"SAY","room":"go","message":"hi"}     (to a room joined before)
//	{"event":"JOIN","room":"go"}   {"event":"PART","room":"go"}
//	{"event":"PRIVATE","to":"bob","message":"psst"}
//	{"event":"LEAVE"}                              (leave the chat, then close)
//
// and every server message is a JSON object with an "event" field:
// CHAT_MSG {user, message, room | private+to}, NAME_SET {name},
// USER_JOINED / USER_LEFT {user, room}, SERVER_MSG {message, online},
// ONLINE {room, online, users} (who is in the room, see presence.go),
// BYE, ERROR {error}. A bad event gets an ERROR, not a disconnect.
//
// The global room remembers its last 100 messages for two minutes
// (wshub.Options.ChannelHistory): each of its events carries its position,
// "offset" and "epoch", and a page that reconnects, or is reloaded,
// connects to /ws?offset=N&epoch=E with the last one it saw. It first gets
// what it missed, then RECOVERED {recovered: true}, or RECOVERED alone when
// the history does not reach back that far (or the server restarted, which
// changes the epoch), then the live events.
package main

import (
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/examples/internal/tlsconf"
)

//go:embed static
var static embed.FS

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	var cfg config
	flag.DurationVar(&cfg.tick, "broadcast", 3*time.Second, "interval of the server's broadcast to everyone (0: never)")
	useTLS := flag.Bool("tls", false, "serve https:// and wss:// with a self-signed certificate made in memory (or -cert and -key)")
	certFile := flag.String("cert", "", "with -key: serve https:// and wss:// with this PEM certificate (chain)")
	keyFile := flag.String("key", "", "the PEM private key of -cert")
	flag.Parse()
	if *useTLS || *certFile != "" || *keyFile != "" {
		var err error
		if cfg.tls, err = tlsconf.Config(*certFile, *keyFile); err != nil {
			log.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	scheme := "http"
	if cfg.tls != nil {
		scheme = "https"
	}
	log.Printf("chat on %s://%s (WebSocket at /ws)", scheme, ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, ln, cfg); err != nil {
		log.Fatal(err)
	}
}

// config is what the flags choose.
type config struct {
	tick time.Duration // the server's broadcast interval; 0: none
	tls  *tls.Config   // https:// and wss:// if set
}

// serve runs the chat on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, cfg config) error {
	c, err := newChat()
	if err != nil {
		ln.Close()
		return err
	}
	return c.serve(ctx, ln, c.routes(), cfg)
}

// serve serves h, the chat's routes and whatever else, on ln until ctx
// ends, then shuts down gracefully.
func (c *chat) serve(ctx context.Context, ln net.Listener, h http.Handler, cfg config) error {
	srv := &http.Server{
		Handler: h,
		// net/http's defaults let a client hold a 1 MiB header for ever.
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		// Cloned by ServeTLS, which offers ALPN h2 and http/1.1: the page
		// may come over HTTP/2; the WebSocket opens its own HTTP/1.1
		// connection, because net/http's HTTP/2 server does not announce
		// RFC 8441's extended CONNECT by default.
		TLSConfig: cfg.tls,
	}
	errc := make(chan error, 1)
	if cfg.tls != nil {
		// Over hub.Listener the chat's wss:// connections run on the
		// hub's loops, without a goroutine each.
		go func() { errc <- srv.ServeTLS(c.hub.Listener(ln), "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	if cfg.tick > 0 {
		go c.broadcastEvery(ctx, cfg.tick)
	}
	select {
	case err := <-errc:
		c.hub.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := c.hub.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// chat is the application: a hub and the naming rules. A name belongs to
// one connection at a time: it is the connection's user (Conn.SetUser), so
// Hub.User(name) finds its holder and a closed connection frees it. Guests
// are named guest-N by a counter, and SET_NAME cannot take a guest- name,
// so the two never meet.
type chat struct {
	hub    *wshub.Hub
	global *wshub.Channel
	guests atomic.Int64
	names  sync.Mutex // serializes renames, so that two people cannot take one name
}

// guestPrefix starts the names the server gives; SET_NAME refuses them.
const guestPrefix = "guest-"

// member is what the chat keeps per connection. Only the connection's own
// callbacks touch it, and they never run concurrently.
type member struct {
	name  string // also the connection's user, for Hub.User lookups
	rooms map[string]bool
	left  bool            // sent LEAVE: in no room, waiting for the client to close
	since *wshub.Position // the global room's last message the page saw, if it came back
}

// The global room's history: what a page that comes back may have missed.
const (
	historyMessages = 100
	historyAge      = 2 * time.Minute
)

// stampPosition puts a message's position into the global room's event,
// as its first fields: once per message, for every member.
func stampPosition(pos wshub.Position, data []byte) []byte {
	b := fmt.Appendf(nil, `{"offset":%d,"epoch":%q,`, pos.Offset, pos.Epoch)
	return append(b, data[1:]...) // data is an event's JSON object
}

// event is every message, in both directions; unused fields are omitted.
type event struct {
	Event   string `json:"event"`
	NewName string `json:"new_name,omitempty"`
	Name    string `json:"name,omitempty"`
	User    string `json:"user,omitempty"`
	Message string `json:"message,omitempty"`
	Room    string `json:"room,omitempty"`
	To      string `json:"to,omitempty"`
	Private bool   `json:"private,omitempty"`
	Online  int    `json:"online,omitempty"`
	Error   string `json:"error,omitempty"`
	// Recovered, in RECOVERED: the page got what it missed.
	Recovered bool `json:"recovered,omitempty"`
}

const maxMessage = 2000 // characters of a chat message

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,24}$`)

func newChat() (*chat, error) {
	c := &chat{}
	hub, err := wshub.New(&wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			m := &member{rooms: make(map[string]bool)}
			if q := r.URL.Query(); q.Has("offset") {
				off, err := strconv.ParseUint(q.Get("offset"), 10, 64)
				if err != nil || len(q.Get("epoch")) > 64 {
					return nil, &wshub.UpgradeError{Status: http.StatusBadRequest, Reason: "?offset= must be a number, ?epoch= at most 64 bytes"}
				}
				m.since = &wshub.Position{Offset: off, Epoch: q.Get("epoch")}
			}
			return m, nil
		},
		ChannelHistory: func(name string) wshub.History {
			if name != "global" {
				return wshub.History{}
			}
			return wshub.History{Messages: historyMessages, MaxAge: historyAge, Stamp: stampPosition}
		},
		OnOpen:    c.open,
		OnMessage: c.message,
		OnClose:   c.close,
		// Who is online in each room (see presence.go).
		ChannelPresence: chatPresence,
		OnPresence:      c.presence,
		// A chat event is small: refuse anything bigger at the frame header.
		MaxMessageSize: 8 << 10,
		// Nobody types 20 messages a second; a script that floods the
		// room is closed (1008 "rate limit exceeded") before its
		// messages make the readers slow consumers.
		MessageRate:  20,
		MessageBurst: 40,
		// permessage-deflate: browsers ask for it, and chat JSON shrinks.
		// Each publish is compressed once for the whole room.
		Compression: &wshub.Compression{},
	})
	if err != nil {
		return nil, err
	}
	c.hub = hub
	c.global = hub.Channel("global")
	return c, nil
}

func (c *chat) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ws", c.hub)
	page, _ := fs.Sub(static, "static")
	mux.Handle("/", http.FileServerFS(page))
	return mux
}

func (c *chat) open(conn *wshub.Conn) {
	name := fmt.Sprintf("%s%d", guestPrefix, c.guests.Add(1))
	m := conn.Data().(*member)
	m.name = name
	conn.SetUser(name)
	if m.since == nil {
		c.global.Subscribe(conn)
	} else {
		// What the page missed, then RECOVERED, then the live events.
		c.global.RecoverWith(conn, *m.since, wshub.RecoverOptions{
			Limit: historyMessages,
			Then: func(_ wshub.Position, err error) []byte {
				b, _ := json.Marshal(event{Event: "RECOVERED", Recovered: err == nil})
				return b
			},
		})
	}
	send(conn, event{Event: "NAME_SET", Name: name})
	c.publish(c.global, event{Event: "USER_JOINED", User: name, Room: "global"})
}

func (c *chat) close(conn *wshub.Conn, _ *wshub.CloseError) {
	// The connection has left its channels already.
	if m := conn.Data().(*member); !m.left {
		c.publish(c.global, event{Event: "USER_LEFT", User: m.name, Room: "global"})
	}
}

func (c *chat) message(conn *wshub.Conn, typ wshub.MessageType, data []byte) {
	var e event
	if typ != wshub.Text || json.Unmarshal(data, &e) != nil {
		sendError(conn, "messages must be JSON objects with an event field")
		return
	}
	m := conn.Data().(*member)
	name := m.name
	if m.left {
		sendError(conn, "you left the chat")
		return
	}
	switch e.Event {
	case "SET_NAME":
		c.rename(conn, e.NewName)
	case "SAY":
		if !validMessage(conn, e.Message) {
			return
		}
		room, ch := "global", c.global
		if e.Room != "" && e.Room != "global" {
			if !m.rooms[e.Room] {
				sendError(conn, "join the room first: "+e.Room)
				return
			}
			room, ch = e.Room, c.room(e.Room)
		}
		c.publish(ch, event{Event: "CHAT_MSG", User: name, Message: e.Message, Room: room})
	case "JOIN":
		if !validName.MatchString(e.Room) || e.Room == "global" {
			sendError(conn, "room names are 1 to 24 letters, digits, _ or -")
			return
		}
		if err := c.room(e.Room).Subscribe(conn); err != nil {
			sendError(conn, err.Error())
			return
		}
		m.rooms[e.Room] = true
		c.publish(c.room(e.Room), event{Event: "USER_JOINED", User: name, Room: e.Room})
	case "PART":
		if m.rooms[e.Room] {
			delete(m.rooms, e.Room)
			c.room(e.Room).Unsubscribe(conn)
			send(conn, event{Event: "USER_LEFT", User: name, Room: e.Room})
			c.publish(c.room(e.Room), event{Event: "USER_LEFT", User: name, Room: e.Room})
		}
	case "PRIVATE":
		if !validMessage(conn, e.Message) {
			return
		}
		to := c.hub.User(e.To)
		if e.To == "" || to.Len() == 0 {
			sendError(conn, "nobody is called "+e.To)
			return
		}
		msg := event{Event: "CHAT_MSG", User: name, Message: e.Message, Private: true, To: e.To}
		c.publish(to, msg)
		if e.To != name {
			send(conn, msg) // the sender sees what it sent
		}
	case "LEAVE":
		// Out of every room and every user lookup; the client closes.
		m.left = true
		for room := range m.rooms {
			c.room(room).Unsubscribe(conn)
		}
		c.global.Unsubscribe(conn)
		conn.SetUser("")
		send(conn, event{Event: "BYE"})
		c.publish(c.global, event{Event: "USER_LEFT", User: name, Room: "global"})
	default:
		sendError(conn, "unknown event: "+e.Event)
	}
}

// rename gives conn a new name if it is valid and free.
func (c *chat) rename(conn *wshub.Conn, name string) {
	if !validName.MatchString(name) {
		sendError(conn, "names are 1 to 24 letters, digits, _ or -")
		return
	}
	if strings.HasPrefix(strings.ToLower(name), guestPrefix) {
		sendError(conn, "guest names are given by the server")
		return
	}
	m := conn.Data().(*member)
	c.names.Lock()
	old := m.name
	taken := name != old && c.hub.User(name).Len() > 0
	if !taken {
		conn.SetUser(name)
		m.name = name
	}
	c.names.Unlock()
	if taken {
		sendError(conn, "the name is taken: "+name)
		return
	}
	send(conn, event{Event: "NAME_SET", Name: name})
	if old != name {
		c.publish(c.global, event{Event: "CHAT_MSG", User: "server", Message: old + " is now " + name, Room: "global"})
	}
}

func (c *chat) room(name string) *wshub.Channel { return c.hub.Channel("room:" + name) }

// broadcastEvery sends everyone the time and the number online.
func (c *chat) broadcastEvery(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.publish(c.global, event{
				Event:   "SERVER_MSG",
				Message: "server time " + now.Format(time.TimeOnly),
				Online:  c.global.Len(),
			})
		}
	}
}

func (c *chat) publish(ch *wshub.Channel, e event) {
	b, _ := json.Marshal(e)
	ch.Publish(wshub.Text, b)
}

func send(conn *wshub.Conn, e event) {
	b, _ := json.Marshal(e)
	conn.WriteMessage(wshub.Text, b)
}

func sendError(conn *wshub.Conn, msg string) {
	send(conn, event{Event: "ERROR", Error: msg})
}

func validMessage(conn *wshub.Conn, msg string) bool {
	switch n := len([]rune(msg)); {
	case n == 0:
		sendError(conn, "empty message")
	case n > maxMessage:
		sendError(conn, fmt.Sprintf("messages are at most %d characters", maxMessage))
	default:
		return true
	}
	return false
}
