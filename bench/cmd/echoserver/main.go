// Command echoserver serves a WebSocket echo at /ws with the library named
// by -lib, so that the same load generator can measure each one.
//
//	go run ./cmd/echoserver -lib wshub -addr 127.0.0.1:9001
//	go run ./cmd/echoserver -lib wshub -listener -addr 127.0.0.1:9001
//	go run ./cmd/echoserver -lib gorilla -addr 127.0.0.1:9001
package main

import (
	"flag"
	"log"
	"net"
	"net/http"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub"
)

func main() {
	lib := flag.String("lib", "wshub", "library: wshub or gorilla")
	addr := flag.String("addr", "127.0.0.1:9001", "address to listen on")
	own := flag.Bool("listener", false, "wshub: serve with the hub's own listener instead of net/http")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	switch *lib {
	case "wshub":
		err = serveWshub(ln, *own)
	case "gorilla":
		err = http.Serve(ln, gorillaEcho())
	default:
		log.Fatalf("unknown -lib %q", *lib)
	}
	log.Fatal(err)
}

func serveWshub(ln net.Listener, own bool) error {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		return err
	}
	if own {
		return hub.Serve(ln)
	}
	return http.Serve(ln, hub)
}

// gorillaEcho is gorilla/websocket's usual shape: a goroutine per
// connection that reads a message and writes it back.
func gorillaEcho() http.Handler {
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
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
