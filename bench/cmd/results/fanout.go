package main

import (
	"encoding/json"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
)

// The broadcast scenario: 10,000 subscribers in one room, messages of 64 B
// and 1 KiB published one at a time, in bursts of 20 back to back, and in
// batches of 20 (wshub's Channel.PublishBatch); for each case the server's
// CPU per delivery, deliveries per write system call, deliveries per
// second and the latency from publish to receipt, against the floor
// (cmd/server -lib floor) measured in the same run. Each server -runs
// times, interleaved; medians.

// fanoutSubs is the number of subscribers.
const fanoutSubs = 10000

// fanoutSizes are the message sizes.
var fanoutSizes = []int{64, 1024}

// The modes of publishing, for each size.
var (
	modeSingle = bcastCase{burst: 1}
	modeBurst  = bcastCase{burst: 20}
	modeBatch  = bcastCase{burst: 20, batch: true}
)

// sized is mode m with messages of size bytes.
func sized(m bcastCase, size int) bcastCase {
	m.size = size
	return m
}

// fanoutTarget is one server the scenario measures.
type fanoutTarget struct {
	name  string
	p     harness.Process
	modes []bcastCase
	// stats: the server counts its writes in /stats (wshub, the floor);
	// the others' are read from /proc/PID/io.
	stats bool
}

// fanoutKey names a case of a target.
type fanoutKey struct {
	target string
	c      bcastCase
}

// fanoutTargets are the servers measured, in order: wshub on both doors,
// with FlushDelay, an older core (-before), the floor, the peers of -libs.
func (r *report) fanoutTargets() ([]fanoutTarget, error) {
	bin, err := r.server()
	if err != nil {
		return nil, err
	}
	server := func(args ...string) harness.Process { return harness.Process{Bin: bin, Args: args} }
	all := []bcastCase{modeSingle, modeBurst, modeBatch}
	var ts []fanoutTarget
	if r.hasLib("wshub") {
		ts = append(ts,
			fanoutTarget{name: "wshub", p: server("-lib", "wshub"), modes: all, stats: true},
			fanoutTarget{name: "wshub -listener", p: harness.Process{Bin: bin, Args: []string{"-lib", "wshub", "-listener"}, HTTPPort: true}, modes: all, stats: true},
			fanoutTarget{name: "wshub FlushDelay 1ms", p: server("-lib", "wshub", "-flushdelay", "1ms"), modes: all, stats: true})
		if r.before != "" {
			ts = append(ts, fanoutTarget{name: "wshub before", p: harness.Process{Bin: r.before, Args: []string{"-lib", "wshub"}}, modes: all, stats: true})
		}
	}
	ts = append(ts, fanoutTarget{name: "floor", p: server("-lib", "floor"), modes: []bcastCase{modeSingle, modeBurst}, stats: true})
	for _, lib := range r.libs {
		if lib != "wshub" {
			ts = append(ts, fanoutTarget{name: lib, p: server("-lib", lib), modes: []bcastCase{modeSingle, modeBurst}})
		}
	}
	return ts, nil
}

// broadcast measures every target, -runs times in turn, and keeps each
// case's runs for the medians.
func (r *report) broadcast() error {
	ts, err := r.fanoutTargets()
	if err != nil {
		return err
	}
	r.fanoutRows = ts
	r.fanout = make(map[fanoutKey][]bcastResult)
	_, err = harness.Interleave(r.runs, ts, func(run int, t fanoutTarget) (struct{}, error) {
		s, err := harness.Start(t.p)
		if err != nil {
			return struct{}{}, err
		}
		res, err := measureFanout(s, t)
		s.Stop()
		if err != nil {
			return struct{}{}, fmt.Errorf("%s: %v", t.name, err)
		}
		for k, v := range res {
			r.fanout[k] = append(r.fanout[k], v)
		}
		k := fanoutKey{t.name, sized(modeBurst, 64)}
		log.Printf("broadcast run %d %s: 64 B bursts %.0f deliveries/s, %.2f µs CPU per delivery, %.1f per write",
			run+1, t.name, res[k].rate, micros(res[k].cpu), res[k].perWrite)
		return struct{}{}, nil
	})
	if err != nil {
		return err
	}
	r.bcasts = r.fanoutByLib()
	return nil
}

// measureFanout subscribes fanoutSubs connections to s's room and runs
// each size and mode of t.
func measureFanout(s *harness.Server, t fanoutTarget) (map[fanoutKey]bcastResult, error) {
	var cases []bcastCase
	for _, size := range fanoutSizes {
		for _, m := range t.modes {
			cases = append(cases, sized(m, size))
		}
	}
	writes := func() (uint64, error) {
		if t.stats {
			return countedWrites(s)
		}
		return harness.WriteCalls(s.PID())
	}
	res, err := measureBroadcast([]*harness.Server{s}, fanoutSubs, bcastOpts{cases: cases, writes: writes, countLoss: true})
	if err != nil {
		return nil, err
	}
	out := make(map[fanoutKey]bcastResult)
	for i, c := range cases {
		out[fanoutKey{t.name, c}] = res[i]
	}
	return out, nil
}

// countedWrites reads the write system calls the server counted itself
// from its /stats?counts=1, which does not collect.
func countedWrites(s *harness.Server) (uint64, error) {
	b, err := s.Get("/stats?counts=1")
	if err != nil {
		return 0, err
	}
	var st struct {
		Writes *uint64 `json:"writes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, err
	}
	if st.Writes == nil {
		return 0, fmt.Errorf("%s: /stats has no writes", s)
	}
	return *st.Writes, nil
}

// median returns the median of the runs of a case, field by field, and
// the losses of every run.
func median(rs []bcastResult) bcastResult {
	var lost int64
	for _, x := range rs {
		lost += x.lost
	}
	return bcastResult{
		rate:     harness.MedianOf(rs, func(x bcastResult) float64 { return x.rate }),
		cpu:      harness.MedianOf(rs, func(x bcastResult) time.Duration { return x.cpu }),
		perWrite: harness.MedianOf(rs, func(x bcastResult) float64 { return x.perWrite }),
		p50:      harness.MedianOf(rs, func(x bcastResult) time.Duration { return x.p50 }),
		p99:      harness.MedianOf(rs, func(x bcastResult) time.Duration { return x.p99 }),
		lost:     lost,
	}
}

// fanoutByLib is what the broadcast plot shows: each library's medians
// for bcastCases.
func (r *report) fanoutByLib() map[string][]bcastResult {
	out := make(map[string][]bcastResult)
	for _, lib := range r.libs {
		for _, c := range bcastCases {
			out[lib] = append(out[lib], median(r.fanout[fanoutKey{lib, c}]))
		}
	}
	return out
}

// writeFanout writes the broadcast section.
func (r *report) writeFanout(p printer) {
	p("10,000 subscribers (fanoutSubs) in one room, held by the load process; per case 20 messages, three times, each request to `/publish` waited for until every subscriber has its messages. ")
	p("Each figure is the median of %d runs, the servers measured in turn in each run. ", r.runs)
	p("Server CPU is utime+stime from `/proc/PID/stat` over the case, per delivery (HTTP requests to publish included); deliveries per write count wshub's and the floor's write system calls (`Stats.Writes`, `/stats`), the others' from `/proc/PID/io` (`syscw`). ")
	p("Latency is from the publish (the time stamped into each message as the server made it) to its receipt by the subscriber's reader, over every delivery of the case; ")
	p("with 10,000 reader goroutines sharing the two cores with the server, most of it is the load process's, so compare it within the table, not with other machines. ")
	p("\"one at a time\" waits for each message to arrive before the next request; \"bursts of 20\" are 20 `Publish` calls back to back in one request; \"batches of 20\" one `Channel.PublishBatch` of 20. ")
	p("The floor (`cmd/server -lib floor`) is no library: each message framed once and written from the publishing goroutine straight to every socket (spread over GOMAXPROCS goroutines), one `write` per member for a single message and one `writev` of the 20 for a burst. ")
	p("wshub is measured on its `net/http` door and on its own listener (`-listener`), with `FlushDelay` 0 (the default) and 1 ms")
	if r.before != "" {
		p(", and as \"wshub before\", `cmd/server` built on an older core (`-before %s`)", r.before)
	}
	p(". \"lost\" counts, over every run, messages that never arrived or arrived out of order (every subscriber checks its sequence numbers).\n\n")
	for _, size := range fanoutSizes {
		p("### %d B messages\n\n", size)
		p("| server | case | server CPU per delivery | × floor | deliveries per write | deliveries/s | × gws | p50 | p99 | lost |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range r.fanoutRows {
			for _, m := range t.modes {
				res := median(r.fanout[fanoutKey{t.name, sized(m, size)}])
				// A batch is measured against the others' bursts.
				peer := sized(modeSingle, size)
				if m.burst > 1 {
					peer = sized(modeBurst, size)
				}
				floor := median(r.fanout[fanoutKey{"floor", peer}])
				gws := median(r.fanout[fanoutKey{"gws", peer}])
				p("| %s | %s | %.2f µs | %s | %.1f | %.0f | %s | %v | %v | %d |\n", t.name, m.mode(), micros(res.cpu),
					ratio(float64(res.cpu), float64(floor.cpu)), res.perWrite, res.rate, ratio(res.rate, gws.rate),
					latency(res.p50), latency(res.p99), res.lost)
			}
		}
		p("\n")
	}
	if runs := r.fanout[fanoutKey{"wshub", sized(modeBurst, 64)}]; len(runs) > 1 {
		var cpus, rates []string
		for _, x := range runs {
			cpus = append(cpus, fmt.Sprintf("%.2f µs", micros(x.cpu)))
			rates = append(rates, fmt.Sprintf("%.0f", x.rate))
		}
		p("The runs of wshub's 64 B bursts (net/http), in order: server CPU per delivery %s; deliveries/s %s.\n\n", strings.Join(cpus, ", "), strings.Join(rates, ", "))
	}
	r.writeFanoutAim(p)
	p("![Deliveries per second per library](broadcast.svg)\n\n")
}

// writeFanoutAim says whether issue 14's aim is met, from the medians.
func (r *report) writeFanoutAim(p printer) {
	w := median(r.fanout[fanoutKey{"wshub", sized(modeBurst, 64)}])
	g := median(r.fanout[fanoutKey{"gws", sized(modeBurst, 64)}])
	if w.rate == 0 || g.rate == 0 {
		return
	}
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "not met"
	}
	p("Issue 14's aim, 64 B bursts of 20 through the `net/http` door: server CPU per delivery %.2f µs (at most 1.0 µs: %s); %.1f× gws's deliveries/s (at least 2×: %s); %d messages lost or out of order",
		micros(w.cpu), met(w.cpu <= time.Microsecond), w.rate/g.rate, met(w.rate >= 2*g.rate), w.lost)
	single := median(r.fanout[fanoutKey{"wshub", sized(modeSingle, 64)}])
	if before := r.fanout[fanoutKey{"wshub before", sized(modeSingle, 64)}]; before != nil {
		b := median(before)
		p("; single publishes' p99 %v against %v before (no worse: %s)", latency(single.p99), latency(b.p99), met(single.p99 <= b.p99))
	}
	p(".\n\n")
}
