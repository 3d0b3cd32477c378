package main

import (
	"cmp"
	"fmt"
	"log"
	"runtime"
	"slices"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The echocpu scenario: what an echo round trip costs the server, against
// the floor, which does one read and one write per round trip. Each
// server -runs times, interleaved: upgrade -conns connections, -warm of
// load, then -measure in which the server's CPU, the round trips and their
// latency are counted (measureEcho), then -sys of the same load in which
// its system calls are counted (-count perf, strace or none), per round
// trip.

// echoCPURun is one run of one target.
type echoCPURun struct {
	echoRun
	sys map[string]float64 // system calls (and context switches) per round trip; nil if not counted
}

// echoCPULibs are the cmd/server libraries the scenario measures, those
// of -libs among them.
var echoCPULibs = []string{"wshub", "gorilla", "gws", "nbio"}

// The rows the section's ratios and summary name.
const (
	floorName   = "floor (cmd/server -lib floor: epoll, read, write)"
	ownName     = "wshub, own listener (examples/echo -listener)"
	netHTTPName = "wshub, net/http (examples/echo)"
)

// echoCPUTargets are, in order: the floor; with wshub, examples/echo on
// both doors; cmd/server for each library (wshub there is the net/http
// door behind cmd/server's mux, as the echo scenario measures it); and
// -before-echo on both doors.
func (r *report) echoCPUTargets() ([]target, error) {
	server, err := r.server()
	if err != nil {
		return nil, err
	}
	ts := []target{{floorName, harness.Process{Bin: server, Args: []string{"-lib", "floor"}}, "/echo"}}
	if r.hasLib("wshub") {
		echo, err := r.echoServer()
		if err != nil {
			return nil, err
		}
		ts = append(ts,
			target{ownName, harness.Process{Bin: echo, Args: []string{"-listener"}}, "/ws"},
			target{netHTTPName, harness.Process{Bin: echo}, "/ws"})
	}
	for _, lib := range r.libsOf(echoCPULibs) {
		name := lib
		if lib == "wshub" {
			name = "wshub, net/http (cmd/server)"
		}
		ts = append(ts, target{name, harness.Process{Bin: server, Args: []string{"-lib", lib}}, "/echo"})
	}
	if r.beforeEcho != "" {
		ts = append(ts,
			target{"before (" + r.beforeName + "), own listener", harness.Process{Bin: r.beforeEcho, Args: []string{"-listener"}}, "/ws"},
			target{"before (" + r.beforeName + "), net/http", harness.Process{Bin: r.beforeEcho}, "/ws"})
	}
	return ts, nil
}

func (r *report) echoCPU() error {
	ts, err := r.echoCPUTargets()
	if err != nil {
		return err
	}
	r.echoCPURows = ts
	r.echoCPURuns, err = measureEach(r.runs, ts, func(run int, t target, s *harness.Server) (echoCPURun, error) {
		res, err := r.measureEchoCPU(s, s.URL(t.path))
		if err != nil {
			return res, err
		}
		log.Printf("echocpu run %d %-50s %7.0f rt/s  cpu %6.2f µs/rt  user %5.2f µs/rt  p50 %v p99 %v  futex %.3f nanosleep %.3f /rt",
			run+1, t.name, res.Rate(), micros(res.cpu), micros(res.user), latency(res.P50), latency(res.P99), res.sys["futex"], res.sys["nanosleep"])
		return res, nil
	})
	return err
}

// measureEchoCPU measures s's echo at url, then counts its system calls.
func (r *report) measureEchoCPU(s *harness.Server, url string) (echoCPURun, error) {
	cs, err := dial(url, r.conns)
	if err != nil {
		return echoCPURun{}, err
	}
	defer load.CloseAll(cs)
	e, err := measureEcho(s, cs, r.size, r.warm, r.measure)
	if err != nil {
		return echoCPURun{}, err
	}
	if e.Errors > 0 {
		return echoCPURun{}, fmt.Errorf("%d connections failed", e.Errors)
	}
	res := echoCPURun{echoRun: e}
	if r.count == "none" || r.sys <= 0 {
		return res, nil
	}
	res.sys, err = countSyscalls(r.count, s.PID(), cs, r.size, r.sys, r.tmp)
	return res, err
}

func (r *report) writeEchoCPU(p printer) {
	p("%s connections, each in a closed loop of %d-byte binary messages, loaded by the `results` process; every server in its own process, with its defaults. ", thousands(r.conns), r.size)
	p("Each server %d times, interleaved (all of them once, then again); each figure is the median of its %d runs, each column on its own. ", r.runs, r.runs)
	p("A run: upgrade, %v of load, then %v measured: round trips, latency and the server's CPU (utime+stime from `/proc/PID/stat` at the two ends of that window only; \"of which user\" is utime), ", r.warm, r.measure)
	p("then %v more of the same load in which the server's system calls are counted", r.sys)
	switch r.count {
	case "perf":
		p(" with `perf stat -e syscalls:sys_enter_…,context-switches -p PID`: approximate (perf attaches with its events disabled and enables them through its control pipe just before the round trips start being counted, and disables them just before they are read, so its two lags nearly cancel; the tracepoints cost the server a little). ")
	case "strace":
		p(" with `strace -c -f -p PID`: approximate, and strace slows the server several times over, per round trip counted in that window. ")
	default:
		p(" (not here: `-count none`). ")
	}
	p("The floor is `cmd/server -lib floor`'s `/echo`: %d epoll loops (GOMAXPROCS, as wshub's), each a locked thread blocked in `epoll_wait`, one `read` and one `write` per round trip, unmasking in place: the fewest system calls a server can make. ", runtime.GOMAXPROCS(0))
	p("Most of every server's CPU here is kernel time that none avoids (the loopback `write` carries the segment into the client's socket and wakes it), and it moves by ±10%% with the machine's load, so a server can land below the floor in a run; ")
	p("the user-space part (\"of which user\") is where the servers differ, and the steadier figure. ")
	p("System calls per round trip: read counts recvfrom too, write counts writev and sendto, epoll_wait counts epoll_pwait; \"switches\" are the server's context switches per round trip.\n\n")
	p("| server | round trips/s | p50 | p99 | server CPU per round trip | (min–max) | of which user | × floor | × best of gorilla, gws | futex | nanosleep | read | write | epoll_wait | switches |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	runs := func(name string) []echoCPURun {
		i := slices.IndexFunc(r.echoCPURows, func(t target) bool { return t.name == name })
		if i < 0 {
			return nil
		}
		return r.echoCPURuns[i]
	}
	cpu := func(rs []echoCPURun) float64 {
		return harness.MedianOf(rs, func(x echoCPURun) float64 { return float64(x.cpu) })
	}
	user := func(rs []echoCPURun) float64 {
		return harness.MedianOf(rs, func(x echoCPURun) float64 { return float64(x.user) })
	}
	floor := cpu(runs(floorName))
	best := bestOf(cpu(runs("gorilla")), cpu(runs("gws")))
	for i, t := range r.echoCPURows {
		rs := r.echoCPURuns[i]
		byCPU := func(a, b echoCPURun) int { return cmp.Compare(a.cpu, b.cpu) }
		lo, hi := slices.MinFunc(rs, byCPU).cpu, slices.MaxFunc(rs, byCPU).cpu
		sys := func(names ...string) string {
			if rs[0].sys == nil {
				return "—"
			}
			return fmt.Sprintf("%.3f", harness.MedianOf(rs, func(x echoCPURun) float64 {
				var sum float64
				for _, n := range names {
					sum += x.sys[n]
				}
				return sum
			}))
		}
		c := cpu(rs)
		p("| %s | %.0f | %v | %v | %.2f µs | %.2f–%.2f | %.2f µs | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name,
			harness.MedianOf(rs, func(x echoCPURun) float64 { return x.Rate() }),
			latency(harness.MedianOf(rs, func(x echoCPURun) time.Duration { return x.P50 })),
			latency(harness.MedianOf(rs, func(x echoCPURun) time.Duration { return x.P99 })),
			c/1000, micros(lo), micros(hi), user(rs)/1000, ratio(c, floor), ratio(c, best),
			sys("futex"), sys("nanosleep"),
			sys("read", "recvfrom"), sys("write", "writev", "sendto"), sys("epoll_wait", "epoll_pwait"),
			sys("context-switches"))
	}
	own, nethttp := cpu(runs(ownName)), cpu(runs(netHTTPName))
	if best > 0 && own > 0 && nethttp > 0 && floor > 0 {
		p("\nwshub's own listener: %s× the best of gorilla and gws (the aim: at most 0.95); its net/http door: %s× the own listener (the aim: at most 1.05).\n",
			ratio(own, best), ratio(nethttp, own))
		p("In user CPU alone, the own listener is %s× the floor and %s× the best of gorilla and gws.\n",
			ratio(user(runs(ownName)), user(runs(floorName))), ratio(user(runs(ownName)), bestOf(user(runs("gorilla")), user(runs("gws")))))
	}
	p("\n")
}

// bestOf is the least of the figures measured (not 0), or 0 if none was.
func bestOf(vs ...float64) float64 {
	var best float64
	for _, v := range vs {
		if v > 0 && (best == 0 || v < best) {
			best = v
		}
	}
	return best
}
