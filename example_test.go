package wshub_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wshub/wshub"
)

// dial connects a WebSocket client to the server at url plus path. The
// core module depends on gobwas/ws and nothing else, so these examples use
// its client; the tests of the examples' module (examples/*/*_test.go) show
// the same with gorilla/websocket, as your project would.
func dial(url, path string) net.Conn {
	conn, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http")+path)
	if err != nil {
		log.Fatal(err)
	}
	return conn
}

func ExampleNew() {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			c.WriteMessage(typ, data) // echo
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub) // or mux.Handle("/ws", hub)
	defer srv.Close()

	conn := dial(srv.URL, "/ws")
	defer conn.Close()
	wsutil.WriteClientText(conn, []byte("hello"))
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	// Output: hello
}

func ExampleChannel_Publish() {
	joined := make(chan struct{})
	hub, err := wshub.New(&wshub.Options{
		OnOpen: func(c *wshub.Conn) {
			c.Hub().Channel("news").Subscribe(c)
			joined <- struct{}{}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	readers := []net.Conn{dial(srv.URL, "/ws"), dial(srv.URL, "/ws")}
	for range readers {
		<-joined
	}
	n, _ := hub.Channel("news").Publish(wshub.Text, []byte("extra!"))
	fmt.Println("published to", n)
	for _, conn := range readers {
		msg, _ := wsutil.ReadServerText(conn)
		fmt.Println(string(msg))
		conn.Close()
	}
	// Output:
	// published to 2
	// extra!
	// extra!
}

// A feed with several updates at once sends them as one batch: each member
// gets all of them, in order, in one system call.
func ExampleChannel_PublishBatch() {
	joined := make(chan struct{})
	hub, err := wshub.New(&wshub.Options{
		OnOpen: func(c *wshub.Conn) {
			c.Hub().Channel("prices").Subscribe(c)
			joined <- struct{}{}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	conn := dial(srv.URL, "/ws")
	defer conn.Close()
	<-joined
	updates := [][]byte{[]byte(`{"ACME":12.5}`), []byte(`{"INIT":3.1}`), []byte(`{"ACME":12.6}`)}
	n, _ := hub.Channel("prices").PublishBatch(wshub.Text, updates, wshub.PublishOptions{})
	fmt.Println("published to", n)
	for range updates {
		msg, _ := wsutil.ReadServerText(conn)
		fmt.Println(string(msg))
	}
	// Output:
	// published to 1
	// {"ACME":12.5}
	// {"INIT":3.1}
	// {"ACME":12.6}
}

func ExampleConn_SetUser() {
	opened := make(chan struct{})
	hub, err := wshub.New(&wshub.Options{
		// Whatever the connection needs later goes in Data; here, the user.
		OnUpgrade: func(r *http.Request) (any, error) {
			user := r.URL.Query().Get("user") // in real life: from a verified token
			if user == "" {
				return nil, &wshub.UpgradeError{Status: http.StatusUnauthorized, Reason: "who are you?"}
			}
			return user, nil
		},
		OnOpen: func(c *wshub.Conn) {
			c.SetUser(c.Data().(string))
			opened <- struct{}{}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	phone, laptop := dial(srv.URL, "/ws?user=ann"), dial(srv.URL, "/ws?user=ann")
	defer phone.Close()
	defer laptop.Close()
	<-opened
	<-opened
	n, _ := hub.User("ann").Publish(wshub.Text, []byte("you have mail"))
	fmt.Println("ann has", n, "connections")
	msg, _ := wsutil.ReadServerText(laptop)
	fmt.Println(string(msg))
	// Output:
	// ann has 2 connections
	// you have mail
}

// The hub keeps no id and nothing of the request, so that an idle
// connection stays small: what a connection needs later, an id for logs
// among it, is the value OnUpgrade returns, and Data gives it back.
func ExampleConn_Data() {
	type session struct {
		id   uint64 // for logs: a counter, or the request id of your middleware
		user string
		room string
	}
	var ids atomic.Uint64
	closed := make(chan struct{})
	hub, err := wshub.New(&wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			q := r.URL.Query()
			return &session{id: ids.Add(1), user: q.Get("user"), room: q.Get("room")}, nil
		},
		OnOpen: func(c *wshub.Conn) {
			s := c.Data().(*session)
			c.Hub().Channel(s.room).Subscribe(c)
			fmt.Printf("conn %d: %s joined %s\n", s.id, s.user, s.room)
		},
		OnClose: func(c *wshub.Conn, err *wshub.CloseError) {
			fmt.Printf("conn %d: closed: %v\n", c.Data().(*session).id, err.Code)
			close(closed)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	conn := dial(srv.URL, "/ws?user=ann&room=lobby")
	wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	<-closed
	conn.Close()
	// Output:
	// conn 1: ann joined lobby
	// conn 1: closed: 1000 normal closure
}

func ExampleHub_Shutdown() {
	opened := make(chan struct{})
	hub, err := wshub.New(&wshub.Options{
		OnOpen:  func(*wshub.Conn) { opened <- struct{}{} },
		OnClose: func(_ *wshub.Conn, err *wshub.CloseError) { fmt.Println("closed:", err.Code) },
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	conn := dial(srv.URL, "/ws")
	<-opened

	// A client that answers the close frame, as browsers do.
	go func() {
		defer conn.Close()
		for {
			if _, err := wsutil.ReadServerText(conn); err != nil {
				return // wsutil answered the close frame
			}
		}
	}()
	// Stop taking new requests first, then drain the WebSockets.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Close()
	if err := hub.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("shut down")
	// Output:
	// closed: 1001 going away
	// shut down
}

// A connection that another server accepted, or one end of a net.Pipe as
// here, enters the hub through ServeConn. With nothing read from it yet,
// the hub reads the upgrade request itself; a server that has parsed the
// request (fasthttp, say) passes it, with the bytes its reader holds past
// it.
func ExampleHub_ServeConn() {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			c.WriteMessage(typ, data) // echo
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()

	client, server := net.Pipe()
	if err := hub.ServeConn(server, nil, nil); err != nil {
		log.Fatal(err)
	}
	d := ws.Dialer{NetDial: func(context.Context, string, string) (net.Conn, error) { return client, nil }}
	conn, _, _, err := d.Dial(context.Background(), "ws://pipe/ws")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	wsutil.WriteClientText(conn, []byte("hello over a pipe"))
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	// Output: hello over a pipe
}
