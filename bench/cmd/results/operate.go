package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The admission and conflate scenarios: what the operators' options of
// issue 29 cost and save.
//
// admission: the server CPU of an upgrade (and its close) with the
// per-address limits on against off, examples/echo with and without
// -max-conns-per-addr and -upgrades-per-addr, set high enough that no
// upgrade is refused, so that every upgrade pays for the bookkeeping and
// none is spared the rest. -runs runs of each, interleaved; medians.
//
// conflate: a feed to feedMembers members of a room, of which feedSlow
// read slowly, with the room's slow-consumer policy SlowConflate against
// SlowDropOldest: the bytes queued for the members, and the messages the
// fast members got.

// admissionRounds of admissionConns upgrades make one run: 20,000
// upgrades, so that the CPU clock's 10 ms ticks are 0.1% of the total,
// without holding more than 5,000 descriptors in the load process.
const (
	admissionRounds = 4
	admissionConns  = 5000
)

// admissionOn are examples/echo's flags for the limits, far above what
// one loopback address does here: every upgrade is counted, none refused.
var admissionOn = []string{"-max-conns-per-addr", "100000", "-upgrades-per-addr", "1000000"}

type admissionRun struct {
	cpu  time.Duration // server CPU per upgrade, its close included
	rate float64       // upgrades per second
}

func (r *report) admission() error {
	echo, err := r.echoServer()
	if err != nil {
		return err
	}
	r.admissionRows = []target{
		{"off (examples/echo)", harness.Process{Bin: echo}, "/ws"},
		{"on (examples/echo -max-conns-per-addr 100000 -upgrades-per-addr 1000000)", harness.Process{Bin: echo, Args: admissionOn}, "/ws"},
	}
	r.admissionRuns, err = measureEach(r.runs, r.admissionRows, func(run int, t target, s *harness.Server) (admissionRun, error) {
		res, err := measureUpgrades(s, s.URL(t.path))
		log.Printf("admission run %d %-80s %6.1f µs/upgrade %6.0f upgrades/s", run+1, t.name, micros(res.cpu), res.rate)
		return res, err
	})
	return err
}

// measureUpgrades makes admissionRounds rounds of admissionConns upgrades
// to url, closing each round's connections before the next, and returns
// the server's CPU per upgrade over them all.
func measureUpgrades(s *harness.Server, url string) (admissionRun, error) {
	cpu0, err := s.CPU()
	if err != nil {
		return admissionRun{}, err
	}
	var dialing time.Duration
	for range admissionRounds {
		start := time.Now()
		cs, err := dial(url, admissionConns)
		dialing += time.Since(start)
		if err != nil {
			return admissionRun{}, err
		}
		load.CloseAll(cs)
		time.Sleep(time.Second) // the server closes its side too
	}
	cpu1, err := s.CPU()
	if err != nil {
		return admissionRun{}, err
	}
	n := admissionRounds * admissionConns
	return admissionRun{cpu: cpu1.Sub(cpu0).Total() / time.Duration(n), rate: float64(n) / dialing.Seconds()}, nil
}

func (r *report) writeAdmission(p printer) {
	p("examples/echo, net/http door, without and with the per-address limits (`MaxConnsPerAddr`, `UpgradesPerAddr`), set far above what the load makes so that every upgrade is counted and none refused; ")
	p("every upgrade comes from 127.0.0.1, so the table holds one address (`BenchmarkAddrTableMemory` measures it at 65,536). ")
	p("A run: %d rounds of %s upgrades, 100 in flight, each round closed before the next; the server's CPU (utime+stime from `/proc/PID/stat`) over the run, per upgrade, its close included. ", admissionRounds, thousands(admissionConns))
	p("Each server %d times, interleaved; medians.\n\n", r.runs)
	p("| per-address limits | server CPU per upgrade | (min–max) | ratio | upgrades/s |\n|---|---:|---:|---:|---:|\n")
	var base float64
	for i, t := range r.admissionRows {
		rs := r.admissionRuns[i]
		c := harness.MedianOf(rs, func(x admissionRun) float64 { return float64(x.cpu) })
		byCPU := func(a, b admissionRun) int { return cmp.Compare(a.cpu, b.cpu) }
		lo, hi := slices.MinFunc(rs, byCPU).cpu, slices.MaxFunc(rs, byCPU).cpu
		if i == 0 {
			base = c
		}
		p("| %s | %.1f µs | %.1f–%.1f | %s | %.0f |\n", t.name, c/1000, micros(lo), micros(hi), ratio(c, base),
			harness.MedianOf(rs, func(x admissionRun) float64 { return x.rate }))
	}
	if len(r.admissionRuns) == 2 {
		var rs []string
		for j := range r.admissionRuns[0] {
			rs = append(rs, ratio(float64(r.admissionRuns[1][j].cpu), float64(r.admissionRuns[0][j].cpu)))
		}
		p("\nOn against off, run by run: %v.\n", rs)
		on := harness.MedianOf(r.admissionRuns[1], func(x admissionRun) float64 { return float64(x.cpu) })
		off := harness.MedianOf(r.admissionRuns[0], func(x admissionRun) float64 { return float64(x.cpu) })
		verdict := "met"
		if on > 1.05*off {
			verdict = "not met"
		}
		p("Issue 29's aim, on within 5%% of off in server CPU per upgrade (medians): %s× (%s).\n", ratio(on, off), verdict)
	}
	p("\n")
}

// The feed: feedMembers members of the room, feedSlow of them slow: they
// read one message every feedSlowEvery through a receive buffer of
// feedRcvbuf bytes. The room's queue bound is feedQueue, and the
// server's sockets' send buffers are fixed at feedSndbuf (cmd/server
// -sndbuf): on loopback the kernel would otherwise let each grow to 4 MiB
// and hold the whole backlog itself, and no policy would act.
const (
	feedMembers   = 10000
	feedSlow      = 1000
	feedSlowEvery = 500 * time.Millisecond
	feedRcvbuf    = 4096
	feedQueue     = 64 << 10
	feedSndbuf    = 16 << 10
)

// A feedCase is a steady feed (a price, a position): messages of size
// bytes, one every every.
type feedCase struct {
	messages, size int
	every          time.Duration
}

func (c feedCase) String() string {
	return fmt.Sprintf("%d × %d B, one every %v", c.messages, c.size, c.every)
}

// feedCases: a feed the hub delivers to every member between two
// messages on these cores, and one five times as fast, which it does not.
var feedCases = []feedCase{{200, 1024, 100 * time.Millisecond}, {1000, 128, 20 * time.Millisecond}}

// feedPolicies are the room's policies the conflate scenario compares.
var feedPolicies = []string{"conflate", "drop-oldest"}

// feedTarget is one row of the conflate scenario: a policy and a feed.
type feedTarget struct {
	target
	feed feedCase
}

type feedRun struct {
	peakQueued, endQueued int64         // Stats.QueuedBytes: the most sampled, and once the fast members had the last message
	fastGot, fastLost     int64         // messages the fast members got, and the gaps and disorder in them
	slowGot               int64         // messages the slow members read meanwhile
	dropped, conflated    uint64        // what the policy dropped and replaced
	elapsed               time.Duration // from the first publish until the fast members had what they got
	cpu                   time.Duration // the server's CPU over it
}

// queueStats is cmd/server's /stats?queue=1.
type queueStats struct {
	QueuedBytes int64  `json:"queued_bytes"`
	Dropped     uint64 `json:"dropped"`
	Conflated   uint64 `json:"conflated"`
}

func getQueueStats(s *harness.Server) (queueStats, error) {
	var st queueStats
	b, err := s.Get("/stats?queue=1")
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	return st, err
}

func (r *report) conflate() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	r.feedRows = nil
	for _, c := range feedCases {
		for _, policy := range feedPolicies {
			p := harness.Process{Bin: bin, Args: []string{"-lib", "wshub", "-slow", policy, "-max-queued", fmt.Sprint(feedQueue), "-sndbuf", fmt.Sprint(feedSndbuf)}}
			r.feedRows = append(r.feedRows, feedTarget{target{policy, p, "/room"}, c})
		}
	}
	r.feedRuns, err = harness.Interleave(r.runs, r.feedRows, func(run int, t feedTarget) (feedRun, error) {
		s, err := harness.Start(t.p)
		if err != nil {
			return feedRun{}, err
		}
		defer s.Stop()
		res, err := measureFeed(s, s.URL(t.path), t.feed)
		if err != nil {
			return res, fmt.Errorf("%s, %v: %w", t.name, t.feed, err)
		}
		log.Printf("conflate run %d %-12s %v: queued peak %s end %s, fast got %d of %d (lost %d) in %v, slow read %d, dropped %d, conflated %d",
			run+1, t.name, t.feed, byteSize(float64(res.peakQueued)), byteSize(float64(res.endQueued)), res.fastGot, int64(feedMembers-feedSlow)*int64(t.feed.messages), res.fastLost,
			res.elapsed.Round(time.Millisecond), res.slowGot, res.dropped, res.conflated)
		return res, nil
	})
	return err
}

func measureFeed(s *harness.Server, url string, feed feedCase) (feedRun, error) {
	var res feedRun
	fast, err := dial(url, feedMembers-feedSlow)
	if err != nil {
		return res, err
	}
	defer load.CloseAll(fast)
	slow, _, err := load.DialSlow(context.Background(), url, feedSlow, feedRcvbuf)
	if err != nil {
		return res, err
	}
	defer load.CloseAll(slow)
	recv := load.Receive(fast)
	var slowGot atomic.Int64
	counting := atomic.Bool{}
	for _, c := range slow {
		go func() {
			buf := make([]byte, 512)
			for {
				time.Sleep(feedSlowEvery)
				if _, err := c.ReadMessage(buf); err != nil {
					return
				}
				if counting.Load() {
					slowGot.Add(1)
				}
			}
		}()
	}
	publish := func(n int, every time.Duration) error {
		_, err := s.Get(fmt.Sprintf("/publish?n=%d&size=%d&every=%v", n, feed.size, every))
		return err
	}
	// Until one message reaches every fast member: the last to join take
	// a moment.
	nFast := int64(len(fast))
	for try := 0; ; try++ {
		if try == 30 {
			return res, fmt.Errorf("warm-up: not every member received a message in 30 tries")
		}
		before := recv.Received()
		if err := publish(1, 0); err != nil {
			return res, err
		}
		if recv.WaitReceived(before+nFast, time.Second) {
			break
		}
	}
	base0, err := getQueueStats(s)
	if err != nil {
		return res, err
	}
	// The queued bytes, sampled through the bursts.
	var peak atomic.Int64
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if st, err := getQueueStats(s); err == nil && st.QueuedBytes > peak.Load() {
				peak.Store(st.QueuedBytes)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	counting.Store(true)
	lost0 := recv.Lost() + recv.OutOfOrder()
	got0 := recv.Received()
	cpu0, err := s.CPU()
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := publish(feed.messages, feed.every); err != nil {
		return res, err
	}
	// Every message to every fast member, or as many as come: until none
	// came for half a second.
	if !recv.WaitReceived(got0+nFast*int64(feed.messages), 2*time.Second) {
		for last := int64(-1); recv.Received() != last; time.Sleep(500 * time.Millisecond) {
			last = recv.Received()
		}
	}
	res.elapsed = time.Since(start)
	cpu1, err := s.CPU()
	if err != nil {
		return res, err
	}
	end, err := getQueueStats(s)
	close(stop)
	sampling.Wait()
	if err != nil {
		return res, err
	}
	res.cpu = cpu1.Sub(cpu0).Total()
	res.peakQueued, res.endQueued = max(peak.Load(), end.QueuedBytes), end.QueuedBytes
	res.fastGot, res.fastLost = recv.Received()-got0, recv.Lost()+recv.OutOfOrder()-lost0
	res.slowGot = slowGot.Load()
	res.dropped, res.conflated = end.Dropped-base0.Dropped, end.Conflated-base0.Conflated
	return res, nil
}

func (r *report) writeConflate(p printer) {
	nFast := feedMembers - feedSlow
	p("cmd/server (wshub, net/http door), one room of %s members held by the load process, %s of them slow: each reads one message every %v through a %d-byte socket receive buffer (set before the handshake). ",
		thousands(feedMembers), thousands(feedSlow), feedSlowEvery, feedRcvbuf)
	p("The server's sockets have their send buffers fixed at %d bytes (`-sndbuf`; the kernel doubles it), so that a slow member's backlog waits in the hub's queue, bounded at %d KiB by `MaxQueuedBytes`, rather than in the kernel's buffers, which on loopback grow to 4 MiB per socket. ", feedSndbuf, feedQueue>>10)
	p("A feed is one message at a time at a steady pace (`/publish?every=`), as a price or a position is. ")
	p("The room's slow-consumer policy (`ChannelPolicy`, cmd/server `-slow`): `SlowConflate` replaces a member's queued message of the room with the newest, `SlowDropOldest` drops a member's oldest queued messages to make room when its queue is full. ")
	p("Bytes queued is `Stats.QueuedBytes` (every member's queue together), sampled every 20 ms during the feed (peak) and once the fast members had the last message (end). ")
	p("\"Lost\" counts the gaps in the sequence numbers the fast members got. ")
	p("Every server started afresh for each row, the rows %d times, interleaved; medians.\n\n", r.runs)
	p("| feed | slow members' policy | bytes queued, peak | at the end | fast members got | of | lost | slow members read | dropped | conflated | server CPU |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, t := range r.feedRows {
		rs := r.feedRuns[i]
		med := func(f func(feedRun) float64) float64 { return harness.MedianOf(rs, f) }
		p("| %v | %s | %s | %s | %.0f | %d | %.0f | %.0f | %.0f | %.0f | %v |\n", t.feed, t.name,
			byteSize(med(func(x feedRun) float64 { return float64(x.peakQueued) })),
			byteSize(med(func(x feedRun) float64 { return float64(x.endQueued) })),
			med(func(x feedRun) float64 { return float64(x.fastGot) }), nFast*t.feed.messages,
			med(func(x feedRun) float64 { return float64(x.fastLost) }),
			med(func(x feedRun) float64 { return float64(x.slowGot) }),
			med(func(x feedRun) float64 { return float64(x.dropped) }),
			med(func(x feedRun) float64 { return float64(x.conflated) }),
			time.Duration(med(func(x feedRun) float64 { return float64(x.cpu) })).Round(time.Millisecond))
	}
	p("\nThe peak is mostly the moment after a publish, when every member's queue holds the new message until the loops write it; at the end, what is left is the slow members' backlog. ")
	p("Under `SlowConflate` a member counts as behind as soon as a message of the room still waits in its queue when the next one comes, the loops not having written it yet: when the hub takes longer than the gap between two messages to write them all, fast members get the newest message in place of one they would have had a little later, which is what conflation means, but also a loss for them (\"lost\"). ")
	p("`SlowDropOldest` delivers every message to the fast members, and holds up to `MaxQueuedBytes` for each slow one.\n\n")
}

// byteSize formats a byte count for the feed's table: in MB from 10 MB.
func byteSize(b float64) string {
	if b >= 10e6 {
		return fmt.Sprintf("%.1f MB", b/1e6)
	}
	return kb(b)
}
