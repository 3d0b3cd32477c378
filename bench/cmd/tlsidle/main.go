// Command tlsidle measures what wss:// costs a server: the memory of idle
// TLS connections, the server CPU of a TLS upgrade (handshake and
// WebSocket upgrade), and the server CPU of an echo round trip over TLS,
// for wshub's examples/echo -tls on both doors and for cmd/server -tls with
// the other libraries. Each server runs in its own process; the clients are
// this process (crypto/tls, ECDSA P-256 certificate, TLS 1.3, crypto/tls's
// default key exchange).
//
//	cd bench && go run ./cmd/tlsidle
//	go run ./cmd/tlsidle -runs 3 -results RESULTS.md
//	go run ./cmd/tlsidle -before /tmp/echo-e75886b -before-name e75886b
//
// Idle memory: connections held open and silent, up to each of -counts in
// turn; the server's RSS (/proc/PID/statm) after it has collected and
// returned freed memory to the system (examples/echo -stats does so before
// each line it prints; cmd/server's /stats does so when asked), and its Go
// heap and goroutines; per connection is the least-squares slope over the
// counts. CPU: the server's utime+stime (/proc/PID/stat) over the upgrade
// of -conns connections, then over a -measure window of echoes (-size
// bytes, a closed loop on every connection), in a second process without
// -stats. -runs interleaved runs, medians. -results writes (or replaces)
// this command's section of a Markdown file.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wshub/wshub/bench/internal/gobuild"
	"github.com/wshub/wshub/bench/internal/markdown"
	"github.com/wshub/wshub/bench/load"
)

func main() {
	counts := flag.String("counts", "2000,4000,6000,8000", "idle connection counts, held in turn")
	conns := flag.Int("conns", 1000, "connections upgraded, then echoing, in the CPU measurement")
	size := flag.Int("size", 256, "echo message size in bytes")
	warm := flag.Duration("warm", 2*time.Second, "echo load before the measured window")
	measure := flag.Duration("measure", 5*time.Second, "the measured echo window")
	runs := flag.Int("runs", 1, "interleaved runs of every server")
	libs := flag.String("libs", "gorilla,gws,nbio", "cmd/server -tls libraries to measure beside examples/echo -tls")
	before := flag.String("before", "", "an examples/echo binary built from another core, measured on both doors")
	beforeName := flag.String("before-name", "", "what to call -before in the table (default: its file name)")
	only := flag.String("only", "", "measure only the servers whose names contain one of these, comma-separated")
	results := flag.String("results", "", "a Markdown file in which to write (or replace) this command's section")
	flag.Parse()

	var ns []int
	for _, f := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			log.Fatalf("-counts: %q", f)
		}
		ns = append(ns, n)
	}
	dir, err := os.MkdirTemp("", "tlsidle")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	echoBin := gobuild.MustBuild(dir, "../examples", "./echo")
	serverBin := gobuild.MustBuild(dir, ".", "./cmd/server")

	targets := []target{
		{name: "wshub, net/http (examples/echo -tls)", bin: echoBin, args: []string{"-tls"}, echo: true},
		{name: "wshub, own listener (examples/echo -tls -listener)", bin: echoBin, args: []string{"-tls", "-listener"}, echo: true},
	}
	if *before != "" {
		n := *beforeName
		if n == "" {
			n = filepath.Base(*before)
		}
		targets = append(targets,
			target{name: "before (" + n + "), net/http", bin: *before, args: []string{"-tls"}, echo: true},
			target{name: "before (" + n + "), own listener", bin: *before, args: []string{"-tls", "-listener"}, echo: true})
	}
	for _, lib := range strings.Split(*libs, ",") {
		if lib = strings.TrimSpace(lib); lib != "" {
			targets = append(targets, target{name: lib + " (cmd/server -tls)", bin: serverBin, args: []string{"-tls", "-lib", lib}})
		}
	}
	if *only != "" {
		targets = slices.DeleteFunc(targets, func(t target) bool {
			for _, o := range strings.Split(*only, ",") {
				if strings.Contains(t.name, o) {
					return false
				}
			}
			return true
		})
	}

	m := measurer{counts: ns, conns: *conns, size: *size, warm: *warm, measure: *measure}
	all := make(map[string][]run)
	start := time.Now()
	for i := range *runs {
		for _, t := range targets {
			r, err := m.run(t)
			if err != nil {
				log.Fatalf("%s: %v", t.name, err)
			}
			log.Printf("run %d %-52s rss %6.0f B/conn  heap %6.0f B/conn  goroutines %.2f/conn  upgrade %4.0f µs  echo %5.2f µs/rt (%.0f rt/s)",
				i+1, t.name, r.rss, r.heap, r.goroutines, micros(r.upgradeCPU), micros(r.echoCPU), r.rate)
			all[t.name] = append(all[t.name], r)
		}
	}
	section := m.section(targets, all, *runs, time.Since(start))
	fmt.Print(section)
	if *results != "" {
		if err := markdown.ReplaceSection(*results, sectionTitle, section); err != nil {
			log.Fatal(err)
		}
	}
}

// target is one server: examples/echo (echo set: the WebSocket at /ws,
// memory from its -stats lines) or cmd/server (/echo, memory from its
// /stats route over https).
type target struct {
	name string
	bin  string
	args []string
	echo bool
}

// point is the server's memory at one count of idle connections.
type point struct {
	conns      int
	rss, heap  float64
	goroutines int
}

// run is what one run measured of one target.
type run struct {
	points          []point
	rss, heap       float64 // bytes per idle connection, slopes over the counts
	goroutines      float64 // per idle connection, between the first and last count
	upgradeCPU      time.Duration
	echoCPU         time.Duration // per round trip
	rate            float64       // round trips per second
	p50, p99        time.Duration
	upgradeP50, p95 time.Duration // dial to upgraded, TLS handshake included
	echoErrors      int           // connections whose echo loop failed (a wrong echo, a closed connection)
}

type measurer struct {
	counts        []int
	conns, size   int
	warm, measure time.Duration
}

// run measures t's idle memory in one server process, then its CPU in
// another.
func (m *measurer) run(t target) (run, error) {
	var r run
	var err error
	if r.points, err = m.idle(t); err != nil {
		return r, fmt.Errorf("idle: %v", err)
	}
	r.rss = slope(r.points[1:], func(p point) float64 { return p.rss })
	r.heap = slope(r.points[1:], func(p point) float64 { return p.heap })
	first, last := r.points[1], r.points[len(r.points)-1]
	if last.conns > first.conns {
		r.goroutines = float64(last.goroutines-first.goroutines) / float64(last.conns-first.conns)
	}
	if err := m.cpu(t, &r); err != nil {
		return r, fmt.Errorf("cpu: %v", err)
	}
	return r, nil
}

// server is a running target.
type server struct {
	t       target
	addr    string
	cmd     *exec.Cmd
	samples chan point // examples/echo -stats lines, with the RSS read as each came
}

func start(t target, stats bool) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append(slices.Clone(t.args), "-addr", addr)
	if stats && t.echo {
		args = append(args, "-stats", "500ms")
	}
	s := &server{t: t, addr: addr, cmd: exec.Command(t.bin, args...)}
	s.cmd.Stderr = io.Discard // net/http logs each handshake the port probe cut short
	var out io.Reader
	if stats && t.echo {
		if out, err = s.cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	if out != nil {
		s.samples = make(chan point, 64)
		go s.readStats(out)
	}
	if err := load.WaitPort(addr, 10*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func (s *server) url() string {
	if s.t.echo {
		return "wss://" + s.addr + "/ws"
	}
	return "wss://" + s.addr + "/echo"
}

// readStats parses examples/echo's -stats lines ("conns=N ...
// heap_inuse=H sys=S goroutines=G"), reading the process's RSS as each
// arrives: the echo has just returned freed memory to the system.
func (s *server) readStats(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var p point
		for _, f := range strings.Fields(sc.Text()) {
			k, v, _ := strings.Cut(f, "=")
			n, _ := strconv.Atoi(v)
			switch k {
			case "conns":
				p.conns = n
			case "heap_inuse":
				p.heap = float64(n)
			case "goroutines":
				p.goroutines = n
			}
		}
		p.rss = float64(load.ProcessRSS(s.cmd.Process.Pid))
		select {
		case s.samples <- p:
		default: // nobody is waiting: drop the oldest
			<-s.samples
			s.samples <- p
		}
	}
	close(s.samples)
}

var insecure = &http.Client{Transport: &http.Transport{TLSClientConfig: load.InsecureTLS()}, Timeout: 30 * time.Second}

// memory samples the server holding n connections.
func (s *server) memory(n int) (point, error) {
	if s.t.echo {
		// A line printed from now on, at n connections.
		for len(s.samples) > 0 {
			<-s.samples
		}
		deadline := time.After(15 * time.Second)
		for {
			select {
			case p, ok := <-s.samples:
				if !ok {
					return point{}, fmt.Errorf("the server exited")
				}
				if p.conns == n {
					return p, nil
				}
			case <-deadline:
				return point{}, fmt.Errorf("no -stats line at %d connections", n)
			}
		}
	}
	resp, err := insecure.Get("https://" + s.addr + "/stats")
	if err != nil {
		return point{}, err
	}
	defer resp.Body.Close()
	var st struct{ Heap, Goroutines float64 }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return point{}, err
	}
	return point{conns: n, rss: float64(load.ProcessRSS(s.cmd.Process.Pid)), heap: st.Heap, goroutines: int(st.Goroutines)}, nil
}

// idle holds connections up to each count in turn and samples the
// server's memory there, and once before the first.
func (m *measurer) idle(t target) ([]point, error) {
	s, err := start(t, true)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	var held []*load.Conn
	defer func() { load.CloseAll(held) }()
	p, err := s.memory(0)
	if err != nil {
		return nil, err
	}
	points := []point{p}
	for _, n := range m.counts {
		cs, _, err := load.DialTLS(context.Background(), s.url(), n-len(held), nil)
		if err != nil {
			return nil, fmt.Errorf("at %d connections: %v", n, err)
		}
		held = append(held, cs...)
		time.Sleep(time.Second) // handshake goroutines and buffers go
		p, err := s.memory(n)
		if err != nil {
			return nil, err
		}
		points = append(points, p)
	}
	return points, nil
}

// cpu measures the server CPU of m.conns upgrades, then of echoes over
// them, in a server without -stats.
func (m *measurer) cpu(t target, r *run) error {
	s, err := start(t, false)
	if err != nil {
		return err
	}
	defer s.stop()
	pid := s.cmd.Process.Pid
	time.Sleep(200 * time.Millisecond) // the port probe's handshake error
	before, err := load.ProcessCPU(pid)
	if err != nil {
		return err
	}
	conns, lat, err := load.DialTLS(context.Background(), s.url(), m.conns, nil)
	if err != nil {
		return err
	}
	defer load.CloseAll(conns)
	time.Sleep(300 * time.Millisecond) // handshakes end on the server after the client has its answer
	after, err := load.ProcessCPU(pid)
	if err != nil {
		return err
	}
	r.upgradeCPU = (after - before) / time.Duration(m.conns)
	slices.Sort(lat)
	r.upgradeP50, r.p95 = lat[len(lat)/2], lat[len(lat)*95/100]

	var c0, c1 time.Duration
	res := load.EchoWindow(conns, m.size, m.warm, m.measure, func(start bool) {
		c, _ := load.ProcessCPU(pid)
		if start {
			c0 = c
		} else {
			c1 = c
		}
	})
	if res.Messages == 0 {
		return fmt.Errorf("echo: %d errors, no round trip", res.Errors)
	}
	r.echoErrors = res.Errors
	r.echoCPU = (c1 - c0) / time.Duration(res.Messages)
	r.rate = res.Rate()
	r.p50, r.p99 = res.P50, res.P99
	return nil
}

// slope is the least-squares slope of f over points, in bytes per
// connection.
func slope(points []point, f func(point) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range points {
		x, y := float64(p.conns), f(p)
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if n < 2 {
		return 0
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func median[T any](rs []run, f func(run) T, less func(a, b T) int) T {
	vs := make([]T, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.SortFunc(vs, less)
	return vs[len(vs)/2]
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpDur(a, b time.Duration) int { return cmpFloat(float64(a), float64(b)) }

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

func kb(b float64) string {
	if b >= 1000 || b <= -1000 {
		return fmt.Sprintf("%.1f KB", b/1000)
	}
	return fmt.Sprintf("%.0f B", b)
}

const sectionTitle = "## wss:// (TLS): idle connections, upgrades, echo"

// section writes the Markdown section of the results.
func (m *measurer) section(targets []target, all map[string][]run, runs int, took time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("%s\n\n", sectionTitle)
	p("Written by `cd bench && go run ./cmd/tlsidle %s` on %s in %v; only this section comes from that run.\n\n",
		strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	p("Every server with a self-signed ECDSA P-256 certificate made at start, in its own process: wshub's `examples/echo -tls` on both doors (`http.Server.ServeTLS`, and with `-listener` `Hub.ServeTLS`), the other libraries through `cmd/server -tls` (net/http's `ServeTLS`; nbio its own TLS listener on its event loops). ")
	p("The clients are `load.DialTLS` (crypto/tls, TLS 1.3, its default key exchange, ALPN http/1.1) in the measuring process. ")
	p("Idle: %v connections held open and silent; RSS from `/proc/PID/statm` after the server collected and returned freed memory (`examples/echo -stats`, `cmd/server`'s `/stats`); per connection is the least-squares slope over the counts; the heap is `HeapInuse` for `examples/echo`, `HeapAlloc` for `cmd/server`. ", m.counts)
	p("CPU: the server's utime+stime over the upgrade of %d connections (TLS handshake and WebSocket upgrade), then over %v of echoes of %d bytes in a closed loop on each, in a second server process. %d run(s), interleaved; medians. ", m.conns, m.measure, m.size, runs)
	p("%d CPUs (%s), shared with the clients.\n\n", runtime.NumCPU(), runtime.GOARCH)
	p("| server | idle RSS per connection | Go heap per connection | goroutines per connection | server CPU per upgrade | server CPU per echo round trip | round trips/s | p50 / p99 | upgrade p50 / p95 | echo loops failed |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range targets {
		rs := all[t.name]
		if len(rs) == 0 {
			continue
		}
		f := func(g func(run) float64) float64 { return median(rs, g, cmpFloat) }
		d := func(g func(run) time.Duration) time.Duration { return median(rs, g, cmpDur) }
		failed := 0
		for _, r := range rs {
			failed += r.echoErrors
		}
		p("| %s | %s | %s | %.2f | %.0f µs | %.2f µs | %.0f | %v / %v | %v / %v | %d of %d |\n", t.name,
			kb(f(func(r run) float64 { return r.rss })), kb(f(func(r run) float64 { return r.heap })),
			f(func(r run) float64 { return r.goroutines }),
			micros(d(func(r run) time.Duration { return r.upgradeCPU })),
			micros(d(func(r run) time.Duration { return r.echoCPU })),
			f(func(r run) float64 { return r.rate }),
			round(d(func(r run) time.Duration { return r.p50 })), round(d(func(r run) time.Duration { return r.p99 })),
			round(d(func(r run) time.Duration { return r.upgradeP50 })), round(d(func(r run) time.Duration { return r.p95 })),
			failed, len(rs)*m.conns)
	}
	p("\nEach run's samples (connections: RSS MB, heap MB, goroutines):\n\n```\n")
	for _, t := range targets {
		for i, r := range all[t.name] {
			p("%s, run %d:", t.name, i+1)
			for _, pt := range r.points {
				p("  %d: %.1f, %.1f, %d", pt.conns, pt.rss/1e6, pt.heap/1e6, pt.goroutines)
			}
			p("\n")
		}
	}
	p("```\n")
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 100*time.Microsecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
