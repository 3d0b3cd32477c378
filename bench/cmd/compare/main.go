// Command compare measures wshub against its peers in one run, with one
// load generator, each server in its own process:
//
//	cd bench && go run ./cmd/compare -scenario echo
//
// The echo scenario holds -conns connections (default 1,000), each in a
// closed loop of -size byte messages (default 256), and reports round trips
// per second and latency percentiles for each server, with its ratio to
// wshub.
//
//	cd bench && go run ./cmd/compare -scenario broadcast
//
// The broadcast scenario holds -subs connections (default 10,000) in one
// room and has the server publish 20 messages of 64 B and of 1 KiB, one at
// a time (each delivered before the next) and in one burst, three times
// each; it reports deliveries per second counted by the clients, from the
// request to publish until every subscriber has every message.
//
//	cd bench && go run ./cmd/compare -scenario cluster
//
// The cluster scenario runs the broadcast cases twice: one wshub process
// holding all -subs subscribers, then two holding half each and sharing the
// room through a NATS server (in the compare process), with every publish
// sent to the first.
//
// Servers and load share this machine's cores, so only the ratios of one
// run compare; the server's CPU time per message is reported too.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/wshub/wshub/bench/load"
)

// server is one echo server to measure.
type server struct {
	name string
	args []string // echoserver flags
}

var servers = []server{
	{"wshub (net/http)", []string{"-lib", "wshub"}},
	{"wshub (own listener)", []string{"-lib", "wshub", "-listener"}},
	{"gorilla/websocket", []string{"-lib", "gorilla"}},
}

func main() {
	scenario := flag.String("scenario", "echo", "scenario to run: echo, broadcast or cluster")
	conns := flag.Int("conns", 1000, "echo: connections")
	size := flag.Int("size", 256, "echo: message size in bytes")
	dur := flag.Duration("duration", 10*time.Second, "echo: measured time per server")
	subs := flag.Int("subs", 10000, "broadcast: subscribers")
	flag.Parse()
	switch *scenario {
	case "echo":
		echo(*conns, *size, *dur)
	case "cluster":
		cluster(*subs)
	case "broadcast":
		broadcast(*subs)
	default:
		log.Fatalf("unknown scenario %q", *scenario)
	}
}

func echo(conns, size int, dur time.Duration) {
	bin, err := build("echoserver")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(filepath.Dir(bin))
	echoTable(bin, conns, size, dur)
}

func echoTable(bin string, conns, size int, dur time.Duration) {
	fmt.Printf("echo: %d connections, %d-byte messages, closed loop, %v per server\n\n", conns, size, dur)
	fmt.Printf("| server | round trips/s | ratio | p50 | p99 | server CPU per round trip | ratio |\n|---|---:|---:|---:|---:|---:|---:|\n")
	var baseRate, baseCPU float64
	for _, s := range servers {
		r, cpu, err := runEcho(bin, s, conns, size, dur)
		if err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		perMsg := cpu.Seconds() * 1e6 / float64(r.Messages)
		if baseRate == 0 {
			baseRate, baseCPU = r.Rate(), perMsg
		}
		fmt.Printf("| %s | %.0f | %.2f | %v | %v | %.2f µs | %.2f |\n", s.name, r.Rate(), r.Rate()/baseRate,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), perMsg, perMsg/baseCPU)
		if r.Errors > 0 {
			log.Fatalf("%s: %d connections failed", s.name, r.Errors)
		}
	}
}

// build compiles one of the bench commands into a temporary directory.
func build(name string) (string, error) {
	dir, err := os.MkdirTemp("", "wshub-bench")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	cmd.Stderr = os.Stderr
	return bin, cmd.Run()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// runEcho measures one server and returns the echo result and the CPU
// time the server process spent during the measured window.
func runEcho(bin string, s server, conns, size int, dur time.Duration) (load.EchoResult, time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return load.EchoResult{}, 0, err
	}
	cmd := exec.Command(bin, append(s.args, "-addr", addr)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return load.EchoResult{}, 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if err := load.WaitPort(addr, 10*time.Second); err != nil {
		return load.EchoResult{}, 0, err
	}
	cs, _, err := load.Dial(context.Background(), "ws://"+addr+"/ws", conns)
	if err != nil {
		return load.EchoResult{}, 0, err
	}
	defer load.CloseAll(cs)
	var cpu0 time.Duration
	r := load.EchoWindow(cs, size, 2*time.Second, dur, func(start bool) {
		t, err := load.ProcessCPU(cmd.Process.Pid)
		if err != nil {
			log.Fatal(err)
		}
		if start {
			cpu0 = t
		} else {
			cpu0 = t - cpu0
		}
	})
	return r, cpu0, nil
}

// broadcastCase is one way of publishing in the broadcast scenario.
type broadcastCase struct {
	size, burst int
}

var broadcastCases = []broadcastCase{{64, 1}, {64, 20}, {1024, 1}, {1024, 20}}

// broadcastResult is what one server delivered in one case.
type broadcastResult struct {
	rate, cpuPerMsg float64
}

func broadcast(subs int) {
	bin, err := build("broadcastserver")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(filepath.Dir(bin))
	libs := []string{"wshub", "gws"}
	results := make(map[string][]broadcastResult)
	for _, lib := range libs {
		rs, err := runBroadcast(bin, lib, subs)
		if err != nil {
			log.Fatalf("%s: %v", lib, err)
		}
		results[lib] = rs
	}
	fmt.Printf("broadcast: %d subscribers in one room, 20 messages per case, 3 repetitions\n\n", subs)
	fmt.Printf("| message | published | wshub deliveries/s | gws deliveries/s | wshub / gws | server CPU per delivery, wshub | gws |\n|---|---|---:|---:|---:|---:|---:|\n")
	for i, c := range broadcastCases {
		how := "one at a time"
		if c.burst > 1 {
			how = fmt.Sprintf("bursts of %d", c.burst)
		}
		w, g := results["wshub"][i], results["gws"][i]
		fmt.Printf("| %d B | %s | %.0f | %.0f | %.2f | %.2f µs | %.2f µs |\n", c.size, how, w.rate, g.rate, w.rate/g.rate, w.cpuPerMsg, g.cpuPerMsg)
	}
}

func runBroadcast(bin, lib string, subs int) ([]broadcastResult, error) {
	addr, cmd, err := startServer(bin, "-lib", lib)
	if err != nil {
		return nil, err
	}
	defer stopServer(cmd)
	return measureBroadcast([]string{addr}, []*exec.Cmd{cmd}, subs)
}

// startServer starts a bench server on a free loopback address.
func startServer(bin string, args ...string) (string, *exec.Cmd, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, append(args, "-addr", addr)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	if err := load.WaitPort(addr, 10*time.Second); err != nil {
		stopServer(cmd)
		return "", nil, err
	}
	return addr, cmd, nil
}

func stopServer(cmd *exec.Cmd) {
	cmd.Process.Kill()
	cmd.Wait()
}

// cpuOf sums the CPU time of the server processes.
func cpuOf(cmds []*exec.Cmd) (time.Duration, error) {
	var total time.Duration
	for _, c := range cmds {
		t, err := load.ProcessCPU(c.Process.Pid)
		if err != nil {
			return 0, err
		}
		total += t
	}
	return total, nil
}

// measureBroadcast spreads subs subscribers evenly over the servers at
// addrs, publishes through the first, and returns what the subscribers
// received in each broadcast case.
func measureBroadcast(addrs []string, cmds []*exec.Cmd, subs int) ([]broadcastResult, error) {
	var cs []*load.Conn
	for i, addr := range addrs {
		n := subs / len(addrs)
		if i == 0 {
			n += subs % len(addrs)
		}
		c, _, err := load.Dial(context.Background(), "ws://"+addr+"/ws", n)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c...)
	}
	defer load.CloseAll(cs)
	time.Sleep(500 * time.Millisecond) // let the last OnOpen subscribe
	recv := load.Receive(cs)
	publish := func(n, size int) error {
		resp, err := http.Get(fmt.Sprintf("http://%s/publish?n=%d&size=%d", addrs[0], n, size))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	// Warm up, and check that every subscriber is in the room.
	want := recv.Received() + int64(subs)
	if err := publish(1, 64); err != nil {
		return nil, err
	}
	if !recv.WaitReceived(want, 30*time.Second) {
		return nil, fmt.Errorf("warm-up: %d of %d messages arrived", recv.Received()-want+int64(subs), subs)
	}
	var out []broadcastResult
	for _, c := range broadcastCases {
		const messages, reps = 20, 3
		cpu0, err := cpuOf(cmds)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		for range reps {
			for range messages / c.burst {
				want := recv.Received() + int64(subs*c.burst)
				if err := publish(c.burst, c.size); err != nil {
					return nil, err
				}
				if !recv.WaitReceived(want, 60*time.Second) {
					return nil, fmt.Errorf("%d B x%d: messages lost", c.size, c.burst)
				}
			}
		}
		elapsed := time.Since(start)
		cpu1, _ := cpuOf(cmds)
		deliveries := float64(subs * messages * reps)
		out = append(out, broadcastResult{
			rate:      deliveries / elapsed.Seconds(),
			cpuPerMsg: (cpu1 - cpu0).Seconds() * 1e6 / deliveries,
		})
	}
	if n := recv.OutOfOrder(); n > 0 {
		return nil, fmt.Errorf("%d messages arrived out of order", n)
	}
	return out, nil
}

// cluster compares one hub holding every subscriber with two hub processes
// holding half each and sharing the room through NATS (a nats-server in
// this process), publishing through the first.
func cluster(subs int) {
	bin, err := build("broadcastserver")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(filepath.Dir(bin))
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()

	single, err := runBroadcast(bin, "wshub", subs)
	if err != nil {
		log.Fatalf("one hub: %v", err)
	}
	var addrs []string
	var cmds []*exec.Cmd
	for range 2 {
		addr, cmd, err := startServer(bin, "-lib", "wshub", "-nats", ns.ClientURL())
		if err != nil {
			log.Fatal(err)
		}
		defer stopServer(cmd)
		addrs, cmds = append(addrs, addr), append(cmds, cmd)
	}
	two, err := measureBroadcast(addrs, cmds, subs)
	if err != nil {
		log.Fatalf("two hubs: %v", err)
	}
	fmt.Printf("cluster: %d subscribers in one room; 20 messages per case, 3 repetitions, published through the first hub\n\n", subs)
	fmt.Printf("| message | published | one hub, deliveries/s | two hubs over NATS, deliveries/s | two / one | hub CPU per delivery, one | two |\n|---|---|---:|---:|---:|---:|---:|\n")
	for i, c := range broadcastCases {
		how := "one at a time"
		if c.burst > 1 {
			how = fmt.Sprintf("bursts of %d", c.burst)
		}
		o, t := single[i], two[i]
		fmt.Printf("| %d B | %s | %.0f | %.0f | %.2f | %.2f µs | %.2f µs |\n", c.size, how, o.rate, t.rate, t.rate/o.rate, o.cpuPerMsg, t.cpuPerMsg)
	}
}
