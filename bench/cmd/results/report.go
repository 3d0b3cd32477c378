package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wshub/wshub/bench/internal/gobuild"
	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/internal/markdown"
	"github.com/wshub/wshub/bench/load"
	"github.com/wshub/wshub/bench/plot"
)

// report holds the flags, then every scenario's figures, then writes them.
type report struct {
	root    string   // the bench module's directory, where the binaries are built from
	out     string   // -out
	libs    []string // -libs
	runs    int      // -runs
	counts  []int    // -counts, or nil for each scenario's own
	tmp     string   // where binaries are built
	settle  time.Duration
	partial bool // not every scenario ran: keep the others' sections
	elapsed time.Duration
	ran     map[string]ran

	serverBin, echoBin, fiberBin string // built on first use, or given (-server, -echo)
	prebuilt                     bool   // -server or -echo: binaries built elsewhere
	before                       string // -before: a cmd/server built on an older core
	beforeEcho, beforeName       string // -before-echo: an examples/echo built on an older core

	// The echo measurements' flags.
	conns, size        int
	warm, measure, sys time.Duration
	count              string // -count: perf, strace or none

	idlePoints  map[string][]idlePoint
	echoes      map[string]echoRun
	bcasts      map[string][]bcastResult
	connects    map[string]connectResult
	cluster1    []bcastResult
	cluster2    []bcastResult
	attacks     map[string]load.AttackResult
	attackRows  []string // the attack's servers, in the order measured
	deflateRows []deflateRow
	deflateIdle []deflateIdleRow
	fanout      map[fanoutKey][]bcastResult // the broadcast scenario's runs
	fanoutRows  []fanoutTarget
	frags       map[fragKey][]fragResult // the fragments scenario's runs
	fragRows    []target
	fragTimeout time.Duration // -frag-timeout
	echoCPURows []target
	echoCPURuns [][]echoCPURun // by row, by run
	tlsRows     []target
	tlsRuns     [][]tlsRun // by row, by run
	fiberRows   []fiberRow

	admissionRows []target
	admissionRuns [][]admissionRun // by row, by run
	feedRows      []feedTarget
	feedRuns      [][]feedRun // by row, by run
	historyRows   []historyTarget
	historyRuns   [][]historyRun // by row, by run
	presRuns      []presenceRun
}

// target is one server a scenario measures: its row's name, how to start
// it, and the route of its WebSockets.
type target struct {
	name string
	p    harness.Process
	path string
}

// measureEach starts each target's server, measures it and stops it,
// runs times in turn (harness.Interleave), and returns each target's
// results, by run.
func measureEach[R any](runs int, ts []target, measure func(run int, t target, s *harness.Server) (R, error)) ([][]R, error) {
	return harness.Interleave(runs, ts, func(run int, t target) (R, error) {
		s, err := harness.Start(t.p)
		if err != nil {
			var zero R
			return zero, err
		}
		defer s.Stop()
		res, err := measure(run, t, s)
		if err != nil {
			err = fmt.Errorf("%s: %w", t.name, err)
		}
		return res, err
	})
}

// libTargets are cmd/server with each of libs, at path.
func libTargets(bin string, libs []string, path string) []target {
	var ts []target
	for _, lib := range libs {
		ts = append(ts, target{lib, harness.Process{Bin: bin, Args: []string{"-lib", lib}}, path})
	}
	return ts
}

// ran is when a scenario ran: its section says so.
type ran struct {
	took         time.Duration
	load0, load1 string // the load average at its start and end
}

// printer writes formatted text into a section.
type printer func(format string, args ...any)

// server, echoServer and fiberServer are the binaries the scenarios run,
// built on first use.
func (r *report) server() (string, error) { return r.binary(&r.serverBin, ".", "./cmd/server") }

// echoServer is examples/echo, built in the examples' module so that the
// build works with or without the repository's go.work.
func (r *report) echoServer() (string, error) {
	return r.binary(&r.echoBin, "../examples", "./echo")
}

func (r *report) fiberServer() (string, error) { return r.binary(&r.fiberBin, "fiber", ".") }

// binary returns *bin, built first from pkg of the module in modDir
// (relative to the bench module) if empty.
func (r *report) binary(bin *string, modDir, pkg string) (string, error) {
	if *bin != "" {
		return *bin, nil
	}
	b, err := gobuild.Build(r.tmp, filepath.Join(r.root, modDir), pkg)
	if err != nil {
		return "", fmt.Errorf("build %s: %v", pkg, err)
	}
	*bin = b
	return b, nil
}

// countsOr is -counts, or the scenario's own counts if it is not set.
func (r *report) countsOr(counts []int) []int {
	if r.counts != nil {
		return r.counts
	}
	return counts
}

// hasLib reports whether -libs holds lib.
func (r *report) hasLib(lib string) bool { return slices.Contains(r.libs, lib) }

// libsOf is -libs, in order, among those a scenario measures.
func (r *report) libsOf(measured []string) []string {
	var libs []string
	for _, lib := range r.libs {
		if slices.Contains(measured, lib) {
			libs = append(libs, lib)
		}
	}
	return libs
}

// write writes RESULTS.md: the whole file after a run of every scenario,
// otherwise only the sections of the scenarios that ran, in place; then
// the plots.
func (r *report) write() error {
	path := filepath.Join(r.out, "RESULTS.md")
	var all strings.Builder
	if !r.partial {
		r.writePreamble(func(format string, args ...any) { fmt.Fprintf(&all, format, args...) })
	}
	for _, s := range scenarios {
		run, ok := r.ran[s.name]
		if !ok {
			continue
		}
		section := r.section(s, run)
		if !r.partial {
			all.WriteString(section)
			continue
		}
		if err := markdown.ReplaceSection(path, "## "+s.title, section); err != nil {
			return err
		}
	}
	if !r.partial {
		if err := os.WriteFile(path, []byte(strings.TrimRight(all.String(), "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return r.plots()
}

// section is a scenario's section: its heading, the command that
// regenerates it, the command and machine that wrote it, its text.
func (r *report) section(s scenario, run ran) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("## %s\n\n", s.title)
	p("Regenerate: `%s`\n\n", regenerate(s))
	p("Written by `cd bench && go run ./cmd/results %s` on %s in %v, on %s; load average (1 minute) %s at the start, %s at the end.\n\n",
		strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), run.took.Round(time.Second), harness.Machine(), run.load0, run.load1)
	s.write(r, p)
	return strings.TrimRight(w.String(), "\n") + "\n\n"
}

// regenerate is the command that regenerates s's section.
func regenerate(s scenario) string {
	return strings.TrimSpace("cd bench && go run ./cmd/results -scenarios " + s.name + " " + s.args)
}

func (r *report) writePreamble(p printer) {
	p("# wshub against its peers\n\n")
	p("Regenerate: `cd bench && go run ./cmd/results` (every section; each also says how to regenerate it alone).\n\n")
	p("Written by `cd bench && go run ./cmd/results %s` on %s in %v.\n\n", strings.Join(os.Args[1:], " "),
		time.Now().UTC().Format("2006-01-02"), r.elapsed.Round(time.Second))
	p("Machine: %s.\n\n", harness.Machine())
	p("Each library serves the same routes (`cmd/server`), each in its own process, loaded by the `results` process; ")
	p("ratios are to wshub in the same run. On a shared two-core machine absolute rates move by ±10%% between runs; ")
	p("server CPU per message is the steadier figure. wshub is measured through its `net/http` door ")
	p("(`ServeHTTP`), and in the idle and broadcast scenarios on its own listener (`Serve`, \"wshub -listener\") too.\n\n")
}

func (r *report) plots() error {
	if r.idlePoints != nil {
		xs := make([]float64, len(r.countsOr(idleCounts)))
		for i, n := range r.countsOr(idleCounts) {
			xs[i] = float64(n)
		}
		var series []plot.Series
		for _, lib := range r.libs {
			pts := r.idlePoints[lib]
			s := plot.Series{Name: lib}
			for _, pt := range pts[1:] {
				s.Values = append(s.Values, float64(max(pt.RSS-pts[0].RSS, 0))/float64(pt.conns))
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

// dialer opens n connections to url.
type dialer func(url string, n int) ([]*load.Conn, error)

func dial(url string, n int) ([]*load.Conn, error) {
	cs, _, err := load.Dial(context.Background(), url, n)
	return cs, err
}

// dialDeflate dials with load.DeflateOffer and fails unless every
// connection negotiated it.
func dialDeflate(url string, n int) ([]*load.Conn, error) {
	cs, _, err := load.DialDeflate(context.Background(), url, n)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if !c.Deflate {
			load.CloseAll(cs)
			return nil, fmt.Errorf("%s: permessage-deflate offered, not negotiated", url)
		}
	}
	return cs, nil
}

func dialTLS(url string, n int) ([]*load.Conn, error) {
	cs, _, err := load.DialTLS(context.Background(), url, n, nil)
	return cs, err
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

// latency rounds d for a table: to 10 µs below 10 ms, to 1 ms above.
func latency(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// thousands formats n with a comma between thousands, as the text does.
func thousands(n int) string {
	if n < 1000 {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%s,%03d", thousands(n/1000), n%1000)
}
