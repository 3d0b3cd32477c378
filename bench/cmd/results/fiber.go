package main

import (
	"fmt"
	"log"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The fiber scenario: idle memory per connection for a WebSocket echo
// served three ways by bench/fiber, which is a module of its own so that
// Fiber stays out of bench's go.mod. The idle ramp over idleCounts (or
// -counts), as the idle scenario's.

// fiberServers are bench/fiber's servers (its -server), in the order of
// the table.
var fiberServers = []struct{ name, what string }{
	{"wshub-fiber", "wshub through Fiber v2 (`wshubfiber.Handler`)"},
	{"wshub-nethttp", "wshub through `net/http` (`Hub.ServeHTTP`)"},
	{"fiber-websocket", "Fiber v2's WebSocket middleware (`gofiber/contrib/websocket`)"},
}

// fiberRow is one server's ramp.
type fiberRow struct {
	what   string
	points []idlePoint
}

func (r *report) fiber() error {
	bin, err := r.fiberServer()
	if err != nil {
		return err
	}
	r.fiberRows = nil
	for _, f := range fiberServers {
		s, err := harness.Start(harness.Process{Bin: bin, Args: []string{"-server", f.name}})
		if err != nil {
			return err
		}
		points, err := r.ramp(s, s.URL("/echo"), r.countsOr(idleCounts), dialFew)
		s.Stop()
		if err != nil {
			return fmt.Errorf("%s: %v", f.name, err)
		}
		r.fiberRows = append(r.fiberRows, fiberRow{f.what, points})
		log.Printf("fiber %s: %.0f B RSS, %.0f B heap, %.2f goroutines per connection", f.name, slope(points, rss), slope(points, heap), slope(points, goroutines))
	}
	return nil
}

func (r *report) writeFiber(p printer) {
	p("An echo server (`bench/fiber -server NAME`), each in its own process; the `results` process holds %v silent connections in turn and samples the server's RSS, and its Go heap and goroutines after it has collected and returned freed memory (`/stats`). Per connection: the least-squares slope over the counts.\n\n", r.countsOr(idleCounts))
	p("| server | RSS per connection | ratio | Go heap per connection | goroutines per connection |\n|---|---:|---:|---:|---:|\n")
	base := slope(r.fiberRows[0].points, rss)
	for _, row := range r.fiberRows {
		perRSS := slope(row.points, rss)
		p("| %s | %s | %.2f | %s | %.2f |\n", row.what, kb(perRSS), perRSS/base, kb(slope(row.points, heap)), slope(row.points, goroutines))
	}
	p("\n")
}

// dialFew dials n connections to url eight at a time: fasthttp keeps a
// worker goroutine for each request in flight, idle for 10 s after, which
// dialing a hundred at a time would count as memory per connection.
func dialFew(url string, n int) ([]*load.Conn, error) {
	var all []*load.Conn
	for len(all) < n {
		cs, err := dial(url, min(8, n-len(all)))
		if err != nil {
			load.CloseAll(all)
			return nil, err
		}
		all = append(all, cs...)
	}
	return all, nil
}
