package main

import (
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The idle ramp, which the idle, deflate, tls and fiber scenarios share:
// connections held open and silent, up to each of some counts in turn,
// and the server's memory sampled at each count and once before the
// first. Per connection is the least-squares slope over the counts.

// idleCounts are the counts of the idle, deflate and fiber scenarios.
var idleCounts = []int{2000, 5000, 10000, 19000}

// idlePoint is a server's memory with conns idle connections held, and
// the whole machine's kernel slab then, where the sockets are.
type idlePoint struct {
	conns int
	harness.Memory
	slab int64
}

// ramp holds connections to url, dialed with dial, up to each of counts in
// turn, and samples s's memory r.settle after each count is up, and once
// before the first; then closes them.
func (r *report) ramp(s *harness.Server, url string, counts []int, dial dialer) ([]idlePoint, error) {
	var held []*load.Conn
	defer func() { load.CloseAll(held) }()
	sample := func(n int) (idlePoint, error) {
		m, err := s.Memory(n)
		if err != nil {
			return idlePoint{}, err
		}
		slab, _ := harness.Slab() // 0 where there is none: the column says nothing
		return idlePoint{n, m, slab}, nil
	}
	p, err := sample(0)
	if err != nil {
		return nil, err
	}
	points := []idlePoint{p}
	for _, n := range counts {
		cs, err := dial(url, n-len(held))
		if err != nil {
			return nil, fmt.Errorf("at %d connections: %v", n, err)
		}
		held = append(held, cs...)
		time.Sleep(r.settle) // the upgrades' goroutines and buffers go
		p, err := sample(n)
		if err != nil {
			return nil, err
		}
		points = append(points, p)
	}
	return points, nil
}

// slope is the least-squares slope of f over the points but the first
// (no connections): per connection.
func slope(points []idlePoint, f func(idlePoint) float64) float64 {
	var xs, ys []float64
	for _, p := range points[1:] {
		xs, ys = append(xs, float64(p.conns)), append(ys, f(p))
	}
	return harness.Slope(xs, ys)
}

func rss(p idlePoint) float64        { return float64(p.RSS) }
func heap(p idlePoint) float64       { return float64(p.Heap) }
func goroutines(p idlePoint) float64 { return float64(p.Goroutines) }
func slab(p idlePoint) float64       { return float64(p.slab) }

// idle holds idleCounts silent connections to each library's server in
// turn, and samples its memory at each count.
func (r *report) idle() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	var ts []target
	for _, name := range r.idleRows() {
		p := harness.Process{Bin: bin, Args: []string{"-lib", name}}
		if lib, ok := strings.CutSuffix(name, " -listener"); ok {
			p.Args, p.HTTPPort = []string{"-lib", lib, "-listener"}, true
		}
		ts = append(ts, target{name, p, "/echo"})
	}
	runs, err := measureEach(1, ts, func(_ int, t target, s *harness.Server) ([]idlePoint, error) {
		points, err := r.ramp(s, s.URL(t.path), r.countsOr(idleCounts), dial)
		if err == nil {
			log.Printf("idle %s: %.0f B RSS/conn", t.name, slope(points, rss))
		}
		return points, err
	})
	if err != nil {
		return err
	}
	r.idlePoints = make(map[string][]idlePoint)
	for i, t := range ts {
		r.idlePoints[t.name] = runs[i][0]
	}
	return nil
}

// idleRows are the idle scenario's servers: the libraries, and wshub on
// its own listener too.
func (r *report) idleRows() []string {
	var rows []string
	for _, lib := range r.libs {
		rows = append(rows, lib)
		if lib == "wshub" {
			rows = append(rows, "wshub -listener")
		}
	}
	return rows
}

func (r *report) writeIdle(p printer) {
	p("Connections held open and silent by the load process; memory per connection is the least-squares slope over %v connections. ", r.countsOr(idleCounts))
	p("Before each sample the server collects and returns freed memory to the system (`/stats`).\n\n")
	p("\"Total memory per connection\" adds the kernel's share to RSS: the slope of `Slab` in `/proc/meminfo`, halved, since the client's socket is on the same machine; it is the whole machine's, so other processes move it a little.\n\n")
	p("| library | RSS per connection | ratio | Go heap per connection | goroutines per connection | kernel slab per connection | total memory per connection | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	total := func(lib string) (slabPer, total float64) {
		slabPer = slope(r.idlePoints[lib], slab) / 2
		return slabPer, slope(r.idlePoints[lib], rss) + slabPer
	}
	base := slope(r.idlePoints["wshub"], rss)
	_, baseTotal := total("wshub")
	for _, lib := range r.idleRows() {
		pts := r.idlePoints[lib]
		perRSS := slope(pts, rss)
		slabPer, tot := total(lib)
		p("| %s | %s | %s | %s | %.2f | %s | %s | %s |\n", lib, kb(perRSS), ratio(perRSS, base), kb(slope(pts, heap)),
			slope(pts, goroutines), kb(slabPer), kb(tot), ratio(tot, baseTotal))
	}
	p("\n![Memory per connection against connections](idle-memory.svg)\n\n")
	p("The plot shows what a server holding n connections pays per connection, its fixed costs included: (RSS at n − RSS before the first) / n, on a logarithmic scale; the table's slope is the cost of one more. The plot counts RSS only.\n\n")
}
