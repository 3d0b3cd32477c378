// Command wsload loads any ws:// echo server (one that sends each message
// back to its sender) with many connections, and tells what came back:
//
//	go run ./cmd/wsload -url ws://127.0.0.1:8080/ws -conns 1000 -ramp 5s -hold 20s -rate 10 -size 256
//
// It opens -conns connections evenly over -ramp, each sending -rate
// messages a second of -size bytes (-rate 0: a closed loop, the next
// message when the echo arrives) for -hold after the ramp; with -session,
// each connection closes after that long and a new one replaces it. Every
// message carries its sequence number and send time, and every echo is
// checked and timed. A progress line is printed each second, then a summary
// with percentiles. It exits with status 1 if a message was lost or came
// back wrong, or a connection could not be opened.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/wshub/wshub/bench/load"
)

func main() {
	cfg := load.Config{}
	flag.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL of an echo server")
	flag.IntVar(&cfg.Conns, "conns", 100, "connections held at once")
	flag.DurationVar(&cfg.Ramp, "ramp", 5*time.Second, "time over which the connections are opened")
	flag.DurationVar(&cfg.Hold, "hold", 10*time.Second, "run time after the ramp")
	flag.Float64Var(&cfg.Rate, "rate", 1, "messages per second per connection; 0 for a closed loop")
	flag.DurationVar(&cfg.Session, "session", 0, "close and replace each connection after this long; 0: never")
	flag.IntVar(&cfg.Size, "size", 64, "message size in bytes (at least 16)")
	flag.DurationVar(&cfg.Grace, "grace", 5*time.Second, "time allowed at the end for messages in flight")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var lastSent int64
	cfg.Progress = func(s load.Snapshot) {
		fmt.Fprintf(os.Stderr, "\r%5.0fs  open %d/%d  sent %d (%d/s)  echoed %d  wrong %d  dial errors %d  rtt p50 %v p99 %v   ",
			s.Elapsed.Seconds(), s.Open, cfg.Conns, s.Sent, s.Sent-lastSent, s.Received, s.Wrong, s.DialErrors,
			s.RTT.Percentile(0.5).Round(10*time.Microsecond), s.RTT.Percentile(0.99).Round(10*time.Microsecond))
		lastSent = s.Sent
	}
	s := load.Run(ctx, cfg)
	fmt.Fprintln(os.Stderr)
	fmt.Printf("connections: %d opened, %d failed; upgrade %v\n", s.Connected, s.DialErrors, s.Connect)
	fmt.Printf("messages:    %d sent, %d echoed, %d lost, %d wrong; %.0f echoed/s\n",
		s.Sent, s.Received, s.Lost, s.Wrong, float64(s.Received)/s.Elapsed.Seconds())
	fmt.Printf("round trip:  %v\n", s.RTT)
	if s.Lost > 0 || s.Wrong > 0 || s.DialErrors > 0 || s.Connected == 0 {
		fmt.Println("FAIL")
		os.Exit(1)
	}
}
