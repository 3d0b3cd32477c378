// Command attack measures what unfinished messages cost a WebSocket echo
// server: -conns clients each send all but the last byte of a -size message
// and hold it for -hold while one control client echoes small messages;
// the server's RSS is sampled from /proc (-pid); the hold goes on, up to
// -max-hold, until the RSS stops rising. With -finish the attackers
// then send their last byte and read their message back.
//
//	go run ./cmd/attack -url ws://127.0.0.1:8080/ws -pid $(pgrep echo) -finish
//
// It prints the server's RSS growth, per attacker, how much the attackers
// got written and how many the server closed during the hold, the control
// client's echo latency and failures, and what the finish delivered.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/wshub/wshub/bench/load"
)

func main() {
	var cfg load.AttackConfig
	flag.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/ws", "the echo endpoint to attack")
	flag.IntVar(&cfg.PID, "pid", 0, "the server's process id, to sample its RSS (0: do not)")
	flag.IntVar(&cfg.Conns, "conns", 2000, "attacking connections")
	flag.IntVar(&cfg.Size, "size", 1<<20, "size of each attacker's message; all but its last byte is sent")
	flag.IntVar(&cfg.Echo, "echo", 256, "size of the control client's messages")
	flag.DurationVar(&cfg.Hold, "hold", 15*time.Second, "how long the attackers hold their messages, at least")
	flag.DurationVar(&cfg.MaxHold, "max-hold", 25*time.Second, "at most: past -hold, the hold ends once the server's RSS stops rising")
	flag.BoolVar(&cfg.Finish, "finish", false, "then send the last bytes and read the messages back")
	flag.DurationVar(&cfg.FinishWithin, "finish-within", time.Minute, "time allowed for the messages to come back")
	flag.Parse()
	res, err := load.Attack(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	total, per := res.Growth()
	mb := func(b int64) float64 { return float64(b) / 1e6 }
	fmt.Printf("attackers %d, %.0f MB of %.0f MB written into their sockets in the hold, %d closed by the server in the hold\n",
		res.Attackers, mb(res.Written), float64(res.Attackers)*float64(cfg.Size)/1e6, res.ClosedInHold)
	if res.HoldError != nil {
		fmt.Printf("first close in the hold: %v\n", res.HoldError)
	}
	fmt.Printf("server RSS %.1f MB before, %.1f MB connected, %.1f MB at peak (%.1f s into a hold of %.1f s), %.1f MB at its end: +%.1f MB, %.0f bytes per attacker\n",
		mb(res.RSSBefore), mb(res.RSSIdle), mb(res.RSSPeak), res.PeakAt.Seconds(), res.Held.Seconds(), mb(res.RSSEnd), total/1e6, per)
	fmt.Printf("control echoes %d, failed %d, p50 %v, p99 %v\n", res.Echoes, res.EchoErrors, res.P50, res.P99)
	if cfg.Finish {
		fmt.Printf("finished %d whole, %d failed, the last in %v\n", res.Finished, res.FinishFailed, res.FinishedIn.Round(time.Millisecond))
		if res.FinishError != nil {
			fmt.Printf("first failure: %v\n", res.FinishError)
		}
	}
}
