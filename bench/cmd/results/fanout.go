package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wshub/wshub/bench/load"
)

// The broadcast scenario: 10,000 subscribers in one room, messages of 64 B
// and 1 KiB published one at a time, in bursts of 20 back to back, and in
// batches of 20 (wshub's Channel.PublishBatch); for each case the server's
// CPU per delivery, deliveries per write system call, deliveries per
// second and the latency from publish to receipt, against the floor
// (cmd/server -lib floor) measured in the same run.

// fanoutSubs is the number of subscribers.
const fanoutSubs = 10000

// fanoutSizes are the message sizes.
var fanoutSizes = []int{64, 1024}

// fanoutMode is how a case publishes its 20 messages.
type fanoutMode struct {
	name  string
	burst int  // messages per /publish request
	batch bool // as one batch (&batch=1)
}

var (
	modeSingle = fanoutMode{"one at a time", 1, false}
	modeBurst  = fanoutMode{"bursts of 20", 20, false}
	modeBatch  = fanoutMode{"batches of 20", 20, true}
)

// fanoutTarget is one server the scenario measures.
type fanoutTarget struct {
	name  string
	bin   string // "" for the report's cmd/server
	args  []string
	modes []fanoutMode
	// stats: the server counts its writes in /stats (wshub, the floor);
	// the others' are read from /proc/PID/io.
	stats bool
}

// fanoutResult is one case of one run.
type fanoutResult struct {
	rate     float64       // deliveries per second
	cpu      time.Duration // server CPU per delivery
	perWrite float64       // deliveries per write system call
	p50, p99 time.Duration // publish to receipt
	lost     int64         // messages lost or out of order
}

// fanoutKey names a case of a target.
type fanoutKey struct {
	target string
	size   int
	mode   string
}

// fanoutTargets are the servers measured, in order: wshub on both doors,
// with FlushDelay, an older core (-before), the floor, the peers of -libs.
func (r *report) fanoutTargets() []fanoutTarget {
	all := []fanoutMode{modeSingle, modeBurst, modeBatch}
	var ts []fanoutTarget
	if slices.Contains(r.libs, "wshub") {
		ts = append(ts,
			fanoutTarget{name: "wshub", args: []string{"-lib", "wshub"}, modes: all, stats: true},
			fanoutTarget{name: "wshub -listener", args: []string{"-lib", "wshub", "-listener"}, modes: all, stats: true},
			fanoutTarget{name: "wshub FlushDelay 1ms", args: []string{"-lib", "wshub", "-flushdelay", "1ms"}, modes: all, stats: true})
		if r.before != "" {
			ts = append(ts, fanoutTarget{name: "wshub before", bin: r.before, args: []string{"-lib", "wshub"}, modes: all, stats: true})
		}
	}
	ts = append(ts, fanoutTarget{name: "floor", args: []string{"-lib", "floor"}, modes: []fanoutMode{modeSingle, modeBurst}, stats: true})
	for _, lib := range r.libs {
		if lib != "wshub" {
			ts = append(ts, fanoutTarget{name: lib, args: []string{"-lib", lib}, modes: []fanoutMode{modeSingle, modeBurst}})
		}
	}
	return ts
}

// broadcast measures every target, -runs times in turn, and keeps each
// case's runs for the medians.
func (r *report) broadcast() error {
	r.fanout = make(map[fanoutKey][]fanoutResult)
	r.fanoutRows = r.fanoutTargets()
	for run := range r.runs {
		for _, t := range r.fanoutRows {
			bin := t.bin
			if bin == "" {
				bin = r.bin
			}
			s, err := startServer(bin, t.args...)
			if err != nil {
				return err
			}
			res, err := measureFanout(s, t)
			s.stop()
			if err != nil {
				return fmt.Errorf("%s: %v", t.name, err)
			}
			for k, v := range res {
				r.fanout[k] = append(r.fanout[k], v)
			}
			k := fanoutKey{t.name, 64, modeBurst.name}
			log.Printf("broadcast run %d %s: 64 B bursts %.0f deliveries/s, %.2f µs CPU per delivery, %.1f per write",
				run+1, t.name, res[k].rate, micros(res[k].cpu), res[k].perWrite)
		}
	}
	r.bcasts = r.fanoutByLib()
	return nil
}

// measureFanout subscribes fanoutSubs connections to s's room and runs
// each size and mode of t: 20 messages, three times, each request waited
// for until every subscriber has its messages.
func measureFanout(s *server, t fanoutTarget) (map[fanoutKey]fanoutResult, error) {
	cs, err := dial(s.url("/room"), fanoutSubs)
	if err != nil {
		return nil, err
	}
	defer load.CloseAll(cs)
	recv := load.Receive(cs)
	publish := func(n, size int, batch bool) error {
		q := ""
		if batch {
			q = "&batch=1"
		}
		return get(fmt.Sprintf("http://%s/publish?n=%d&size=%d%s", s.httpAddr, n, size, q))
	}
	for try := 0; ; try++ {
		if try == 30 {
			return nil, fmt.Errorf("warm-up: not every subscriber received a message in 30 tries")
		}
		before := recv.Received()
		if err := publish(1, 64, false); err != nil {
			return nil, err
		}
		if recv.WaitReceived(before+fanoutSubs, time.Second) {
			break
		}
		recv.WaitReceived(1<<62, 500*time.Millisecond)
	}
	writes := func() (uint64, error) {
		if t.stats {
			return s.counts()
		}
		return syscw(s.cmd.Process.Pid)
	}
	out := make(map[fanoutKey]fanoutResult)
	for _, size := range fanoutSizes {
		for _, m := range t.modes {
			const messages, reps = 20, 3
			lost0, ooo0 := recv.Lost(), recv.OutOfOrder()
			w0, err := writes()
			if err != nil {
				return nil, err
			}
			recv.ResetLatency()
			cpu0 := s.cpu()
			start := time.Now()
			for range reps {
				for range messages / m.burst {
					want := recv.Received() + int64(fanoutSubs*m.burst)
					if err := publish(m.burst, size, m.batch); err != nil {
						return nil, err
					}
					if !recv.WaitReceived(want, 60*time.Second) {
						return nil, fmt.Errorf("%d B %s: %d messages missing", size, m.name, want-recv.Received())
					}
				}
			}
			elapsed := time.Since(start)
			cpu := s.cpu() - cpu0
			w1, err := writes()
			if err != nil {
				return nil, err
			}
			deliveries := fanoutSubs * messages * reps
			lat := recv.Latency()
			out[fanoutKey{t.name, size, m.name}] = fanoutResult{
				rate:     float64(deliveries) / elapsed.Seconds(),
				cpu:      cpu / time.Duration(deliveries),
				perWrite: float64(deliveries) / float64(max(w1-w0, 1)),
				p50:      lat.Percentile(0.5),
				p99:      lat.Percentile(0.99),
				lost:     recv.Lost() - lost0 + recv.OutOfOrder() - ooo0,
			}
		}
	}
	return out, nil
}

// counts reads the messages the server sent and the writes that sent them
// from its /stats?counts=1, which does not collect.
func (s *server) counts() (writes uint64, err error) {
	resp, err := http.Get("http://" + s.httpAddr + "/stats?counts=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Writes *uint64 `json:"writes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	if st.Writes == nil {
		return 0, fmt.Errorf("%s: /stats has no writes", s.httpAddr)
	}
	return *st.Writes, nil
}

// syscw returns the write system calls process pid has made, from
// /proc/PID/io.
func syscw(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no syscw in /proc/%d/io", pid)
}

// median returns the median of the runs of a case, field by field.
func median(rs []fanoutResult) fanoutResult {
	if len(rs) == 0 {
		return fanoutResult{}
	}
	pick := func(f func(fanoutResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, x := range rs {
			v[i] = f(x)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	var lost int64
	for _, x := range rs {
		lost += x.lost
	}
	return fanoutResult{
		rate:     pick(func(x fanoutResult) float64 { return x.rate }),
		cpu:      time.Duration(pick(func(x fanoutResult) float64 { return float64(x.cpu) })),
		perWrite: pick(func(x fanoutResult) float64 { return x.perWrite }),
		p50:      time.Duration(pick(func(x fanoutResult) float64 { return float64(x.p50) })),
		p99:      time.Duration(pick(func(x fanoutResult) float64 { return float64(x.p99) })),
		lost:     lost, // all runs'
	}
}

// fanoutByLib is what the broadcast plot shows: each library's medians
// for bcastCases.
func (r *report) fanoutByLib() map[string][]bcastResult {
	out := make(map[string][]bcastResult)
	for _, lib := range r.libs {
		for _, c := range bcastCases {
			m := modeSingle
			if c.burst > 1 {
				m = modeBurst
			}
			med := median(r.fanout[fanoutKey{lib, c.size, m.name}])
			out[lib] = append(out[lib], bcastResult{rate: med.rate, cpu: med.cpu})
		}
	}
	return out
}

// writeFanout writes the broadcast section.
func (r *report) writeFanout(p func(string, ...any)) {
	p("## Broadcast\n\n")
	p("Written by `cd bench && go run ./cmd/results %s` on %s, on %s", strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	if r.partial {
		p("; only the sections that say so come from that run")
	}
	p(". ")
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
				res := median(r.fanout[fanoutKey{t.name, size, m.name}])
				floorMode := modeSingle
				if m.burst > 1 {
					floorMode = modeBurst
				}
				floor := median(r.fanout[fanoutKey{"floor", size, floorMode.name}])
				gws := median(r.fanout[fanoutKey{"gws", size, floorMode.name}])
				p("| %s | %s | %.2f µs | %s | %.1f | %.0f | %s | %v | %v | %d |\n", t.name, m.name, micros(res.cpu),
					ratio(float64(res.cpu), float64(floor.cpu)), res.perWrite, res.rate, ratio(res.rate, gws.rate),
					latency(res.p50), latency(res.p99), res.lost)
			}
		}
		p("\n")
	}
	if runs := r.fanout[fanoutKey{"wshub", 64, modeBurst.name}]; len(runs) > 1 {
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
func (r *report) writeFanoutAim(p func(string, ...any)) {
	w := median(r.fanout[fanoutKey{"wshub", 64, modeBurst.name}])
	g := median(r.fanout[fanoutKey{"gws", 64, modeBurst.name}])
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
	single := median(r.fanout[fanoutKey{"wshub", 64, modeSingle.name}])
	if before := r.fanout[fanoutKey{"wshub before", 64, modeSingle.name}]; before != nil {
		b := median(before)
		p("; single publishes' p99 %v against %v before (no worse: %s)", latency(single.p99), latency(b.p99), met(single.p99 <= b.p99))
	}
	p(".\n\n")
}
