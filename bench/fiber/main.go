// Command fiber measures idle memory per connection for a WebSocket echo
// served three ways: wshub through Fiber (adapters/fiber), wshub through
// net/http (Hub.ServeHTTP), and Fiber's own WebSocket middleware
// (github.com/gofiber/contrib/websocket, on fasthttp/websocket, a goroutine
// per connection). It lives in a module of its own so that Fiber stays out
// of the other benchmarks' go.mod.
//
//	cd bench/fiber && go run . [-counts 2000,5000,10000,19000] [-out RESULTS.md]
//
// Each server runs in its own process (this program, started again); this process holds the connections, silent, and samples the
// server at each count: RSS from /proc/PID/statm, and the Go heap and
// goroutines from the server's /stats after it has collected and returned
// freed memory, as bench/cmd/results does. Memory per connection is the
// least-squares slope over the counts.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	contrib "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/wshub/wshub"
	wshubfiber "github.com/wshub/wshub/adapters/fiber"
)

// The measuring process starts itself again with these set to run a server.
const (
	serveEnv = "FIBERBENCH_SERVE"
	addrEnv  = "FIBERBENCH_ADDR"
)

// servers are the ways of serving the echo that are measured, in the order
// of the report.
var servers = []struct{ name, what string }{
	{"wshub-fiber", "wshub through Fiber v2 (`wshubfiber.Handler`)"},
	{"wshub-nethttp", "wshub through `net/http` (`Hub.ServeHTTP`)"},
	{"fiber-websocket", "Fiber v2's WebSocket middleware (`gofiber/contrib/websocket`)"},
}

func main() {
	if name := os.Getenv(serveEnv); name != "" {
		if err := runServer(name, os.Getenv(addrEnv)); err != nil {
			log.Fatal(err)
		}
		return
	}
	counts := flag.String("counts", "2000,5000,10000,19000", "connection counts to sample")
	out := flag.String("out", "RESULTS.md", "report to write")
	flag.Parse()
	var ns []int
	for s := range strings.SplitSeq(*counts, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			log.Fatalf("-counts: %v", err)
		}
		ns = append(ns, n)
	}
	start := time.Now()
	var rows []row
	for _, s := range servers {
		r, err := measure(s.name, ns, time.Second)
		if err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		r.what = s.what
		log.Printf("%s: %.0f B RSS, %.0f B heap, %.2f goroutines per connection", s.name, r.rss, r.heap, r.goroutines)
		rows = append(rows, r)
	}
	report := render(rows, ns, time.Since(start))
	fmt.Print(report)
	if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
		log.Fatal(err)
	}
}

// row is one server's figures per connection.
type row struct {
	name, what            string
	rss, heap, goroutines float64
}

// sample is a server's memory with some connections held.
type sample struct {
	conns                 int
	rss, heap, goroutines float64
}

// measure starts the server called name in a process of its own, holds
// each count of silent connections to it and samples it, settle after the
// last connection of each count is up.
func measure(name string, counts []int, settle time.Duration) (row, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return row{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		return row{}, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), serveEnv+"="+name, addrEnv+"="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return row{}, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if err := waitPort(addr); err != nil {
		return row{}, err
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var samples []sample
	for _, n := range counts {
		cs, err := dial("ws://"+addr+"/echo", n-len(held))
		held = append(held, cs...)
		if err != nil {
			return row{}, fmt.Errorf("at %d connections: %v", n, err)
		}
		time.Sleep(settle) // let upgrade goroutines and buffers go
		s, err := stats(addr, cmd.Process.Pid)
		if err != nil {
			return row{}, err
		}
		s.conns = n
		samples = append(samples, s)
	}
	return row{
		name:       name,
		rss:        slope(samples, func(s sample) float64 { return s.rss }),
		heap:       slope(samples, func(s sample) float64 { return s.heap }),
		goroutines: slope(samples, func(s sample) float64 { return s.goroutines }),
	}, nil
}

// dial opens n WebSocket connections to url, eight at a time, and checks
// that each echoes.
func dial(url string, n int) ([]net.Conn, error) {
	var (
		mu    sync.Mutex
		conns []net.Conn
		first error
		wg    sync.WaitGroup
		next  = make(chan struct{})
	)
	for range 8 {
		wg.Go(func() {
			for range next {
				nc, _, _, err := ws.Dial(context.Background(), url)
				mu.Lock()
				if err != nil {
					first = cmpErr(first, err)
				} else {
					conns = append(conns, nc)
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return conns, first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// stats samples the server: RSS, and its /stats.
func stats(addr string, pid int) (sample, error) {
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	var st struct{ Heap, Goroutines float64 }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return sample{}, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return sample{}, err
	}
	var size, pages float64
	fmt.Sscan(string(b), &size, &pages)
	return sample{rss: pages * float64(os.Getpagesize()), heap: st.Heap, goroutines: st.Goroutines}, nil
}

// slope is the least-squares slope of f over the samples.
func slope(ss []sample, f func(sample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range ss {
		x, y := float64(s.conns), f(s)
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func waitPort(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runServer serves the echo called name on addr until killed.
func runServer(name, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
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
			mux.HandleFunc("/stats", serveStats)
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

func serveStats(w http.ResponseWriter, r *http.Request) { w.Write(statsJSON()) }

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

// render writes the report.
func render(rows []row, counts []int, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Idle memory through Fiber\n\n")
	fmt.Fprintf(&b, "Written by `cd bench/fiber && go run .` on %s in %s (%s, %d CPUs). ", time.Now().UTC().Format("2006-01-02"), took.Round(time.Second), runtime.Version(), runtime.NumCPU())
	fmt.Fprintf(&b, "An echo server, each in its own process; this process holds %v silent connections in turn and samples the server's RSS, and its Go heap and goroutines after it has collected and returned freed memory. Per connection: the least-squares slope over the counts.\n\n", counts)
	fmt.Fprintf(&b, "| server | RSS per connection | ratio | Go heap per connection | goroutines per connection |\n|---|---:|---:|---:|---:|\n")
	base := rows[0].rss
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %.2f | %s | %.2f |\n", r.what, bytes(r.rss), r.rss/base, bytes(r.heap), r.goroutines)
	}
	return b.String()
}

func bytes(x float64) string {
	if x >= 10000 {
		return fmt.Sprintf("%.1f KB", x/1000)
	}
	return fmt.Sprintf("%.0f B", x)
}
