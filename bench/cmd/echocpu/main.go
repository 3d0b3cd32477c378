// Command echocpu measures what an echo round trip costs the server, for
// wshub on both doors beside gorilla/websocket, gws and nbio, and beside
// the floor: a bare epoll server that does one read and one write per
// round trip (cmd/floor).
//
//	cd bench && go run ./cmd/echocpu -results RESULTS.md
//
// and with a "before" row built from an older core:
//
//	git worktree add /tmp/old 7cdc6f4 && (cd /tmp/old && go build -o /tmp/echo-7cdc6f4 ./examples/echo)
//	go run ./cmd/echocpu -before /tmp/echo-7cdc6f4 -before-name 7cdc6f4 -results RESULTS.md
//
// Every server runs in its own process; this process is the load
// generator: -conns connections (1,000), each in a closed loop of -size
// byte (256) binary messages (bench/load's Echo). For each server, -runs
// times (3), interleaved (every server once, then every server again):
// upgrade the connections, -warm (2 s) of load, then -measure (5 s) in
// which the server's CPU (utime+stime from /proc/PID/stat), the round trips
// and their latency are counted, then -sys (3 s) of the same load in which
// its system calls are counted with perf's syscalls:sys_enter_* tracepoints
// (-count perf; strace -c -f with -count strace, which slows the server far
// more; none with -count none), per round trip in that window. The table
// is the median of the runs, each column on its own.
//
// The servers: cmd/floor; examples/echo with -listener (wshub's own
// listener) and without (its net/http door, ServeHTTP); cmd/server for
// each of -libs (wshub, gorilla, gws, nbio; wshub there is the net/http
// door again, behind cmd/server's mux, as cmd/results measures it); and
// with -before, an examples/echo binary built from another core, on both
// doors. -results rewrites (or adds) this
// command's section of that Markdown file.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub/bench/internal/gobuild"
	"github.com/wshub/wshub/bench/internal/markdown"
	"github.com/wshub/wshub/bench/load"
)

// target is one server measured.
type target struct {
	name string
	bin  string
	args []string
	path string
}

// run is what one run of one target measured.
type run struct {
	load.EchoResult
	cpu   time.Duration      // server CPU per round trip
	user  time.Duration      // the part of it in user space
	sys   map[string]float64 // system calls (and context switches) per round trip
	sysOK bool
}

// sysCalls are the system calls counted, by tracepoint name; the table
// shows futex and nanosleep on their own and the I/O ones together.
var sysCalls = []string{"futex", "nanosleep", "read", "write", "writev", "epoll_pwait", "epoll_wait", "recvfrom", "sendto", "sched_yield"}

func main() {
	conns := flag.Int("conns", 1000, "connections")
	size := flag.Int("size", 256, "message size in bytes")
	warm := flag.Duration("warm", 2*time.Second, "load before the measured window")
	measure := flag.Duration("measure", 5*time.Second, "the measured window: CPU, round trips, latency")
	sysWindow := flag.Duration("sys", 3*time.Second, "the window in which system calls are counted, after the measured one")
	runs := flag.Int("runs", 3, "interleaved runs of every server")
	count := flag.String("count", "perf", "how system calls are counted: perf, strace or none")
	libs := flag.String("libs", "wshub,gorilla,gws,nbio", "cmd/server libraries to measure beside wshub's examples/echo")
	before := flag.String("before", "", "an examples/echo binary built from an older core, measured on both doors")
	beforeName := flag.String("before-name", "", "what to call -before in the table (default: its file name)")
	only := flag.String("only", "", "measure only the servers whose names contain one of these, comma-separated")
	results := flag.String("results", "", "a Markdown file in which to write (or replace) this command's section")
	flag.Parse()

	dir, err := os.MkdirTemp("", "echocpu")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	floorBin := gobuild.MustBuild(dir, ".", "./cmd/floor")
	echoBin := gobuild.MustBuild(dir, "..", "./examples/echo")
	serverBin := gobuild.MustBuild(dir, ".", "./cmd/server")

	targets := []target{
		{name: floorName, bin: floorBin, path: "/"},
		{name: "wshub, own listener (examples/echo -listener)", bin: echoBin, args: []string{"-listener"}, path: "/ws"},
		{name: "wshub, net/http (examples/echo)", bin: echoBin, path: "/ws"},
	}
	for _, lib := range strings.Split(*libs, ",") {
		if lib == "" {
			continue
		}
		name := lib
		if lib == "wshub" {
			name = "wshub, net/http (cmd/server)"
		}
		targets = append(targets, target{name: name, bin: serverBin, args: []string{"-lib", lib}, path: "/echo"})
	}
	if *before != "" {
		n := *beforeName
		if n == "" {
			n = filepath.Base(*before)
		}
		targets = append(targets,
			target{name: "before (" + n + "), own listener", bin: *before, args: []string{"-listener"}, path: "/ws"},
			target{name: "before (" + n + "), net/http", bin: *before, path: "/ws"})
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

	m := measurer{conns: *conns, size: *size, warm: *warm, measure: *measure, sys: *sysWindow, count: *count, dir: dir, load0: loadAverage()}
	all := make(map[string][]run)
	start := time.Now()
	for i := range *runs {
		for _, t := range targets {
			r, err := m.run(t)
			if err != nil {
				log.Fatalf("%s: %v", t.name, err)
			}
			log.Printf("run %d %-48s %7.0f rt/s  cpu %6.2f µs/rt  p50 %v p99 %v  futex %.3f nanosleep %.3f /msg",
				i+1, t.name, r.Rate(), micros(r.cpu), latency(r.P50), latency(r.P99), r.sys["futex"], r.sys["nanosleep"])
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

// measurer runs one target at a time.
type measurer struct {
	conns, size        int
	warm, measure, sys time.Duration
	count              string
	dir                string
	load0              string // the load average when the runs began
}

// run starts t's server, loads it and measures it, then stops it.
func (m *measurer) run(t target) (run, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return run{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(t.bin, append(slices.Clip(t.args), "-addr", addr)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return run{}, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if err := load.WaitPort(addr, 10*time.Second); err != nil {
		return run{}, err
	}
	pid := cmd.Process.Pid
	cs, _, err := load.Dial(context.Background(), "ws://"+addr+t.path, m.conns)
	if err != nil {
		return run{}, err
	}
	defer load.CloseAll(cs)

	var user0, sys0, user, sys time.Duration
	res := load.EchoWindow(cs, m.size, m.warm, m.measure, func(start bool) {
		u, s, err := processCPU(pid)
		if err != nil {
			log.Fatal(err)
		}
		if start {
			user0, sys0 = u, s
		} else {
			user, sys = u-user0, s-sys0
		}
	})
	if res.Errors > 0 {
		return run{}, fmt.Errorf("%d connections failed", res.Errors)
	}
	n := time.Duration(max(res.Messages, 1))
	r := run{EchoResult: res, cpu: (user + sys) / n, user: user / n}
	if m.count == "none" || m.sys <= 0 {
		return r, nil
	}
	out := filepath.Join(m.dir, "syscalls")
	c, err := startCounter(m.count, pid, out)
	if err != nil {
		return run{}, err
	}
	// The round trips are sampled right after perf acknowledges each
	// command: the round trips it counts before the first sample, it
	// misses after the second, and the two nearly cancel.
	loop := startLoop(cs, m.size)
	time.Sleep(200 * time.Millisecond)
	err = c.control(true)
	done0 := loop.done.Load()
	if err == nil {
		time.Sleep(m.sys)
		err = c.control(false)
	}
	done := loop.done.Load() - done0
	if lerr := loop.stop(); lerr != nil && err == nil {
		err = fmt.Errorf("while counting system calls: %v", lerr)
	}
	if serr := c.stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return run{}, err
	}
	counts, err := parseCounts(m.count, out)
	if err != nil {
		return run{}, err
	}
	r.sys = make(map[string]float64)
	for k, v := range counts {
		r.sys[k] = v / float64(max(done, 1))
	}
	r.sysOK = true
	return r, nil
}

// counter is perf stat or strace attached to the server.
type counter struct {
	cmd      *exec.Cmd
	stderr   bytes.Buffer
	ctl, ack *os.File // perf's control and acknowledgement pipes
}

// startCounter attaches perf stat or strace to pid, writing to out. perf
// starts with its events disabled, for control to enable them exactly
// over the window; strace counts from about 100 ms after this returns
// until stop.
func startCounter(how string, pid int, out string) (*counter, error) {
	c := new(counter)
	switch how {
	case "perf":
		var evs []string
		for _, s := range sysCalls {
			evs = append(evs, "syscalls:sys_enter_"+s)
		}
		evs = append(evs, "context-switches")
		ctlR, ctlW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		ackR, ackW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer ctlR.Close()
		defer ackW.Close()
		c.ctl, c.ack = ctlW, ackR
		c.cmd = exec.Command("perf", "stat", "-x,", "-o", out, "-D", "-1", "--control", "fd:3,4",
			"-e", strings.Join(evs, ","), "-p", strconv.Itoa(pid))
		c.cmd.ExtraFiles = []*os.File{ctlR, ackW}
	case "strace":
		c.cmd = exec.Command("strace", "-c", "-f", "-o", out, "-p", strconv.Itoa(pid))
	default:
		return nil, fmt.Errorf("-count %q: perf, strace or none", how)
	}
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	if how == "strace" {
		time.Sleep(100 * time.Millisecond) // strace says nothing once attached
	}
	return c, nil
}

// control enables (start) or disables perf's events, and waits for perf
// to say it has.
func (c *counter) control(start bool) error {
	if c.ctl == nil {
		return nil
	}
	cmd := "disable\n"
	if start {
		cmd = "enable\n"
	}
	if _, err := c.ctl.WriteString(cmd); err != nil {
		return err
	}
	c.ack.SetReadDeadline(time.Now().Add(10 * time.Second))
	// perf writes "ack\n" and its terminating NUL.
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c.ack, buf); err != nil || !bytes.HasPrefix(buf, []byte("ack\n")) {
		return fmt.Errorf("perf did not acknowledge %q: %q %v %s", cmd, buf, err, c.stderr.String())
	}
	return nil
}

// stop interrupts the counter, which then writes its counts.
func (c *counter) stop() error {
	c.cmd.Process.Signal(os.Interrupt)
	err := c.cmd.Wait()
	if c.ctl != nil {
		c.ctl.Close()
		c.ack.Close()
	}
	if err != nil && c.cmd.ProcessState.ExitCode() != 0 && !strings.Contains(err.Error(), "interrupt") {
		return fmt.Errorf("%s: %v %s", c.cmd.Path, err, c.stderr.String())
	}
	return nil
}

// parseCounts reads the counts of startCounter's output, by system call
// name ("context-switches" too, from perf).
func parseCounts(how, out string) (map[string]float64, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]float64)
	for line := range strings.SplitSeq(string(b), "\n") {
		switch how {
		case "perf":
			// count,unit,event,...
			f := strings.Split(line, ",")
			if len(f) < 3 {
				continue
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue // "<not counted>", comments
			}
			counts[strings.TrimPrefix(f[2], "syscalls:sys_enter_")] = v
		case "strace":
			// % time, seconds, usecs/call, calls, [errors,] syscall
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			if v, err := strconv.ParseFloat(f[3], 64); err == nil {
				counts[f[len(f)-1]] = v
			}
		}
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("%s counted nothing: %q", how, b)
	}
	return counts, nil
}

// echoLoop keeps every connection in a closed loop and counts the round
// trips done, for the window in which system calls are counted.
type echoLoop struct {
	done    atomic.Int64
	stopped atomic.Bool
	errs    chan error
}

func startLoop(cs []*load.Conn, size int) *echoLoop {
	l := &echoLoop{errs: make(chan error, len(cs))}
	payload := make([]byte, size)
	frame := load.Frame(ws.OpBinary, payload)
	for _, c := range cs {
		go func() {
			buf := make([]byte, size)
			for !l.stopped.Load() {
				if _, err := c.Write(frame); err != nil {
					l.errs <- err
					return
				}
				if p, err := c.ReadMessage(buf); err != nil || len(p) != size {
					l.errs <- fmt.Errorf("echo of %d bytes: %v", len(p), err)
					return
				}
				l.done.Add(1)
			}
			l.errs <- nil
		}()
	}
	return l
}

// stop ends the loops once their round trips are back, and returns the
// first error.
func (l *echoLoop) stop() error {
	l.stopped.Store(true)
	var first error
	for range cap(l.errs) {
		if err := <-l.errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// processCPU returns the user and system CPU time process pid has used,
// from /proc/PID/stat (in clock ticks of 10 ms).
func processCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command name, which is in parentheses: utime
	// and stime are the 12th and 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ut) * tick, time.Duration(st) * tick, nil
}

// micros is d in microseconds.
func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// latency rounds d for a table: to 10 µs below 10 ms, to 1 ms above.
func latency(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// median returns the median of f over rs.
func median[T int64 | float64 | time.Duration](rs []run, f func(run) T) T {
	v := make([]T, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

const floorName = "floor (cmd/floor: epoll, read, write)"

const sectionTitle = "## Echo: server CPU per round trip, against the floor"

// section writes the Markdown section of the results.
func (m *measurer) section(targets []target, all map[string][]run, runs int, took time.Duration) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("%s\n\n", sectionTitle)
	p("Written by `cd bench && go run ./cmd/echocpu %s` on %s in %v; only this section comes from that run.\n\n",
		strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	p("Machine: %s; load average (1 minute) %s at the start, %s at the end.\n\n", machine(), m.load0, loadAverage())
	p("%d connections, each in a closed loop of %d-byte binary messages, loaded by the `echocpu` process; every server in its own process, with its defaults. ", m.conns, m.size)
	p("Each server %d times, interleaved (all of them once, then again); each figure is the median of its %d runs, each column on its own. ", runs, runs)
	p("A run: upgrade, %v of load, then %v measured: round trips, latency and the server's CPU (utime+stime from `/proc/PID/stat` at the two ends of that window only; \"of which user\" is utime), ", m.warm, m.measure)
	p("then %v more of the same load in which the server's system calls are counted", m.sys)
	switch m.count {
	case "perf":
		p(" with `perf stat -e syscalls:sys_enter_…,context-switches -p PID`: approximate (perf attaches with its events disabled and enables them through its control pipe; the round trips are sampled as it acknowledges, so its two lags nearly cancel; the tracepoints cost the server a little). ")
	case "strace":
		p(" with `strace -c -f -p PID`: approximate, and strace slows the server several times over, per round trip counted in that window. ")
	default:
		p(" (not here: `-count none`). ")
	}
	p("The floor is `cmd/floor`: %d epoll loops (GOMAXPROCS, as wshub's), each a locked thread blocked in `epoll_wait`, one `read` and one `write` per round trip, unmasking in place: the fewest system calls a server can make. ", runtime.GOMAXPROCS(0))
	p("Most of every server's CPU here is kernel time that none avoids (the loopback `write` carries the segment into the client's socket and wakes it), and it moves by ±10%% with the machine's load, so a server can land below the floor in a run; ")
	p("the user-space part (\"of which user\") is where the servers differ, and the steadier figure. ")
	p("System calls per round trip: read counts recvfrom too, write counts writev and sendto, epoll_wait counts epoll_pwait; \"switches\" are the server's context switches per round trip.\n\n")
	p("| server | round trips/s | p50 | p99 | server CPU per round trip | (min–max) | of which user | × floor | × best of gorilla, gws | futex | nanosleep | read | write | epoll_wait | switches |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	cpu := func(name string) time.Duration {
		if rs := all[name]; len(rs) > 0 {
			return median(rs, func(r run) time.Duration { return r.cpu })
		}
		return 0
	}
	floor := cpu(floorName)
	var best time.Duration
	for _, n := range []string{"gorilla", "gws"} {
		if c := cpu(n); c > 0 && (best == 0 || c < best) {
			best = c
		}
	}
	ratio := func(v, base time.Duration) string {
		if base == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", float64(v)/float64(base))
	}
	for _, t := range targets {
		rs := all[t.name]
		if len(rs) == 0 {
			continue
		}
		c := cpu(t.name)
		lo := slices.MinFunc(rs, func(a, b run) int { return int(a.cpu - b.cpu) }).cpu
		hi := slices.MaxFunc(rs, func(a, b run) int { return int(a.cpu - b.cpu) }).cpu
		sys := func(names ...string) string {
			if !rs[0].sysOK {
				return "—"
			}
			v := median(rs, func(r run) float64 {
				var s float64
				for _, n := range names {
					s += r.sys[n]
				}
				return s
			})
			return fmt.Sprintf("%.3f", v)
		}
		p("| %s | %.0f | %v | %v | %.2f µs | %.2f–%.2f | %.2f µs | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name,
			median(rs, func(r run) float64 { return r.Rate() }),
			latency(median(rs, func(r run) time.Duration { return r.P50 })),
			latency(median(rs, func(r run) time.Duration { return r.P99 })),
			micros(c), micros(lo), micros(hi), micros(median(rs, func(r run) time.Duration { return r.user })),
			ratio(c, floor), ratio(c, best),
			sys("futex"), sys("nanosleep"),
			sys("read", "recvfrom"), sys("write", "writev", "sendto"), sys("epoll_wait", "epoll_pwait"),
			sys("context-switches"))
	}
	const ownName = "wshub, own listener (examples/echo -listener)"
	own, nethttp := cpu(ownName), cpu("wshub, net/http (examples/echo)")
	userOf := func(name string) time.Duration {
		if rs := all[name]; len(rs) > 0 {
			return median(rs, func(r run) time.Duration { return r.user })
		}
		return 1<<63 - 1
	}
	if best > 0 && own > 0 && nethttp > 0 && floor > 0 {
		p("\nwshub's own listener: %s× the best of gorilla and gws (the aim: at most 0.95); its net/http door: %s× the own listener (the aim: at most 1.05).\n",
			ratio(own, best), ratio(nethttp, own))
		p("In user CPU alone, the own listener is %s× the floor and %s× the best of gorilla and gws.\n",
			ratio(userOf(ownName), userOf(floorName)), ratio(userOf(ownName), min(userOf("gorilla"), userOf("gws"))))
	}
	p("\n")
	return w.String()
}

// machine describes this machine for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	return fmt.Sprintf("%d cores (%s), %s, %s, loopback; servers and load generator share the cores",
		runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version())
}

// loadAverage is the machine's one-minute load average, from /proc: other
// work on the machine moves every figure.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
