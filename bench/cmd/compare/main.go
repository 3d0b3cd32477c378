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
	fmt.Printf("| server | round trips/s | p50 | p99 | ratio to wshub (net/http) |\n|---|---:|---:|---:|---:|\n")
	var base float64
	for _, s := range servers {
		r, err := runEcho(bin, s, *conns, *size, *dur)
		if err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		if base == 0 {
			base = r.Rate()
		}
		fmt.Printf("| %s | %.0f | %v | %v | %.2f |\n", s.name, r.Rate(),
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Rate()/base)
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

func runEcho(bin string, s server, conns, size int, dur time.Duration) (load.EchoResult, error) {
	addr, err := freeAddr()
	if err != nil {
		return load.EchoResult{}, err
	}
	cmd := exec.Command(bin, append(s.args, "-addr", addr)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return load.EchoResult{}, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if err := load.WaitPort(addr, 10*time.Second); err != nil {
		return load.EchoResult{}, err
	}
	cs, _, err := load.Dial(context.Background(), "ws://"+addr+"/ws", conns)
	if err != nil {
		return load.EchoResult{}, err
	}
	defer load.CloseAll(cs)
	return load.Echo(cs, size, 2*time.Second, dur), nil
}
