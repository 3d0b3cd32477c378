package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The tls scenario: what wss:// costs a server. Idle memory per TLS
// connection (the idle ramp, over tlsCounts or -counts), then in a second
// server process the server CPU of -conns TLS upgrades (handshake and
// WebSocket upgrade) and of echo round trips over them (measureEcho).
// Each server -runs times, interleaved; medians. The clients are this
// process (crypto/tls, TLS 1.3, its default key exchange).

// tlsCounts are the scenario's idle connection counts: this process holds
// the client side of each TLS connection too.
var tlsCounts = []int{2000, 4000, 6000, 8000}

// tlsLibs are the cmd/server -tls libraries the scenario measures, those
// of -libs among them; wshub is measured as its users run it,
// examples/echo -tls.
var tlsLibs = []string{"gorilla", "gws", "nbio"}

// tlsRun is one run of one target.
type tlsRun struct {
	points                 []idlePoint
	upgradeCPU             time.Duration // per upgrade
	upgradeP50, upgradeP95 time.Duration // dial to upgraded, TLS handshake included
	echo                   echoRun
}

// tlsTargets are, in order: examples/echo -tls on both doors, -before-echo
// on both, cmd/server -tls with each library.
func (r *report) tlsTargets() ([]target, error) {
	var ts []target
	if r.hasLib("wshub") {
		echo, err := r.echoServer()
		if err != nil {
			return nil, err
		}
		ts = append(ts,
			target{"wshub, net/http (examples/echo -tls)", harness.Process{Bin: echo, TLS: true, StatsLines: true}, "/ws"},
			target{"wshub, own listener (examples/echo -tls -listener)", harness.Process{Bin: echo, Args: []string{"-listener"}, TLS: true, StatsLines: true}, "/ws"})
	}
	if r.beforeEcho != "" {
		ts = append(ts,
			target{"before (" + r.beforeName + "), net/http", harness.Process{Bin: r.beforeEcho, TLS: true, StatsLines: true}, "/ws"},
			target{"before (" + r.beforeName + "), own listener", harness.Process{Bin: r.beforeEcho, Args: []string{"-listener"}, TLS: true, StatsLines: true}, "/ws"})
	}
	for _, lib := range r.libsOf(tlsLibs) {
		server, err := r.server()
		if err != nil {
			return nil, err
		}
		ts = append(ts, target{lib + " (cmd/server -tls)", harness.Process{Bin: server, Args: []string{"-lib", lib}, TLS: true}, "/echo"})
	}
	return ts, nil
}

func (r *report) tls() error {
	ts, err := r.tlsTargets()
	if err != nil {
		return err
	}
	r.tlsRows = ts
	r.tlsRuns, err = harness.Interleave(r.runs, ts, func(run int, t target) (tlsRun, error) {
		res, err := r.measureTLS(t)
		if err != nil {
			return res, fmt.Errorf("%s: %v", t.name, err)
		}
		log.Printf("tls run %d %-52s rss %6.0f B/conn  heap %6.0f B/conn  goroutines %.2f/conn  upgrade %4.0f µs  echo %5.2f µs/rt (%.0f rt/s)",
			run+1, t.name, slope(res.points, rss), slope(res.points, heap), slope(res.points, goroutines),
			micros(res.upgradeCPU), micros(res.echo.cpu), res.echo.Rate())
		return res, nil
	})
	return err
}

// measureTLS measures t's idle memory in one server process, then its CPU
// in another, without -stats.
func (r *report) measureTLS(t target) (tlsRun, error) {
	var res tlsRun
	s, err := harness.Start(t.p)
	if err != nil {
		return res, err
	}
	res.points, err = r.ramp(s, s.URL(t.path), r.countsOr(tlsCounts), dialTLS)
	s.Stop()
	if err != nil {
		return res, fmt.Errorf("idle: %v", err)
	}

	p := t.p
	p.StatsLines = false
	if s, err = harness.Start(p); err != nil {
		return res, err
	}
	defer s.Stop()
	time.Sleep(200 * time.Millisecond) // the handshake that Start's port probe cut short
	before, err := s.CPU()
	if err != nil {
		return res, err
	}
	conns, lat, err := load.DialTLS(context.Background(), s.URL(t.path), r.conns, nil)
	if err != nil {
		return res, err
	}
	defer load.CloseAll(conns)
	time.Sleep(300 * time.Millisecond) // handshakes end on the server after the client has its answer
	after, err := s.CPU()
	if err != nil {
		return res, err
	}
	res.upgradeCPU = after.Sub(before).Total() / time.Duration(r.conns)
	slices.Sort(lat)
	res.upgradeP50, res.upgradeP95 = lat[len(lat)/2], lat[len(lat)*95/100]
	if res.echo, err = measureEcho(s, conns, r.size, r.warm, r.measure); err != nil {
		return res, err
	}
	if res.echo.Messages == 0 {
		return res, fmt.Errorf("echo: %d errors, no round trip", res.echo.Errors)
	}
	return res, nil
}

func (r *report) writeTLS(p printer) {
	p("Every server with a self-signed ECDSA P-256 certificate made at start, in its own process: wshub's `examples/echo -tls` on both doors (`http.Server.ServeTLS`, and with `-listener` `Hub.ServeTLS`), the other libraries through `cmd/server -tls` (net/http's `ServeTLS`; nbio its own TLS listener on its event loops). ")
	p("The clients are `load.DialTLS` (crypto/tls, TLS 1.3, its default key exchange, ALPN http/1.1) in the measuring process. ")
	p("Idle: %v connections held open and silent; RSS from `/proc/PID/statm` after the server collected and returned freed memory (`examples/echo -stats`, `cmd/server`'s `/stats`); per connection is the least-squares slope over the counts; the heap is `HeapInuse` for `examples/echo`, `HeapAlloc` for `cmd/server`. ", r.countsOr(tlsCounts))
	p("CPU: the server's utime+stime over the upgrade of %d connections (TLS handshake and WebSocket upgrade), then over %v of echoes of %d bytes in a closed loop on each, in a second server process. %d run(s), interleaved; medians.\n\n", r.conns, r.measure, r.size, r.runs)
	p("| server | idle RSS per connection | Go heap per connection | goroutines per connection | server CPU per upgrade | server CPU per echo round trip | round trips/s | p50 / p99 | upgrade p50 / p95 | echo loops failed |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, t := range r.tlsRows {
		rs := r.tlsRuns[i]
		per := func(f func(idlePoint) float64) float64 {
			return harness.MedianOf(rs, func(x tlsRun) float64 { return slope(x.points, f) })
		}
		d := func(f func(tlsRun) time.Duration) time.Duration { return harness.MedianOf(rs, f) }
		failed := 0
		for _, x := range rs {
			failed += x.echo.Errors
		}
		p("| %s | %s | %s | %.2f | %.0f µs | %.2f µs | %.0f | %v / %v | %v / %v | %d of %d |\n", t.name,
			kb(per(rss)), kb(per(heap)), per(goroutines),
			micros(d(func(x tlsRun) time.Duration { return x.upgradeCPU })),
			micros(d(func(x tlsRun) time.Duration { return x.echo.cpu })),
			harness.MedianOf(rs, func(x tlsRun) float64 { return x.echo.Rate() }),
			latency(d(func(x tlsRun) time.Duration { return x.echo.P50 })), latency(d(func(x tlsRun) time.Duration { return x.echo.P99 })),
			latency(d(func(x tlsRun) time.Duration { return x.upgradeP50 })), latency(d(func(x tlsRun) time.Duration { return x.upgradeP95 })),
			failed, len(rs)*r.conns)
	}
	p("\nEach run's samples (connections: RSS MB, heap MB, goroutines):\n\n```\n")
	for i, t := range r.tlsRows {
		for run, x := range r.tlsRuns[i] {
			p("%s, run %d:", t.name, run+1)
			for _, pt := range x.points {
				p("  %d: %.1f, %.1f, %d", pt.conns, float64(pt.RSS)/1e6, float64(pt.Heap)/1e6, pt.Goroutines)
			}
			p("\n")
		}
	}
	p("```\n")
}
