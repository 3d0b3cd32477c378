// Command results measures wshub against gorilla/websocket, melody, gws and
// nbio in one run, on this machine, and writes bench/RESULTS.md and the
// plots beside it:
//
//	cd bench && go run ./cmd/results
//
// Every library serves the same scenarios (cmd/server), each in its own
// process, loaded by this process:
//
//   - idle: connections held open and silent, 2,000 to 19,000; the slope of
//     the server's RSS and Go heap per connection, and its goroutines;
//   - echo: 1,000 connections in a closed loop of 256-byte messages:
//     round trips per second, latency percentiles, server CPU per round trip;
//   - broadcast: 10,000 connections in one room, 20 messages of 64 B and of
//     1 KiB published one at a time, in bursts of 20 and (wshub) in batches
//     of 20: server CPU per delivery, deliveries per write, deliveries per
//     second counted by the clients, publish-to-receipt latency, lost
//     messages; wshub on both doors and with FlushDelay, the floor
//     (cmd/server -lib floor), -before a cmd/server built on an older
//     core; -runs interleaved runs, medians;
//   - connect: 5,000 upgrades, 100 at a time: upgrades per second;
//   - cluster: the broadcast cases with the room split over two wshub
//     processes sharing it through NATS, against one process;
//   - attack: 2,000 clients each hold all but the last byte of a 1 MiB
//     message while a control client echoes (load.Attack), against every
//     library and against examples/echo on both of wshub's doors: RSS
//     growth, the control client's latency, and whether every message
//     comes back whole once finished;
//   - deflate: the broadcast of 1 KiB of chat-like JSON (load.FeedJSON) to
//     10,000 subscribers with each library's permessage-deflate and
//     without, for wshub, gws and nbio: deliveries per second, server CPU
//     and bytes on the wire per delivery, RSS; and the RSS of idle
//     connections that negotiated deflate against those that did not,
//     wshub on both doors;
//   - fragments: one client sends one message of 1 MiB less 1 KiB in
//     fragments of 16 B to 64 KiB (and one of 4 MiB less 1 KiB in 64 B and
//     256 B fragments) and waits for its echo: the server's CPU per
//     message, against gorilla, gws, nbio, -before, and a bare TCP echo of
//     the same bytes (cmd/floor -raw); -frag-timeout bounds a message.
//
// -scenarios and -libs choose a subset, and the sections of the other
// scenarios in RESULTS.md are kept; -out where to write. -server and -echo
// measure binaries built elsewhere (from an older core, say) in place of
// this tree's. The whole run takes about thirty minutes here, the attack
// scenario alone about five, deflate about twenty.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/wshub/wshub/bench/load"
)

var (
	allLibs      = []string{"wshub", "gorilla", "melody", "gws", "nbio"}
	allScenarios = []string{"idle", "echo", "broadcast", "connect", "cluster", "attack", "deflate", "fragments"}
)

func main() {
	scenarios := flag.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run, comma-separated; the others' sections of RESULTS.md are kept")
	libs := flag.String("libs", strings.Join(allLibs, ","), "libraries to measure, comma-separated")
	out := flag.String("out", ".", "directory for RESULTS.md and the plots")
	serverBin := flag.String("server", "", "a cmd/server binary to measure, built from another core (default: build ./cmd/server)")
	echoBin := flag.String("echo", "", "attack: an examples/echo binary to measure, built from another core (default: build ../examples/echo)")
	before := flag.String("before", "", "broadcast, fragments: also measure this cmd/server binary, built on an older core, as \"wshub before\"")
	runs := flag.Int("runs", 1, "broadcast, fragments: interleaved runs of every server; the table shows medians")
	fragTimeout := flag.Duration("frag-timeout", time.Minute, "fragments: the longest a message may take to come back; a case that takes longer is reported as more than the CPU it used, and not run again")
	flag.Parse()
	start := time.Now()
	dir, err := os.MkdirTemp("", "wshub-bench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := *serverBin
	if bin == "" {
		if bin, err = build(dir, ".", "./cmd/server"); err != nil {
			log.Fatal(err)
		}
	}
	r := &report{bin: bin, echoBin: *echoBin, tmp: dir, prebuilt: *serverBin != "" || *echoBin != "",
		libs: strings.Split(*libs, ","), out: *out, runs: max(*runs, 1), before: *before, fragTimeout: *fragTimeout}
	want := strings.Split(*scenarios, ",")
	for _, s := range allScenarios {
		r.partial = r.partial || !slices.Contains(want, s)
	}
	run := func(name string, fn func() error) {
		if !slices.Contains(want, name) {
			return
		}
		log.Printf("scenario %s", name)
		if err := fn(); err != nil {
			log.Fatalf("%s: %v", name, err)
		}
	}
	run("idle", r.idle)
	run("echo", r.echo)
	run("broadcast", r.broadcast)
	run("connect", r.connect)
	run("cluster", r.cluster)
	run("attack", r.attack)
	run("deflate", r.deflate)
	run("fragments", r.fragments)
	r.elapsed = time.Since(start)
	if err := r.write(); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s in %v", filepath.Join(*out, "RESULTS.md"), r.elapsed.Round(time.Second))
}

// build compiles the package pkg of the module in modDir into dir.
func build(dir, modDir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = modDir
	cmd.Stderr = os.Stderr
	return bin, cmd.Run()
}

// server is one running cmd/server process.
type server struct {
	addr     string // WebSocket routes
	httpAddr string // HTTP routes: addr but with -listener
	cmd      *exec.Cmd
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer starts bin with args and -addr; for cmd/server (-lib among
// args) with -listener (wshub's own listener), also -http for the HTTP
// routes. examples/echo serves no other route.
func startServer(bin string, args ...string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &server{addr: addr, httpAddr: addr}
	args = append(args, "-addr", addr)
	if slices.Contains(args, "-listener") && slices.Contains(args, "-lib") {
		if s.httpAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "-http", s.httpAddr)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for _, a := range []string{s.addr, s.httpAddr} {
		if err := load.WaitPort(a, 10*time.Second); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func (s *server) url(path string) string { return "ws://" + s.addr + path }

func (s *server) cpu() time.Duration {
	t, err := load.ProcessCPU(s.cmd.Process.Pid)
	if err != nil {
		log.Fatal(err)
	}
	return t
}

// memory asks the server to collect and return freed memory, then reads
// its heap and goroutines from /stats and its RSS from /proc.
func (s *server) memory() (rss, heap float64, goroutines int, err error) {
	resp, err := http.Get("http://" + s.httpAddr + "/stats")
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	var st struct{ Heap, Goroutines float64 }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, 0, 0, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, 0, err
	}
	var size, pages float64
	fmt.Sscan(string(b), &size, &pages)
	return pages * float64(os.Getpagesize()), st.Heap, int(st.Goroutines), nil
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
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %f kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB of memory", kb/(1<<20))
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	return fmt.Sprintf("%d cores (%s)%s, %s, %s, loopback only; servers and load generator share the cores",
		runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)), runtime.Version())
}

// post runs a GET that makes the server act (publish).
func get(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// startNATS starts a nats-server in this process for the cluster scenario.
func startNATS() (*natsserver.Server, error) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("nats-server did not start")
	}
	return ns, nil
}

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
