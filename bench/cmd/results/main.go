// Command results measures wshub against gorilla/websocket, melody, gws and
// nbio, and against the floor (cmd/server -lib floor), on this machine,
// and writes bench/RESULTS.md and the plots beside it:
//
//	cd bench && go run ./cmd/results
//	go run ./cmd/results -scenarios echocpu,tls -runs 3
//
// Every server runs in its own process (cmd/server for the libraries and
// the floor, examples/echo for wshub as its users run it, bench/fiber),
// loaded by this process. Each scenario (the table scenarios below; each
// file says what its scenario measures) writes one section of RESULTS.md,
// which starts with the command that regenerates it. -scenarios and -libs
// choose a subset: a run of some scenarios replaces their sections and
// keeps the others. -runs measures the servers of broadcast, echocpu, tls
// and fragments that many times, interleaved, and reports medians. -out is
// where to write; -server and -echo measure binaries built elsewhere (from
// an older core, say) in place of this tree's, and -before and
// -before-echo add such binaries beside them.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
)

// scenario is one measurement and the section of RESULTS.md it writes.
type scenario struct {
	name  string // in -scenarios
	title string // the section's heading, after "## "
	// args are the flags, besides -scenarios name, of the command that
	// regenerates the section as it is meant to be read.
	args  string
	run   func(*report) error
	write func(*report, printer) // the section's text after its header
}

// scenarios are every scenario, in the order of RESULTS.md.
var scenarios = []scenario{
	{"idle", "Idle connections", "", (*report).idle, (*report).writeIdle},
	{"echo", "Echo", "", (*report).echo, (*report).writeEcho},
	{"broadcast", "Broadcast", "-runs 5", (*report).broadcast, (*report).writeFanout},
	{"connect", "Connection rate", "", (*report).connect, (*report).writeConnect},
	{"cluster", "Across two hubs through NATS", "", (*report).cluster, (*report).writeCluster},
	{"attack", "Under attack: unfinished messages", "", (*report).attack, (*report).writeAttack},
	{"deflate", "Broadcast with permessage-deflate", "", (*report).deflate, (*report).writeDeflate},
	{"echocpu", "Echo: server CPU per round trip, against the floor", "-runs 3", (*report).echoCPU, (*report).writeEchoCPU},
	{"tls", "wss:// (TLS): idle connections, upgrades, echo", "-runs 3", (*report).tls, (*report).writeTLS},
	{"fragments", "Fragmented messages: server CPU to reassemble", "-runs 3", (*report).fragments, (*report).writeFragments},
	{"fiber", "Idle memory through Fiber", "", (*report).fiber, (*report).writeFiber},
	{"admission", "Per-address admission: server CPU per upgrade", "-runs 5", (*report).admission, (*report).writeAdmission},
	{"conflate", "A feed with slow members: conflation against drop-oldest", "-runs 3", (*report).conflate, (*report).writeConflate},
	{"history", "Channels that remember: fan-out with history, and recovery", "-runs 3", (*report).history, (*report).writeHistory},
	{"presence", "Presence across two hubs through NATS", "", (*report).presence, (*report).writePresence},
}

var allLibs = []string{"wshub", "gorilla", "melody", "gws", "nbio"}

func main() {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	want := flag.String("scenarios", strings.Join(names, ","), "scenarios to run, comma-separated; the others' sections of RESULTS.md are kept")
	libs := flag.String("libs", strings.Join(allLibs, ","), "libraries to measure, comma-separated")
	out := flag.String("out", ".", "directory for RESULTS.md and the plots")
	serverBin := flag.String("server", "", "a cmd/server binary to measure, built from another core (default: build ./cmd/server)")
	echoBin := flag.String("echo", "", "an examples/echo binary to measure, built from another core (default: build ../examples/echo)")
	before := flag.String("before", "", "broadcast, fragments: also measure this cmd/server binary, built on an older core, as \"wshub before\"")
	beforeEcho := flag.String("before-echo", "", "echocpu, tls: also measure this examples/echo binary, built on an older core, on both doors")
	beforeName := flag.String("before-name", "", "echocpu, tls: what to call -before-echo in the tables (default: its file name)")
	runs := flag.Int("runs", 1, "broadcast, echocpu, tls, fragments, history, admission, conflate: interleaved runs of every server; the tables show medians")
	counts := flag.String("counts", "", "idle, deflate, tls, fiber: the idle connection counts, held in turn (default 2000,5000,10000,19000; tls 2000,4000,6000,8000)")
	conns := flag.Int("conns", 1000, "echo, echocpu, tls: connections echoing (tls: upgraded, then echoing)")
	size := flag.Int("size", 256, "echo, echocpu, tls: echo message size in bytes")
	warm := flag.Duration("warm", 2*time.Second, "echo, echocpu, tls: echo load before the measured window")
	measure := flag.Duration("measure", 5*time.Second, "echocpu, tls: the measured echo window (echo's is 10 s)")
	sys := flag.Duration("sys", 3*time.Second, "echocpu: the window in which system calls are counted, after the measured one")
	count := flag.String("count", "perf", "echocpu: how system calls are counted: perf, strace or none")
	fragTimeout := flag.Duration("frag-timeout", time.Minute, "fragments: the longest a message may take to come back; a case that takes longer is reported as more than the CPU it used, and not run again")
	flag.Parse()

	r := &report{
		root: ".", out: *out, libs: strings.Split(*libs, ","), runs: max(*runs, 1),
		serverBin: *serverBin, echoBin: *echoBin, prebuilt: *serverBin != "" || *echoBin != "",
		before: *before, beforeEcho: *beforeEcho, beforeName: *beforeName,
		conns: *conns, size: *size, warm: *warm, measure: *measure, sys: *sys, count: *count,
		fragTimeout: *fragTimeout, settle: time.Second, ran: make(map[string]ran),
	}
	if r.beforeName == "" && r.beforeEcho != "" {
		r.beforeName = filepath.Base(r.beforeEcho)
	}
	for f := range strings.SplitSeq(*counts, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			log.Fatalf("-counts: %q", f)
		}
		r.counts = append(r.counts, n)
	}
	chosen := strings.Split(*want, ",")
	for _, name := range chosen {
		if !slices.ContainsFunc(scenarios, func(s scenario) bool { return s.name == name }) {
			log.Fatalf("-scenarios: no scenario %q (%s)", name, strings.Join(names, ", "))
		}
	}
	// echocpu's counter is checked now rather than after the scenarios
	// before it, which can take half an hour.
	switch {
	case !slices.Contains(chosen, "echocpu") || r.count == "none":
	case r.count != "perf" && r.count != "strace":
		log.Fatalf("-count %q: perf, strace or none", r.count)
	default:
		if _, err := exec.LookPath(r.count); err != nil {
			log.Fatalf("-count %s: %v (or -count none)", r.count, err)
		}
	}
	var err error
	if r.tmp, err = os.MkdirTemp("", "wshub-bench"); err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(r.tmp)
	start := time.Now()
	for _, s := range scenarios {
		if !slices.Contains(chosen, s.name) {
			r.partial = true
			continue
		}
		log.Printf("scenario %s", s.name)
		began, load0 := time.Now(), harness.LoadAverage()
		if err := s.run(r); err != nil {
			os.RemoveAll(r.tmp)
			log.Fatalf("%s: %v", s.name, err)
		}
		r.ran[s.name] = ran{took: time.Since(began), load0: load0, load1: harness.LoadAverage()}
	}
	r.elapsed = time.Since(start)
	if err := r.write(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s in %v\n", filepath.Join(*out, "RESULTS.md"), r.elapsed.Round(time.Second))
}
