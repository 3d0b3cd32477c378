// Command compare measures wshub against its peers in one run, with one
// load generator, each server in its own process:
//
//	cd bench && go run ./cmd/compare -scenario echo
//
// The echo scenario holds -conns connections (default 1,000), each in a
// closed loop of -size byte messages (default 256), and reports round trips
// per second and latency percentiles for each server, with its ratio to
// wshub. Servers and load share this machine's cores, so only the ratios
// of one run compare.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

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
	scenario := flag.String("scenario", "echo", "scenario to run: echo")
	conns := flag.Int("conns", 1000, "connections")
	size := flag.Int("size", 256, "message size in bytes")
	dur := flag.Duration("duration", 10*time.Second, "measured time per server")
	flag.Parse()
	if *scenario != "echo" {
		log.Fatalf("unknown scenario %q", *scenario)
	}
	bin, err := buildEchoServer()
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(filepath.Dir(bin))

	fmt.Printf("echo: %d connections, %d-byte messages, closed loop, %v per server\n\n", *conns, *size, *dur)
	fmt.Printf("| server | round trips/s | ratio | p50 | p99 | server CPU per round trip | ratio |\n|---|---:|---:|---:|---:|---:|---:|\n")
	var baseRate, baseCPU float64
	for _, s := range servers {
		r, cpu, err := runEcho(bin, s, *conns, *size, *dur)
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

func buildEchoServer() (string, error) {
	dir, err := os.MkdirTemp("", "wshub-bench")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "echoserver")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/echoserver")
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
