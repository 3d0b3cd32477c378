package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The history scenario (Options.ChannelHistory): fan-out to 10,000 members
// of a room that keeps its last 100 messages, against one that keeps
// none, in memory and in a JetStream stream (with NATS core, history off,
// beside it: what the broker costs without a stream); and 1,000 clients
// that come back at once, each missing the same 100 messages: the time
// until all have them and the server's CPU, against the same clients
// connecting without a recovery. Each server -runs times, interleaved;
// medians.

// historyMembers is the room's size; historyClients come back at once,
// each missing historyMissed messages.
const (
	historyMembers = 10000
	historyClients = 1000
	historyMissed  = 100
)

// historyCases are the fan-out cases.
var historyCases = []bcastCase{{size: 64, burst: 1}, {size: 64, burst: 20}, {size: 1024, burst: 1}}

// historyTarget is one server of the scenario.
type historyTarget struct {
	name    string
	args    []string
	history bool // the room keeps messages: recovery measured
}

// historyRun is one run of a target.
type historyRun struct {
	fanout   []bcastResult // by historyCases
	recovery recoveryResult
}

// recoveryResult is historyClients coming back at once with historyMissed
// messages each to recover, and the same clients connecting afresh.
type recoveryResult struct {
	elapsed, cpu         time.Duration // until every client had what it missed
	baseElapsed, baseCPU time.Duration // connecting only
}

func (r *report) history() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "wshub-bench-jetstream")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true, JetStream: true, StoreDir: dir})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats-server did not start")
	}
	defer ns.Shutdown()
	url := ns.ClientURL()
	ts := []historyTarget{
		{"history off", []string{"-lib", "wshub"}, false},
		{"history in memory", []string{"-lib", "wshub", "-history", "100"}, true},
		{"NATS core, history off", []string{"-lib", "wshub", "-nats", url}, false},
		{"NATS JetStream history", []string{"-lib", "wshub", "-history", "100", "-nats", url}, true},
	}
	r.historyRows = ts
	r.historyRuns, err = harness.Interleave(r.runs, ts, func(run int, t historyTarget) (historyRun, error) {
		s, err := harness.Start(harness.Process{Bin: bin, Args: t.args})
		if err != nil {
			return historyRun{}, err
		}
		defer s.Stop()
		var res historyRun
		if res.fanout, err = measureBroadcast([]*harness.Server{s}, historyMembers, bcastOpts{cases: historyCases}); err != nil {
			return res, fmt.Errorf("%s: %v", t.name, err)
		}
		if t.history {
			if res.recovery, err = measureRecovery(s); err != nil {
				return res, fmt.Errorf("%s: %v", t.name, err)
			}
		}
		log.Printf("history run %d %s: 64 B %.2f µs CPU per delivery; recovery %v, %v CPU",
			run+1, t.name, micros(res.fanout[0].cpu), res.recovery.elapsed.Round(time.Millisecond), res.recovery.cpu.Round(time.Millisecond))
		return res, nil
	})
	return err
}

// measureRecovery publishes historyMissed messages to s's room, then has
// historyClients come back at once from the position before them, and
// waits until every client has them all, in order, none lost; then the
// same clients connect without coming back, for the cost of connecting
// alone.
func measureRecovery(s *harness.Server) (recoveryResult, error) {
	var res recoveryResult
	body, err := s.Get("/position")
	if err != nil {
		return res, err
	}
	var pos struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	if err := json.Unmarshal(body, &pos); err != nil || pos.Epoch == "" {
		return res, fmt.Errorf("/position: %q, %v", body, err)
	}
	if _, err := s.Get(fmt.Sprintf("/publish?n=%d&size=64", historyMissed)); err != nil {
		return res, err
	}
	measure := func(path string, want int64) (time.Duration, time.Duration, error) {
		cpu0, err := s.CPU()
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		cs, err := dial(s.URL(path), historyClients)
		if err != nil {
			return 0, 0, err
		}
		defer load.CloseAll(cs)
		recv := load.Receive(cs)
		if !recv.WaitReceived(want, 60*time.Second) {
			return 0, 0, fmt.Errorf("%s: %d of %d messages", path, recv.Received(), want)
		}
		elapsed := time.Since(start)
		cpu1, err := s.CPU()
		if err != nil {
			return 0, 0, err
		}
		if n := recv.Lost() + recv.OutOfOrder(); n > 0 {
			return 0, 0, fmt.Errorf("%s: %d messages lost or out of order", path, n)
		}
		return elapsed, cpu1.Sub(cpu0).Total(), nil
	}
	path := fmt.Sprintf("/room?offset=%d&epoch=%s", pos.Offset, pos.Epoch)
	if res.elapsed, res.cpu, err = measure(path, historyClients*historyMissed); err != nil {
		return res, err
	}
	res.baseElapsed, res.baseCPU, err = measure("/room", 0)
	return res, err
}

func (r *report) writeHistory(p printer) {
	p("A room of %s members, all on one wshub process, that keeps its last 100 messages (`Options.ChannelHistory`) or none; with `-nats`, the hub publishes through NATS (`broker/nats`, the nats-server with JetStream in the measuring process, so its CPU is not the server's): with history, each publish is appended to the room's JetStream stream first, and delivered at the position the stream gave it. Server CPU per delivery, medians of %d runs; the ratio is against history off on the same broker.\n\n", thousands(historyMembers), r.runs)
	p("| server |")
	for _, c := range historyCases {
		p(" %v | ratio |", c)
	}
	p("\n|---|")
	for range historyCases {
		p("---:|---:|")
	}
	p("\n")
	base := map[bool]int{false: 0, true: 2} // history off, per broker
	for i, t := range r.historyRows {
		b := base[i >= 2]
		p("| %s |", t.name)
		for k := range historyCases {
			cpu := r.historyMedian(i, func(h historyRun) time.Duration { return h.fanout[k].cpu })
			off := r.historyMedian(b, func(h historyRun) time.Duration { return h.fanout[k].cpu })
			p(" %.2f µs | %s |", micros(cpu), ratio(float64(cpu), float64(off)))
		}
		p("\n")
	}
	p("\n%s clients come back at once to a room with history, each from the position before the same %d messages (`Channel.Recover`, from `/room?offset=N&epoch=E`): the time until every client has all %d, in order and none lost (checked), and the server's CPU; beside it the same clients connecting without coming back. With JetStream, a hub that does not follow the room reads what the first client missed from the stream, and keeps it for the others. The per-message figure is the CPU beyond connecting's, per message recovered.\n\n", thousands(historyClients), historyMissed, historyMissed)
	p("| server | recovery: time | server CPU | per message | connecting only: time | server CPU |\n|---|---:|---:|---:|---:|---:|\n")
	for i, t := range r.historyRows {
		if !t.history {
			continue
		}
		rec := func(f func(recoveryResult) time.Duration) time.Duration {
			return r.historyMedian(i, func(h historyRun) time.Duration { return f(h.recovery) })
		}
		cpu := rec(func(x recoveryResult) time.Duration { return x.cpu })
		base := rec(func(x recoveryResult) time.Duration { return x.baseCPU })
		p("| %s | %v | %v | %.2f µs | %v | %v |\n", t.name,
			rec(func(x recoveryResult) time.Duration { return x.elapsed }).Round(time.Millisecond),
			cpu.Round(time.Millisecond), micros((cpu-base)/time.Duration(historyClients*historyMissed)),
			rec(func(x recoveryResult) time.Duration { return x.baseElapsed }).Round(time.Millisecond),
			base.Round(time.Millisecond))
	}
	p("\n")
}

// historyMedian is the median over the runs of target i of f.
func (r *report) historyMedian(i int, f func(historyRun) time.Duration) time.Duration {
	return harness.MedianOf(r.historyRuns[i], f)
}
