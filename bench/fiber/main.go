// Command fiber serves a WebSocket echo three ways, for cmd/results' fiber
// scenario, which measures idle memory per connection with each: wshub
// through Fiber (adapters/fiber), wshub through net/http
// (Hub.ServeHTTP), and Fiber's own WebSocket middleware
// (github.com/gofiber/contrib/websocket, on fasthttp/websocket, a goroutine
// per connection). It lives in a module of its own so that Fiber stays out
// of the other benchmarks' go.mod; the measuring is bench's.
//
//	cd bench/fiber && go run . -server wshub-fiber -addr 127.0.0.1:9003
//
// Routes: /echo, and /stats, the Go heap and goroutines as JSON after
// collecting and returning freed memory to the system, as cmd/server's.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"

	contrib "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/wshub/wshub"
	wshubfiber "github.com/wshub/wshub/adapters/fiber"
)

func main() {
	server := flag.String("server", "wshub-fiber", "wshub-fiber, wshub-nethttp or fiber-websocket")
	addr := flag.String("addr", "127.0.0.1:9003", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve(*server, ln))
}

// serve serves the echo called name on ln until ln fails.
func serve(name string, ln net.Listener) error {
	echo := func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) }
	switch name {
	case "wshub-fiber", "wshub-nethttp":
		hub, err := wshub.New(&wshub.Options{OnMessage: echo})
		if err != nil {
			return err
		}
		if name == "wshub-nethttp" {
			mux := http.NewServeMux()
			mux.Handle("/echo", hub)
			mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) { w.Write(statsJSON()) })
			return http.Serve(ln, mux)
		}
		app := newApp()
		app.Get("/echo", wshubfiber.Handler(hub))
		return app.Listener(ln)
	case "fiber-websocket":
		app := newApp()
		app.Get("/echo", contrib.New(func(c *contrib.Conn) {
			for {
				typ, p, err := c.ReadMessage()
				if err != nil {
					return
				}
				if err := c.WriteMessage(typ, p); err != nil {
					return
				}
			}
		}))
		return app.Listener(ln)
	}
	return fmt.Errorf("no server %q", name)
}

// newApp returns a Fiber app with the /stats route.
func newApp() *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/stats", func(c *fiber.Ctx) error {
		c.Set("Content-Type", "application/json")
		return c.Send(statsJSON())
	})
	return app
}

// statsJSON collects and returns freed memory, then reports the Go heap and
// the goroutines.
func statsJSON() []byte {
	debug.FreeOSMemory()
	debug.FreeOSMemory() // the second empties the pools' victim caches
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, _ := json.Marshal(map[string]uint64{"heap": ms.HeapAlloc, "goroutines": uint64(runtime.NumGoroutine())})
	return b
}
