package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wshub/wshub/bench/load"
	"github.com/wshub/wshub/bench/plot"
)

// report collects every scenario's figures, then writes them.
type report struct {
	bin     string
	libs    []string
	out     string
	elapsed time.Duration

	idleCounts  []int
	idlePoints  map[string][]idlePoint
	echoes      map[string]echoResult
	bcasts      map[string][]bcastResult
	connects    map[string]connectResult
	cluster1    []bcastResult
	cluster2    []bcastResult
	attacks     map[string]load.AttackResult
	attackRows  []string // the attack's servers, in the order measured
	deflateRows []deflateRow
	deflateIdle []deflateIdleRow
	fanout      map[fanoutKey][]fanoutResult // the broadcast scenario's runs
	fanoutRows  []fanoutTarget
	frags       map[fragKey][]fragResult // the fragments scenario's runs
	fragRows    []fragTarget
	fragTimeout time.Duration // -frag-timeout
	runs        int           // -runs: the broadcast scenario's interleaved runs
	before      string        // -before: a cmd/server built on an older core
	echoBin     string        // examples/echo, for the attack scenario
	tmp         string        // where binaries are built
	prebuilt    bool          // -server or -echo: binaries built elsewhere
	partial     bool          // not every scenario ran: keep the others' sections
}

type idlePoint struct {
	conns      int
	rss, heap  float64
	goroutines int
	slab       float64 // the machine's kernel slab (/proc/meminfo), both ends' sockets
}

type echoResult struct {
	load.EchoResult
	cpu time.Duration // server CPU per round trip
}

type bcastCase struct{ size, burst int }

var bcastCases = []bcastCase{{64, 1}, {64, 20}, {1024, 1}, {1024, 20}}

func (c bcastCase) String() string {
	if c.burst == 1 {
		return fmt.Sprintf("%d B, one at a time", c.size)
	}
	return fmt.Sprintf("%d B, bursts of %d", c.size, c.burst)
}

type connectResult struct {
	rate float64       // upgrades per second
	cpu  time.Duration // server CPU per upgrade, closing included
}

type bcastResult struct {
	rate       float64       // deliveries per second
	cpu        time.Duration // server CPU per delivery
	wire       float64       // bytes the subscribers read per delivery, frame headers included
	compressed float64       // the share of deliveries that came compressed (RSV1)
	peakRSS    int64         // the (first) server's RSS at its highest through the cases
}

// idle holds 2k, 5k, 10k and 19k silent connections to each server in turn
// and samples its memory at each count, and once before the first.
func (r *report) idle() error {
	r.idleCounts = []int{2000, 5000, 10000, 19000}
	r.idlePoints = make(map[string][]idlePoint)
	for _, lib := range r.idleRows() {
		args := []string{"-lib", lib}
		if name, ok := strings.CutSuffix(lib, " -listener"); ok {
			args = []string{"-lib", name, "-listener"}
		}
		s, err := startServer(r.bin, args...)
		if err != nil {
			return err
		}
		points, err := idleRamp(s, s.url("/echo"), r.idleCounts, dial)
		s.stop()
		if err != nil {
			return fmt.Errorf("%s: %v", lib, err)
		}
		r.idlePoints[lib] = points
		log.Printf("idle %s: %.0f B RSS/conn", lib, r.idleSlope(lib, func(p idlePoint) float64 { return p.rss }))
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

// idleRamp holds connections to url up to each of counts in turn, dialed
// with dialer, and samples s's memory at each count, and once before the
// first; then closes them.
func idleRamp(s *server, url string, counts []int, dialer func(string, int) ([]*load.Conn, error)) ([]idlePoint, error) {
	var held []*load.Conn
	defer func() { load.CloseAll(held) }()
	rss, heap, g, err := s.memory()
	if err != nil {
		return nil, err
	}
	points := []idlePoint{{0, rss, heap, g, slab()}}
	for _, n := range counts {
		cs, err := dialer(url, n-len(held))
		if err != nil {
			return nil, fmt.Errorf("at %d connections: %v", n, err)
		}
		held = append(held, cs...)
		time.Sleep(time.Second) // let upgrade goroutines and buffers go
		rss, heap, g, err := s.memory()
		if err != nil {
			return nil, err
		}
		points = append(points, idlePoint{n, rss, heap, g, slab()})
	}
	return points, nil
}

// slab returns the kernel's slab memory, from /proc/meminfo, or 0.
func slab() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Slab:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024
		}
	}
	return 0
}

// idleSlope is the least-squares slope of f over the counts, in bytes per
// connection.
func (r *report) idleSlope(lib string, f func(idlePoint) float64) float64 {
	return slope(r.idlePoints[lib], f)
}

// slope is the least-squares slope of f over points but the first (no
// connections), in bytes per connection.
func slope(points []idlePoint, f func(idlePoint) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range points[1:] {
		x, y := float64(p.conns), f(p)
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func (r *report) echo() error {
	r.echoes = make(map[string]echoResult)
	for _, lib := range r.libs {
		s, err := startServer(r.bin, "-lib", lib)
		if err != nil {
			return err
		}
		cs, err := dial(s.url("/echo"), 1000)
		if err != nil {
			s.stop()
			return err
		}
		var cpu0 time.Duration
		res := load.EchoWindow(cs, 256, 2*time.Second, 10*time.Second, func(start bool) {
			if start {
				cpu0 = s.cpu()
			} else {
				cpu0 = s.cpu() - cpu0
			}
		})
		load.CloseAll(cs)
		s.stop()
		if res.Errors > 0 {
			return fmt.Errorf("%s: %d connections failed", lib, res.Errors)
		}
		r.echoes[lib] = echoResult{res, cpu0 / time.Duration(max(res.Messages, 1))}
		log.Printf("echo %s: %.0f round trips/s", lib, res.Rate())
	}
	return nil
}

// measureBroadcast spreads subs subscribers evenly over the servers,
// publishes bcastCases through the first, and returns what the subscribers
// received in each case, counted from the request to publish until every
// subscriber had every message.
func measureBroadcast(servers []*server, subs int) ([]bcastResult, error) {
	return measureBroadcastWith(servers, subs, bcastOpts{cases: bcastCases})
}

// bcastOpts varies measureBroadcast.
type bcastOpts struct {
	cases   []bcastCase
	json    bool // publish load.FeedJSON as text, not binary
	deflate bool // subscribers offer permessage-deflate, and must get it
	// ready, if set, is called once every subscriber has a message, before
	// the cases: to sample the servers with their subscribers at rest.
	ready func() error
}

// measureBroadcastWith is measureBroadcast with other cases and messages.
func measureBroadcastWith(servers []*server, subs int, o bcastOpts) ([]bcastResult, error) {
	var cs []*load.Conn
	defer func() { load.CloseAll(cs) }()
	for i, s := range servers {
		n := subs / len(servers)
		if i == 0 {
			n += subs % len(servers)
		}
		dialer := dial
		if o.deflate {
			dialer = dialDeflate
		}
		c, err := dialer(s.url("/room"), n)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c...)
	}
	recv := load.Receive(cs)
	query := ""
	if o.json {
		query = "&json=1"
	}
	publish := func(n, size int) error {
		return get(fmt.Sprintf("http://%s/publish?n=%d&size=%d%s", servers[0].httpAddr, n, size, query))
	}
	// Until one message reaches every subscriber: the last ones to join,
	// and with a broker the other servers' subscriptions, take a moment.
	for try := 0; ; try++ {
		if try == 30 {
			return nil, fmt.Errorf("warm-up: not every subscriber received a message in 30 tries")
		}
		before := recv.Received()
		if err := publish(1, o.cases[0].size); err != nil {
			return nil, err
		}
		if recv.WaitReceived(before+int64(subs), time.Second) {
			break
		}
		recv.WaitReceived(1<<62, 500*time.Millisecond) // let stragglers land
	}
	if o.ready != nil {
		if err := o.ready(); err != nil {
			return nil, err
		}
	}
	cpu := func() (t time.Duration) {
		for _, s := range servers {
			t += s.cpu()
		}
		return t
	}
	// The first server's RSS, sampled through the cases.
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := load.ProcessRSS(servers[0].cmd.Process.Pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	var out []bcastResult
	for _, c := range o.cases {
		const messages, reps = 20, 3
		cpu0, wire0, comp0 := cpu(), recv.Wire(), recv.Compressed()
		start := time.Now()
		for range reps {
			for range messages / c.burst {
				want := recv.Received() + int64(subs*c.burst)
				if err := publish(c.burst, c.size); err != nil {
					return nil, err
				}
				if !recv.WaitReceived(want, 60*time.Second) {
					return nil, fmt.Errorf("%v: %d messages lost", c, want-recv.Received())
				}
			}
		}
		elapsed := time.Since(start)
		deliveries := subs * messages * reps
		out = append(out, bcastResult{
			rate:       float64(deliveries) / elapsed.Seconds(),
			cpu:        (cpu() - cpu0) / time.Duration(deliveries),
			wire:       float64(recv.Wire()-wire0) / float64(deliveries),
			compressed: float64(recv.Compressed()-comp0) / float64(deliveries),
		})
	}
	close(stopSampling)
	<-sampled
	for i := range out {
		out[i].peakRSS = peak.Load()
	}
	if n := recv.OutOfOrder(); n > 0 {
		return nil, fmt.Errorf("%d messages out of order", n)
	}
	if n := recv.Lost(); n > 0 {
		return nil, fmt.Errorf("%d messages lost", n)
	}
	if n := recv.BadInflate(); n > 0 {
		return nil, fmt.Errorf("%d compressed messages did not inflate", n)
	}
	if o.deflate && recv.Inflated() == 0 {
		return nil, fmt.Errorf("no compressed message was inflated")
	}
	return out, nil
}

// connect times 5,000 upgrades, 100 in flight at a time.
func (r *report) connect() error {
	r.connects = make(map[string]connectResult)
	for _, lib := range r.libs {
		s, err := startServer(r.bin, "-lib", lib)
		if err != nil {
			return err
		}
		cpu0 := s.cpu()
		start := time.Now()
		cs, err := dial(s.url("/echo"), 5000)
		elapsed := time.Since(start)
		load.CloseAll(cs)
		time.Sleep(time.Second) // the server closes its side too
		cpu := s.cpu() - cpu0
		s.stop()
		if err != nil {
			return fmt.Errorf("%s: %v", lib, err)
		}
		r.connects[lib] = connectResult{5000 / elapsed.Seconds(), cpu / 5000}
		log.Printf("connect %s: %.0f upgrades/s", lib, r.connects[lib].rate)
	}
	return nil
}

func (r *report) cluster() error {
	ns, err := startNATS()
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	one, err := startServer(r.bin, "-lib", "wshub")
	if err != nil {
		return err
	}
	r.cluster1, err = measureBroadcast([]*server{one}, 10000)
	one.stop()
	if err != nil {
		return fmt.Errorf("one hub: %v", err)
	}
	var two []*server
	for range 2 {
		s, err := startServer(r.bin, "-lib", "wshub", "-nats", ns.ClientURL())
		if err != nil {
			return err
		}
		defer s.stop()
		two = append(two, s)
	}
	r.cluster2, err = measureBroadcast(two, 10000)
	if err != nil {
		return fmt.Errorf("two hubs: %v", err)
	}
	return nil
}

// attackCfg is the attack scenario: 2,000 clients each hold all but the
// last byte of a 1 MiB message (at most the default message limit of
// wshub), then finish it.
var attackCfg = load.AttackConfig{Conns: 2000, Size: 1 << 20, Echo: 256, Hold: 15 * time.Second, MaxHold: 25 * time.Second, Finish: true, FinishWithin: 60 * time.Second}

// attackTarget is one server the attack scenario measures.
type attackTarget struct {
	name, path string
	bin        string // "" for examples/echo, built on first use
	args       []string
}

// attack measures each library's RSS growth under attackCfg, a control
// client's echoes meanwhile, and the attackers' messages after they finish;
// with wshub, also examples/echo on both doors, with its defaults.
func (r *report) attack() error {
	r.attacks = make(map[string]load.AttackResult)
	r.attackRows = nil
	var targets []attackTarget
	for _, lib := range r.libs {
		targets = append(targets, attackTarget{name: lib, path: "/echo", bin: r.bin, args: []string{"-lib", lib}})
	}
	if slices.Contains(r.libs, "wshub") {
		targets = append(targets,
			attackTarget{name: "examples/echo", path: "/ws"},
			attackTarget{name: "examples/echo -listener", path: "/ws", args: []string{"-listener"}})
	}
	for _, t := range targets {
		if t.bin == "" {
			if r.echoBin == "" {
				var err error
				// In the examples' module, so that the build works
				// with or without the repository's go.work.
				if r.echoBin, err = build(r.tmp, "../examples", "./echo"); err != nil {
					return err
				}
			}
			t.bin = r.echoBin
		}
		s, err := startServer(t.bin, t.args...)
		if err != nil {
			return err
		}
		cfg := attackCfg
		cfg.URL, cfg.PID = s.url(t.path), s.cmd.Process.Pid
		res, err := load.Attack(context.Background(), cfg)
		s.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		total, _ := res.Growth()
		log.Printf("attack %s: +%.0f MB (peak at %v of %v), %.0f MB written, %d closed in the hold (%v), control %d echoes %d failed, finished %d/%d in %v (%v)",
			t.name, total/1e6, res.PeakAt.Round(100*time.Millisecond), res.Held.Round(100*time.Millisecond), float64(res.Written)/1e6, res.ClosedInHold, res.HoldError,
			res.Echoes, res.EchoErrors, res.Finished, res.Attackers, res.FinishedIn.Round(100*time.Millisecond), res.FinishError)
		r.attacks[t.name] = res
		r.attackRows = append(r.attackRows, t.name)
	}
	return nil
}

// ratio formats v/base, or "—" where there is no base.
func ratio(v, base float64) string {
	if base == 0 {
		return "—"
	}
	if r := v / base; r >= 10 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.2f", v/base)
}

// micros is d in microseconds, for the CPU columns.
func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

func kb(b float64) string {
	if b >= 10000 {
		return fmt.Sprintf("%.1f KB", b/1000)
	}
	return fmt.Sprintf("%.0f B", b)
}

func (r *report) write() error {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("# wshub against its peers\n\n")
	p("Written by `cd bench && go run ./cmd/results` on %s in %v; every figure below comes from that one run, but for sections that name their own command.\n\n",
		time.Now().UTC().Format("2006-01-02"), r.elapsed.Round(time.Second))
	p("Machine: %s.\n\n", machine())
	p("Each library serves the same routes (`cmd/server`), each in its own process, loaded by the `results` process; ")
	p("ratios are to wshub in the same run. On a shared two-core machine absolute rates move by ±10%% between runs; ")
	p("server CPU per message is the steadier figure. wshub is measured through its `net/http` door ")
	p("(`ServeHTTP`), and in the idle and broadcast scenarios on its own listener (`Serve`, \"wshub -listener\") too.\n\n")

	if r.idlePoints != nil {
		p("## Idle connections\n\n")
		if r.partial {
			p("Written by `cd bench && go run ./cmd/results %s` on %s, with the other sections that say so, on %s. ", strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
		}
		p("Connections held open and silent by the load process; memory per connection is the least-squares slope over %v connections. ", r.idleCounts)
		p("Before each sample the server collects and returns freed memory to the system (`/stats`).\n\n")
		p("\"Total memory per connection\" adds the kernel's share to RSS: the slope of `Slab` in `/proc/meminfo`, halved, since the client's socket is on the same machine; it is the whole machine's, so other processes move it a little.\n\n")
		p("| library | RSS per connection | ratio | Go heap per connection | goroutines per connection | kernel slab per connection | total memory per connection | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		base := r.idleSlope("wshub", func(p idlePoint) float64 { return p.rss })
		total := func(lib string) (slab, total float64) {
			slab = r.idleSlope(lib, func(p idlePoint) float64 { return p.slab }) / 2
			return slab, r.idleSlope(lib, func(p idlePoint) float64 { return p.rss }) + slab
		}
		_, baseTotal := total("wshub")
		for _, lib := range r.idleRows() {
			pts := r.idlePoints[lib]
			rss := r.idleSlope(lib, func(p idlePoint) float64 { return p.rss })
			heap := r.idleSlope(lib, func(p idlePoint) float64 { return p.heap })
			first, last := pts[1], pts[len(pts)-1]
			g := float64(last.goroutines-first.goroutines) / float64(last.conns-first.conns)
			slab, tot := total(lib)
			p("| %s | %s | %s | %s | %.2f | %s | %s | %s |\n", lib, kb(rss), ratio(rss, base), kb(heap), g, kb(slab), kb(tot), ratio(tot, baseTotal))
		}
		p("\n![Memory per connection against connections](idle-memory.svg)\n\n")
		p("The plot shows what a server holding n connections pays per connection, its fixed costs included: (RSS at n − RSS before the first) / n, on a logarithmic scale; the table's slope is the cost of one more. The plot counts RSS only.\n\n")
	}
	if r.echoes != nil {
		p("## Echo\n\n1,000 connections, each in a closed loop of 256-byte binary messages, 2 s of warm-up then 10 s measured.\n\n")
		p("| library | round trips/s | ratio | p50 | p99 | server CPU per round trip | ratio |\n|---|---:|---:|---:|---:|---:|---:|\n")
		base := r.echoes["wshub"]
		for _, lib := range r.libs {
			e := r.echoes[lib]
			p("| %s | %.0f | %s | %v | %v | %.2f µs | %s |\n", lib, e.Rate(), ratio(e.Rate(), base.Rate()),
				e.P50.Round(10*time.Microsecond), e.P99.Round(10*time.Microsecond),
				micros(e.cpu), ratio(float64(e.cpu), float64(base.cpu)))
		}
		p("\n")
	}
	if r.fanout != nil {
		r.writeFanout(p)
	}
	if r.connects != nil {
		p("## Connection rate\n\n5,000 upgrades, 100 in flight at a time, then closed. The rate is mostly bound by the load generator on these shared cores; the server's CPU per connection (upgrade and close) is the steadier figure.\n\n")
		p("| library | upgrades/s | ratio | server CPU per connection | ratio |\n|---|---:|---:|---:|---:|\n")
		base := r.connects["wshub"]
		for _, lib := range r.libs {
			c := r.connects[lib]
			p("| %s | %.0f | %s | %.1f µs | %s |\n", lib, c.rate, ratio(c.rate, base.rate), micros(c.cpu), ratio(float64(c.cpu), float64(base.cpu)))
		}
		p("\n")
	}
	if r.cluster1 != nil {
		p("## Across two hubs through NATS\n\n10,000 subscribers in one room: all on one wshub process, then half on each of two sharing the room through NATS (`Options.Broker`, `broker/nats`; the nats-server runs in the measuring process), publishes sent to the first.\n\n")
		p("| case | one hub, deliveries/s | two hubs, deliveries/s | two / one |\n|---|---:|---:|---:|\n")
		for i, c := range bcastCases {
			p("| %v | %.0f | %.0f | %s |\n", c, r.cluster1[i].rate, r.cluster2[i].rate, ratio(r.cluster2[i].rate, r.cluster1[i].rate))
		}
		p("\n")
	}
	if r.attacks != nil {
		r.writeAttack(p)
	}
	if r.deflateRows != nil {
		r.writeDeflate(p)
	}
	if r.frags != nil {
		r.writeFragments(p)
	}
	out := merge(filepath.Join(r.out, "RESULTS.md"), w.String(), r.partial)
	if err := os.WriteFile(filepath.Join(r.out, "RESULTS.md"), []byte(out), 0o644); err != nil {
		return err
	}
	return r.plots()
}

func (r *report) plots() error {
	if r.idlePoints != nil {
		xs := make([]float64, len(r.idleCounts))
		for i, n := range r.idleCounts {
			xs[i] = float64(n)
		}
		var series []plot.Series
		for _, lib := range r.libs {
			pts := r.idlePoints[lib]
			s := plot.Series{Name: lib}
			for _, pt := range pts[1:] {
				s.Values = append(s.Values, max(pt.rss-pts[0].rss, 0)/float64(pt.conns))
			}
			series = append(series, s)
		}
		svg := plot.Lines("Memory per idle connection (RSS, fixed costs included)", "connections held", "bytes per connection", xs, series, true)
		if err := os.WriteFile(filepath.Join(r.out, "idle-memory.svg"), svg, 0o644); err != nil {
			return err
		}
	}
	if r.bcasts != nil {
		var groups []string
		for _, c := range bcastCases {
			groups = append(groups, c.String())
		}
		var series []plot.Series
		for _, lib := range r.libs {
			s := plot.Series{Name: lib}
			for _, b := range r.bcasts[lib] {
				s.Values = append(s.Values, b.rate)
			}
			series = append(series, s)
		}
		svg := plot.Bars("Broadcast to 10,000 connections", "deliveries per second", groups, series)
		if err := os.WriteFile(filepath.Join(r.out, "broadcast.svg"), svg, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// merge returns the report to write. A run of every scenario writes its
// own; a run of some (partial) keeps the existing file and replaces, or
// adds, only the sections ("## " headings) it wrote, each of which says how
// it was made.
func merge(path, report string, partial bool) string {
	old, err := os.ReadFile(path)
	if err != nil || !partial {
		return report
	}
	secs := strings.Split(strings.TrimRight(string(old), "\n"), "\n## ")
	for _, sec := range strings.Split(strings.TrimRight(report, "\n"), "\n## ")[1:] {
		title, _, _ := strings.Cut(sec, "\n")
		found := false
		for i, o := range secs[1:] {
			if t, _, _ := strings.Cut(o, "\n"); t == title {
				secs[i+1], found = sec, true
			}
		}
		if !found {
			secs = append(secs, sec)
		}
	}
	// Each section ends with a blank line, the last of the report's too
	// when it lands before another.
	for i := range secs {
		secs[i] = strings.TrimRight(secs[i], "\n") + "\n"
	}
	return strings.TrimRight(strings.Join(secs, "\n## "), "\n") + "\n"
}

// writeAttack writes the attack scenario's section.
func (r *report) writeAttack(p func(string, ...any)) {
	c := attackCfg
	p("## Under attack: unfinished messages\n\n")
	p("Written by `cd bench && go run ./cmd/results %s` on %s", strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	if r.prebuilt {
		p(", with servers built from another tree (`-server`, `-echo`)")
	}
	p("; only this section comes from that run. ")
	p("%d clients each send all but the last byte of a %d KiB binary message (one masked frame) and hold it for %v, longer (up to %v) until the server's RSS has not risen by 1%% (10 MB at least) for 3 s, ", c.Conns, c.Size>>10, c.Hold, c.MaxHold)
	p("while one control client echoes %d-byte messages in a closed loop; then the attackers send the rest and read their message back (%v allowed). ", c.Echo, c.FinishWithin)
	p("Every server with its defaults, each in its own process: the libraries through `cmd/server`'s `/echo`, and `examples/echo` (`go build ./examples/echo`) on wshub's `net/http` door and with `-listener` on its own. ")
	p("wshub's inbound budget (`MaxTotalBufferedBytes`, 64 MiB) stops reading the attackers it cannot hold; melody's default message limit is 512 bytes, so it closes them at once (1009); gorilla has no limit unless `SetReadLimit`, gws's `ReadMaxPayloadSize` is 16 MiB. ")
	p("RSS growth is the peak, sampled from `/proc/PID/status` every 200 ms, minus the RSS before the attackers connected; \"connecting\" is the part of it the %d connections cost before they sent anything; \"peak at\" is when in the hold the peak was first seen, and how long the hold lasted. ", c.Conns)
	p("\"Written\" is what the attackers got into their sockets during the hold, of %.0f MB; what a server does not read waits in kernel socket buffers (not in RSS) or is not sent. ", float64(c.Conns)*float64(c.Size)/1e6)
	p("`go run ./cmd/attack -url ws://HOST:PORT/PATH -pid PID -finish` runs the same attack against any echo server.\n\n")
	p("| server | RSS growth | per attacker | connecting | peak at | written | closed in the hold | control echoes | failed | p50 | p99 | messages back whole | in |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range r.attackRows {
		a := r.attacks[name]
		total, per := a.Growth()
		p("| %s | %.0f MB | %s | %.0f MB | %.1f of %.1f s | %.0f MB | %d | %d | %d | %v | %v | %d of %d | %.1f s |\n", name, total/1e6, kb(per),
			float64(a.RSSIdle-a.RSSBefore)/1e6, a.PeakAt.Seconds(), a.Held.Seconds(), float64(a.Written)/1e6, a.ClosedInHold,
			a.Echoes, a.EchoErrors, latency(a.P50), latency(a.P99), a.Finished, a.Attackers, a.FinishedIn.Seconds())
	}
	var notes []string
	for _, name := range r.attackRows {
		a := r.attacks[name]
		if a.HoldError != nil {
			notes = append(notes, fmt.Sprintf("- %s: %d attackers closed during the hold; the first: %v\n", name, a.ClosedInHold, a.HoldError))
		}
		if a.FinishError != nil {
			notes = append(notes, fmt.Sprintf("- %s: %d messages did not come back whole; the first: %v\n", name, a.FinishFailed, a.FinishError))
		}
	}
	if len(notes) > 0 {
		p("\n%s", strings.Join(notes, ""))
	}
	p("\n")
}

// latency rounds d for a table: to 10 µs below 10 ms, to 1 ms above.
func latency(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
