package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The presence scenario: 10,000 members, each its own user, half on each
// of two wshub processes sharing their channels through NATS, with 100
// joins and leaves a second (a member leaves and a new user joins every
// 20 ms). It measures the presence messages on NATS (counted by a
// subscriber of this process), the servers' CPU and heap with presence
// on and off, and the time from a join (or a leave) on one server to the
// count of the other.

const (
	presenceMembers = 10_000
	presenceChurn   = 20 * time.Millisecond // a leave and a join each: 100 a second
	presenceWindow  = 20 * time.Second
	presenceProbes  = 60
)

// presenceTicks are the runs: presence off (0), then on with the default
// tick and a shorter one, then off again: the two runs without presence
// show how much the servers' CPU moves between runs on these shared cores.
var presenceTicks = []time.Duration{0, time.Second, 100 * time.Millisecond, 0}

// presenceRun is what one run measured. Off or on, every connection is
// filed under its user (Conn.SetUser): what differs is presence alone.
type presenceRun struct {
	tick         time.Duration   // 0: presence off
	msgs, bytes  float64         // presence messages on NATS, per second
	cpu          float64         // both servers, cores
	heap         int64           // both servers, after the members joined
	joined, left []time.Duration // probes that timed out are left out
}

func (r *report) presence() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	ns, err := startNATS()
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	// The NATS adapter's subject of topic "p:" under cmd/server's prefix.
	var msgs, bytes atomic.Int64
	if _, err := nc.Subscribe("bench."+base64.RawURLEncoding.EncodeToString([]byte("p:")), func(m *nats.Msg) {
		msgs.Add(1)
		bytes.Add(int64(len(m.Data)))
	}); err != nil {
		return err
	}
	nc.Flush()
	for _, tick := range presenceTicks {
		run, err := measurePresence(bin, ns.ClientURL(), tick, &msgs, &bytes)
		if err != nil {
			return fmt.Errorf("tick %v: %v", tick, err)
		}
		r.presRuns = append(r.presRuns, run)
	}
	return nil
}

// measurePresence runs two servers with presence at tick (off if 0).
func measurePresence(bin, natsURL string, tick time.Duration, msgs, bytes *atomic.Int64) (presenceRun, error) {
	run := presenceRun{tick: tick}
	args := []string{"-lib", "wshub", "-nats", natsURL, "-users"}
	if tick > 0 {
		args = append(args, "-presence", "-presence-tick", tick.String())
	}
	var servers [2]*harness.Server
	for i := range servers {
		s, err := harness.Start(harness.Process{Bin: bin, Args: args})
		if err != nil {
			return run, err
		}
		defer s.Stop()
		servers[i] = s
	}
	ctx := context.Background()
	var mu sync.Mutex // guards conns
	conns := make([]*load.Conn, presenceMembers)
	var next atomic.Int64 // users are u0, u1, ...
	dialOne := func() (*load.Conn, error) {
		n := next.Add(1)
		c, _, err := load.Dial(ctx, servers[n%2].URL(fmt.Sprintf("/room?user=u%d", n)), 1)
		if err != nil {
			return nil, err
		}
		return c[0], nil
	}
	defer func() {
		mu.Lock()
		load.CloseAll(slices.DeleteFunc(conns, func(c *load.Conn) bool { return c == nil }))
		mu.Unlock()
	}()
	var wg sync.WaitGroup
	var dialErr atomic.Pointer[error]
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < presenceMembers; i += 16 {
				c, err := dialOne()
				if err != nil {
					dialErr.Store(&err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		return run, *err
	}
	if tick > 0 {
		for _, s := range servers {
			if err := waitCount(s, "room", presenceMembers, 30*time.Second); err != nil {
				return run, err
			}
		}
	}
	// Past the ticks that report the joins, and what they leave for the
	// collector; the least of three samples, a second apart.
	time.Sleep(3*tick + 2*time.Second)
	for _, s := range servers {
		least := int64(-1)
		for range 3 {
			m, err := s.Memory(presenceMembers / 2)
			if err != nil {
				return run, err
			}
			if least < 0 || m.Heap < least {
				least = m.Heap
			}
			time.Sleep(time.Second)
		}
		run.heap += least
	}

	// The churn, until stop.
	stop := make(chan struct{})
	churned := make(chan error, 1)
	go func() {
		t := time.NewTicker(presenceChurn)
		defer t.Stop()
		for {
			select {
			case <-stop:
				churned <- nil
				return
			case <-t.C:
			}
			i := rand.N(presenceMembers)
			c, err := dialOne()
			if err != nil {
				churned <- err
				return
			}
			mu.Lock()
			old := conns[i]
			conns[i] = c
			mu.Unlock()
			old.Close()
		}
	}()
	time.Sleep(2 * time.Second) // into the steady state
	cpu0, err := serversCPU(servers[:])
	if err != nil {
		return run, err
	}
	m0, b0, t0 := msgs.Load(), bytes.Load(), time.Now()
	time.Sleep(presenceWindow)
	cpu1, err := serversCPU(servers[:])
	if err != nil {
		return run, err
	}
	elapsed := time.Since(t0).Seconds()
	run.msgs = float64(msgs.Load()-m0) / elapsed
	run.bytes = float64(bytes.Load()-b0) / elapsed
	run.cpu = (cpu1 - cpu0).Seconds() / elapsed
	if tick > 0 {
		if err := probePresence(&run, servers, tick); err != nil {
			return run, err
		}
	}
	close(stop)
	return run, <-churned
}

// probePresence joins a user to channel "probe" on the first server and
// times until the second counts it, then leaves and times until it does
// not, presenceProbes times, under the churn.
func probePresence(run *presenceRun, servers [2]*harness.Server, tick time.Duration) error {
	limit := 20 * tick
	for i := range presenceProbes {
		start := time.Now()
		c, _, err := load.Dial(context.Background(), servers[0].URL(fmt.Sprintf("/probe?user=probe%d", i)), 1)
		if err != nil {
			return err
		}
		if waitCount(servers[1], "probe", 1, limit) == nil {
			run.joined = append(run.joined, time.Since(start))
		}
		time.Sleep(time.Duration(rand.N(int64(tick)))) // a random phase of the tick
		start = time.Now()
		c[0].Close()
		if waitCount(servers[1], "probe", 0, limit) == nil {
			run.left = append(run.left, time.Since(start))
		} else if err := waitCount(servers[1], "probe", 0, 30*time.Second); err != nil {
			return err
		}
		time.Sleep(time.Duration(rand.N(int64(tick)))) // a random phase of the tick
	}
	slices.Sort(run.joined)
	slices.Sort(run.left)
	return nil
}

// waitCount waits until s counts users users in channel.
func waitCount(s *harness.Server, channel string, users int, d time.Duration) error {
	deadline := time.Now().Add(d)
	var got struct{ Connections, Users int }
	for {
		b, err := s.Get("/presence?channel=" + channel)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &got); err != nil {
			return err
		}
		if got.Users == users {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s counts %d users in %q after %v, want %d", s, got.Users, channel, d, users)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *report) writePresence(p printer) {
	p("10,000 members of one channel, each its own user, half on each of two wshub processes sharing it through NATS (`Options.ChannelPresence`, `broker/nats`; the nats-server runs in the measuring process), with 100 joins and leaves a second: every 20 ms a member leaves and a new user joins, on either process. Every connection is filed under its user (`Conn.SetUser`) in every row: what differs is presence alone. Presence messages are counted by a NATS subscriber of the measuring process; CPU is both servers' over %v of churn; heap is both servers' after the 10,000 joined and three ticks more, the least of three samples (each holds 5,000 members of its own and 5,000 of the other's). The runs go in the order of the rows. The probes join a user to another channel on the first server and time until the second counts it (join), then leave and time until it does not (leave), %d times, at random phases of the tick.\n\n", presenceWindow, presenceProbes)
	p("| presence | messages/s on NATS | bytes/s on NATS | servers' CPU | servers' heap | heap per member per server | join → count p50 / p99 | leave → count p50 / p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var off presenceRun
	for i, run := range r.presRuns {
		if run.tick == 0 {
			name := "off"
			if i == 0 {
				off = run // the heap's baseline
			} else {
				name = "off, again"
			}
			p("| %s | %.1f | %.0f | %.1f%% | %.1f MB | | | |\n", name, run.msgs, run.bytes, 100*run.cpu, float64(run.heap)/1e6)
			continue
		}
		perMember := float64(run.heap-off.heap) / 2 / presenceMembers
		p("| tick %v | %.1f | %.0f | %.1f%% | %.1f MB | %.0f B | %s | %s |\n", run.tick, run.msgs, run.bytes, 100*run.cpu, float64(run.heap)/1e6, perMember,
			pcts(run.joined), pcts(run.left))
	}
	p("\nThe heap per member is (heap with presence - heap without) / 2 servers / 10,000 members; `go test -run X -bench PresenceMemory .` in the core module measures the same state alone: bytes per member on the hub that holds it and on the others. The CPU presence adds is within the noise of the churn's own; `go test -run X -bench PresenceChurn .` measures it alone: a join and a leave, counted, sent and applied on the other hub.\n\n")
}

// pcts formats the p50 and p99 of sorted latencies, in milliseconds.
func pcts(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	at := func(q float64) float64 {
		return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
	}
	return fmt.Sprintf("%.0f / %.0f ms", at(0.5), at(0.99))
}
