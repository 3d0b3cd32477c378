package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The connect, cluster and attack scenarios.

type connectResult struct {
	rate float64       // upgrades per second
	cpu  time.Duration // server CPU per upgrade, closing included
}

// connect times 5,000 upgrades, 100 in flight at a time.
func (r *report) connect() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	ts := libTargets(bin, r.libs, "/echo")
	runs, err := measureEach(1, ts, func(_ int, t target, s *harness.Server) (connectResult, error) {
		c, err := measureConnect(s, s.URL(t.path), 5000)
		log.Printf("connect %s: %.0f upgrades/s", t.name, c.rate)
		return c, err
	})
	if err != nil {
		return err
	}
	r.connects = make(map[string]connectResult)
	for i, t := range ts {
		r.connects[t.name] = runs[i][0]
	}
	return nil
}

// measureConnect upgrades n connections to url on s, then closes them.
func measureConnect(s *harness.Server, url string, n int) (connectResult, error) {
	cpu0, err := s.CPU()
	if err != nil {
		return connectResult{}, err
	}
	start := time.Now()
	cs, err := dial(url, n)
	elapsed := time.Since(start)
	if err != nil {
		return connectResult{}, err
	}
	load.CloseAll(cs)
	time.Sleep(time.Second) // the server closes its side too
	cpu1, err := s.CPU()
	if err != nil {
		return connectResult{}, err
	}
	return connectResult{float64(n) / elapsed.Seconds(), cpu1.Sub(cpu0).Total() / time.Duration(n)}, nil
}

func (r *report) writeConnect(p printer) {
	p("5,000 upgrades, 100 in flight at a time, then closed. The rate is mostly bound by the load generator on these shared cores; the server's CPU per connection (upgrade and close) is the steadier figure.\n\n")
	p("| library | upgrades/s | ratio | server CPU per connection | ratio |\n|---|---:|---:|---:|---:|\n")
	base := r.connects["wshub"]
	for _, lib := range r.libs {
		c := r.connects[lib]
		p("| %s | %.0f | %s | %.1f µs | %s |\n", lib, c.rate, ratio(c.rate, base.rate), micros(c.cpu), ratio(float64(c.cpu), float64(base.cpu)))
	}
	p("\n")
}

func (r *report) cluster() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	ns, err := startNATS()
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	one, err := harness.Start(harness.Process{Bin: bin, Args: []string{"-lib", "wshub"}})
	if err != nil {
		return err
	}
	r.cluster1, err = measureBroadcast([]*harness.Server{one}, 10000, bcastOpts{cases: bcastCases})
	one.Stop()
	if err != nil {
		return fmt.Errorf("one hub: %v", err)
	}
	var two []*harness.Server
	for range 2 {
		s, err := harness.Start(harness.Process{Bin: bin, Args: []string{"-lib", "wshub", "-nats", ns.ClientURL()}})
		if err != nil {
			return err
		}
		defer s.Stop()
		two = append(two, s)
	}
	r.cluster2, err = measureBroadcast(two, 10000, bcastOpts{cases: bcastCases})
	if err != nil {
		return fmt.Errorf("two hubs: %v", err)
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

func (r *report) writeCluster(p printer) {
	p("10,000 subscribers in one room: all on one wshub process, then half on each of two sharing the room through NATS (`Options.Broker`, `broker/nats`; the nats-server runs in the measuring process), publishes sent to the first.\n\n")
	p("| case | one hub, deliveries/s | two hubs, deliveries/s | two / one |\n|---|---:|---:|---:|\n")
	for i, c := range bcastCases {
		p("| %v | %.0f | %.0f | %s |\n", c, r.cluster1[i].rate, r.cluster2[i].rate, ratio(r.cluster2[i].rate, r.cluster1[i].rate))
	}
	p("\n")
}

// attackCfg is the attack scenario: 2,000 clients each hold all but the
// last byte of a 1 MiB message (at most the default message limit of
// wshub), then finish it.
var attackCfg = load.AttackConfig{Conns: 2000, Size: 1 << 20, Echo: 256, Hold: 15 * time.Second, MaxHold: 25 * time.Second, Finish: true, FinishWithin: 60 * time.Second}

// attack measures each library's RSS growth under attackCfg, a control
// client's echoes meanwhile, and the attackers' messages after they finish;
// with wshub, also examples/echo on both doors, with its defaults.
func (r *report) attack() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	ts := libTargets(bin, r.libs, "/echo")
	if r.hasLib("wshub") {
		echo, err := r.echoServer()
		if err != nil {
			return err
		}
		ts = append(ts,
			target{"examples/echo", harness.Process{Bin: echo}, "/ws"},
			target{"examples/echo -listener", harness.Process{Bin: echo, Args: []string{"-listener"}}, "/ws"})
	}
	runs, err := measureEach(1, ts, func(_ int, t target, s *harness.Server) (load.AttackResult, error) {
		cfg := attackCfg
		cfg.URL, cfg.PID = s.URL(t.path), s.PID()
		res, err := load.Attack(context.Background(), cfg)
		total, _ := res.Growth()
		log.Printf("attack %s: +%.0f MB (peak at %v of %v), %.0f MB written, %d closed in the hold (%v), control %d echoes %d failed, finished %d/%d in %v (%v)",
			t.name, total/1e6, res.PeakAt.Round(100*time.Millisecond), res.Held.Round(100*time.Millisecond), float64(res.Written)/1e6, res.ClosedInHold, res.HoldError,
			res.Echoes, res.EchoErrors, res.Finished, res.Attackers, res.FinishedIn.Round(100*time.Millisecond), res.FinishError)
		return res, err
	})
	if err != nil {
		return err
	}
	r.attacks = make(map[string]load.AttackResult)
	r.attackRows = nil
	for i, t := range ts {
		r.attacks[t.name] = runs[i][0]
		r.attackRows = append(r.attackRows, t.name)
	}
	return nil
}

// writeAttack writes the attack scenario's section.
func (r *report) writeAttack(p printer) {
	c := attackCfg
	if r.prebuilt {
		p("With servers built from another tree (`-server`, `-echo`). ")
	}
	p("%d clients each send all but the last byte of a %d KiB binary message (one masked frame) and hold it for %v, longer (up to %v) until the server's RSS has not risen by 1%% (10 MB at least) for 3 s, ", c.Conns, c.Size>>10, c.Hold, c.MaxHold)
	p("while one control client echoes %d-byte messages in a closed loop; then the attackers send the rest and read their message back (%v allowed). ", c.Echo, c.FinishWithin)
	p("Every server with its defaults, each in its own process: the libraries through `cmd/server`'s `/echo`, and `examples/echo` (`go build ./examples/echo`) on wshub's `net/http` door and with `-listener` on its own. ")
	p("wshub's inbound budget (`MaxTotalBufferedBytes`, 64 MiB) stops reading the attackers it cannot hold; melody's default message limit is 512 bytes, so it closes them at once (1009); gorilla has no limit unless `SetReadLimit`, gws's `ReadMaxPayloadSize` is 16 MiB. ")
	p("RSS growth is the peak, sampled from `/proc/PID/statm` every 200 ms, minus the RSS before the attackers connected; \"connecting\" is the part of it the %d connections cost before they sent anything; \"peak at\" is when in the hold the peak was first seen, and how long the hold lasted. ", c.Conns)
	p("\"Written\" is what the attackers got into their sockets during the hold, of %.0f MB; what a server does not read waits in kernel socket buffers (not in RSS) or is not sent. ", float64(c.Conns)*float64(c.Size)/1e6)
	p("`go run ./cmd/attack -url ws://HOST:PORT/PATH -pid PID -finish` runs the same attack against any echo server.\n\n")
	p("| server | RSS growth | per attacker | connecting | peak at | written | closed in the hold | control echoes | failed | p50 | p99 | messages back whole | in |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range r.attackRows {
		a := r.attacks[name]
		total, per := a.Growth()
		p("| %s | %.0f MB | %s | %.0f MB | %.1f of %.1f s | %.0f MB | %d | %d | %d | %v | %v | %d of %d | %.1f s |\n", name, total/1e6, kb(per),
			float64(a.RSSIdle-a.RSSBefore)/1e6, a.PeakAt.Seconds(), a.Held.Seconds(), float64(a.Written)/1e6, a.ClosedInHold,
			a.Echoes, a.EchoErrors, latency(a.P50), latency(a.P99), a.Finished, a.Attackers, a.FinishedIn.Seconds())
	}
	var notes []string
	for _, name := range r.attackRows {
		a := r.attacks[name]
		if a.HoldError != nil {
			notes = append(notes, fmt.Sprintf("- %s: %d attackers closed during the hold; the first: %v\n", name, a.ClosedInHold, a.HoldError))
		}
		if a.FinishError != nil {
			notes = append(notes, fmt.Sprintf("- %s: %d messages did not come back whole; the first: %v\n", name, a.FinishFailed, a.FinishError))
		}
	}
	if len(notes) > 0 {
		p("\n%s", strings.Join(notes, ""))
	}
	p("\n")
}
