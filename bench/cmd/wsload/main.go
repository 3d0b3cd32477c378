// Command wsload loads any ws:// URL with many client connections.
//
//	go run ./cmd/wsload -url ws://127.0.0.1:8080/ws -conns 1000 -size 256 -duration 10s
//
// It opens -conns connections, then runs a closed loop on each: send a
// -size byte binary message, wait for the echo, check it, repeat. It prints
// the upgrade time percentiles, then round trips per second and round-trip
// percentiles, and exits non-zero if any connection fails or a message comes
// back wrong.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"time"

	"github.com/wshub/wshub/bench/load"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/ws", "WebSocket URL of an echo server")
	conns := flag.Int("conns", 1000, "connections")
	size := flag.Int("size", 256, "message size in bytes")
	warm := flag.Duration("warmup", 2*time.Second, "time before counting")
	dur := flag.Duration("duration", 10*time.Second, "measured time")
	flag.Parse()

	cs, lat, err := load.Dial(context.Background(), *url, *conns)
	if err != nil {
		log.Fatal(err)
	}
	defer load.CloseAll(cs)
	slices.Sort(lat)
	fmt.Printf("upgraded %d connections: p50 %v p99 %v\n", len(cs),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	r := load.Echo(cs, *size, *warm, *dur)
	fmt.Printf("echo: %.0f round trips/s, p50 %v, p99 %v, %d failed connections\n",
		r.Rate(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors)
	if r.Errors > 0 {
		os.Exit(1)
	}
}
