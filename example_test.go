package wshub_test

import (
	"bufio"
	"compress/flate"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
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
	hub, err := wshub.New(&wshub.Options{
		// The client's handshake completes when OnOpen returns: it
		// cannot miss what the channel gets afterwards.
		OnOpen: func(c *wshub.Conn) { c.Hub().Channel("news").Subscribe(c) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	readers := []net.Conn{dial(srv.URL, "/ws"), dial(srv.URL, "/ws")}
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
	hub, err := wshub.New(&wshub.Options{
		OnOpen: func(c *wshub.Conn) { c.Hub().Channel("prices").Subscribe(c) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	conn := dial(srv.URL, "/ws")
	defer conn.Close()
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
	hub, err := wshub.New(&wshub.Options{
		// Whatever the connection needs later goes in Data; here, the user.
		OnUpgrade: func(r *http.Request) (any, error) {
			user := r.URL.Query().Get("user") // in real life: from a verified token
			if user == "" {
				return nil, &wshub.UpgradeError{Status: http.StatusUnauthorized, Reason: "who are you?"}
			}
			return user, nil
		},
		OnOpen: func(c *wshub.Conn) { c.SetUser(c.Data().(string)) },
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
	hub, err := wshub.New(&wshub.Options{
		OnClose: func(_ *wshub.Conn, err *wshub.CloseError) { fmt.Println("closed:", err.Code) },
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	conn := dial(srv.URL, "/ws")

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

// OnUpgrade authenticates the upgrade request before any WebSocket exists:
// an *UpgradeError refuses it with its status, headers and body, the same
// on every door, and the refusal is counted in Stats.Refused by status.
// What OnUpgrade returns otherwise is the connection's Data.
func ExampleUpgradeError() {
	tokens := map[string]string{"s3cret": "ann"} // in real life: verify a JWT, look up a session
	hub, err := wshub.New(&wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			user, ok := tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
			if !ok {
				return nil, &wshub.UpgradeError{
					Status: http.StatusUnauthorized,
					Reason: "log in first",
					Header: http.Header{"WWW-Authenticate": {`Bearer realm="chat"`}},
				}
			}
			return user, nil
		},
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			c.WriteMessage(typ, []byte(string(data)+", "+c.Data().(string)))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	// Without a token: the client reads a plain HTTP response.
	d := ws.Dialer{OnStatusError: func(status int, reason []byte, resp io.Reader) {
		r, err := http.ReadResponse(bufio.NewReader(resp), nil)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Printf("refused: %d %s, WWW-Authenticate: %s, body: %q\n", status, reason, r.Header.Get("WWW-Authenticate"), body)
	}}
	if _, _, _, err := d.Dial(context.Background(), url); !errors.As(err, new(ws.StatusError)) {
		log.Fatal(err)
	}

	// With one (browsers cannot set headers on a WebSocket: use a cookie
	// or a query parameter there).
	d.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer s3cret"}})
	conn, _, _, err := d.Dial(context.Background(), url)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	wsutil.WriteClientText(conn, []byte("hello"))
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	fmt.Println("refused by status:", hub.Stats().Refused)
	// Output:
	// refused: 401 Unauthorized, WWW-Authenticate: Bearer realm="chat", body: "log in first\n"
	// hello, ann
	// refused by status: map[401:1]
}

// localCert returns a self-signed certificate for 127.0.0.1 made in memory,
// and a pool for clients to trust it. A service loads its own instead:
// tls.LoadX509KeyPair("cert.pem", "key.pem").
func localCert() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}

// wss:// on the hub's own listener: ServeTLS runs each TLS handshake on a
// short-lived goroutine, then the connection joins the event loops like a
// plain one. In a service: hub.ListenAndServeTLS(":443", cfg).
func ExampleHub_ServeTLS() {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			c.WriteMessage(typ, data) // echo
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close() // closes the listener too
	cert, roots := localCert()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go hub.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{cert}})

	d := ws.Dialer{TLSConfig: &tls.Config{RootCAs: roots}}
	conn, _, _, err := d.Dial(context.Background(), "wss://"+ln.Addr().String()+"/ws")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	wsutil.WriteClientText(conn, []byte("hello over wss://"))
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	// Output: hello over wss://
}

// wss:// through net/http: the hub is mounted on a route of an
// http.Server that serves TLS, next to the server's other routes, on a
// listener wrapped by Hub.Listener. The WebSocket still leaves net/http
// after the upgrade: the hub serves it on its event loops. Over ln itself
// it would work too, on the portable path, with a goroutine of its own
// (Stats.Portable).
func ExampleHub_Listener() {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			c.WriteMessage(typ, data) // echo
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	cert, roots := localCert()
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.ServeTLS(hub.Listener(ln), "", "") // the certificate is in TLSConfig
	defer srv.Close()

	d := ws.Dialer{TLSConfig: &tls.Config{RootCAs: roots}}
	conn, _, _, err := d.Dial(context.Background(), "wss://"+ln.Addr().String()+"/ws")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	wsutil.WriteClientText(conn, []byte("hello over wss:// via net/http"))
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	fmt.Println("connections with a goroutine of their own:", hub.Stats().Portable)
	// Output:
	// hello over wss:// via net/http
	// connections with a goroutine of their own: 0
}

// With Options.Compression the hub speaks permessage-deflate with clients
// that offer it, compressing each publish once for all of them. Messages
// under Threshold go out as they are, and so do those deflate cannot make
// shorter; Stats.Compressed counts only what went out compressed.
func ExampleCompression() {
	hub, err := wshub.New(&wshub.Options{
		Compression: &wshub.Compression{Level: flate.BestSpeed, Threshold: 64},
		OnOpen:      func(c *wshub.Conn) { c.Hub().Channel("feed").Subscribe(c) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	// A client offering permessage-deflate without context takeover, as
	// gobwas's wsflate does; browsers offer it with theirs, which the hub
	// serves too.
	params := wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
	var d ws.Dialer
	d.Extensions = append(d.Extensions, params.Option())
	conn, _, hs, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println("negotiated:", string(hs.Extensions[0].Name))

	for _, msg := range []string{
		`{"ok":true}`, // under Threshold
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", // 64 bytes deflate cannot shrink
		strings.Repeat(`{"symbol":"ACME","price":12.5},`, 10),              // JSON that shrinks
	} {
		hub.Channel("feed").Publish(wshub.Text, []byte(msg))
		f, err := ws.ReadFrame(conn)
		if err != nil {
			log.Fatal(err)
		}
		compressed, _ := wsflate.IsCompressed(f.Header)
		wire := len(f.Payload)
		if compressed {
			if f, err = wsflate.DecompressFrame(f); err != nil {
				log.Fatal(err)
			}
		}
		fmt.Printf("%d bytes, compressed: %v, smaller on the wire: %v\n", len(f.Payload), compressed, wire < len(f.Payload))
	}
	fmt.Println("Stats.Compressed:", hub.Stats().Compressed)
	// Output:
	// negotiated: permessage-deflate
	// 11 bytes, compressed: false, smaller on the wire: false
	// 64 bytes, compressed: false, smaller on the wire: false
	// 310 bytes, compressed: true, smaller on the wire: true
	// Stats.Compressed: 1
}
