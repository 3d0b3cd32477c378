package main

import (
	"fmt"
	"log"
	"strings"

	"github.com/wshub/wshub/bench/internal/harness"
)

// The deflate scenario: permessage-deflate (RFC 7692) on a broadcast, and
// on idle connections.

// deflateLibs are the libraries the deflate scenario measures, those of
// -libs among them: wshub and the two peers with an event loop or a
// broadcaster of their own. gorilla and melody negotiate deflate too
// (cmd/server -deflate), but are not in the comparison.
var deflateLibs = []string{"wshub", "gws", "nbio"}

// deflateCases are the broadcast cases, of load.FeedJSON text messages.
var deflateCases = []bcastCase{{size: 1024, burst: 1}, {size: 1024, burst: 20}}

// deflateSubs is how many subscribers the broadcast has, and the most idle
// connections held.
const deflateSubs = 10000

// deflateIdleRounds is how many times wshub's idle connections are measured
// on each door, without and with deflate in turn: RSS moves by a few tens
// of bytes per connection between runs. The peers are measured once.
const deflateIdleRounds = 3

// deflateBcastRounds is how many times each library's broadcast is
// measured without and with deflate, in turn: on these shared cores server
// CPU per delivery moves by up to a third between runs minutes apart.
const deflateBcastRounds = 2

// deflateRow is one library's broadcast, with or without deflate, a round
// at a time.
type deflateRow struct {
	lib     string
	deflate bool
	rounds  []deflateRound
}

// deflateRound is one server process's broadcast.
type deflateRound struct {
	rest harness.Memory // with the subscribers at rest, after collecting
	res  []bcastResult
}

// mean is the mean of f over the rounds.
func (row deflateRow) mean(f func(deflateRound) float64) float64 {
	var sum float64
	for _, r := range row.rounds {
		sum += f(r)
	}
	return sum / float64(len(row.rounds))
}

// deflateIdleRow is one server's idle connections, without (plain) and with
// deflate negotiated, one ramp per round each.
type deflateIdleRow struct {
	name           string
	plain, deflate [][]idlePoint
}

// deflate measures the broadcast of deflateCases to deflateSubs subscribers
// with each library's deflate off, then on; then the memory of idle
// connections that negotiated deflate against those that did not.
func (r *report) deflate() error {
	libs := r.libsOf(deflateLibs)
	if len(libs) == 0 {
		return fmt.Errorf("-libs holds none of %v", deflateLibs)
	}
	bin, err := r.server()
	if err != nil {
		return err
	}
	var rows []deflateRow
	for _, lib := range libs {
		rows = append(rows, deflateRow{lib: lib}, deflateRow{lib: lib, deflate: true})
	}
	rounds, err := harness.Interleave(deflateBcastRounds, rows, func(_ int, row deflateRow) (deflateRound, error) {
		s, err := harness.Start(harness.Process{Bin: bin, Args: []string{"-lib", row.lib, fmt.Sprintf("-deflate=%v", row.deflate)}})
		if err != nil {
			return deflateRound{}, err
		}
		var round deflateRound
		round.res, err = measureBroadcast([]*harness.Server{s}, deflateSubs, bcastOpts{
			cases: deflateCases, json: true, deflate: row.deflate,
			ready: func() (err error) {
				round.rest, err = s.Memory(deflateSubs)
				return err
			},
		})
		s.Stop()
		if err != nil {
			return round, fmt.Errorf("%s, deflate %v: %v", row.lib, row.deflate, err)
		}
		for j, c := range deflateCases {
			if want := map[bool]float64{false: 0, true: 1}[row.deflate]; round.res[j].compressed != want {
				return round, fmt.Errorf("%s, deflate %v, %v: %.1f%% of the deliveries came compressed", row.lib, row.deflate, c, 100*round.res[j].compressed)
			}
		}
		log.Printf("deflate broadcast %s, deflate %v: %.0f deliveries/s, %.2f µs/delivery, %.0f B/delivery (bursts)",
			row.lib, row.deflate, round.res[1].rate, micros(round.res[1].cpu), round.res[1].wire)
		return round, nil
	})
	if err != nil {
		return err
	}
	for i := range rows {
		rows[i].rounds = rounds[i]
	}
	r.deflateRows = rows

	// Idle: the same server (deflate on) holds connections that offer
	// deflate and connections that do not, in turn.
	var targets []target
	for _, lib := range libs {
		targets = append(targets, target{lib, harness.Process{Bin: bin, Args: []string{"-lib", lib, "-deflate"}}, "/echo"})
		if lib == "wshub" {
			targets = append(targets, target{"wshub, own listener", harness.Process{Bin: bin, Args: []string{"-lib", lib, "-listener", "-deflate"}, HTTPPort: true}, "/echo"})
		}
	}
	r.deflateIdle = nil
	for _, t := range targets {
		row := deflateIdleRow{name: t.name}
		rounds := 1
		if strings.HasPrefix(t.name, "wshub") {
			rounds = deflateIdleRounds
		}
		for range rounds {
			for _, z := range []bool{false, true} {
				s, err := harness.Start(t.p)
				if err != nil {
					return err
				}
				dialer := dial
				if z {
					dialer = dialDeflate
				}
				points, err := r.ramp(s, s.URL(t.path), r.countsOr(idleCounts), dialer)
				s.Stop()
				if err != nil {
					return fmt.Errorf("idle %s, deflate %v: %v", t.name, z, err)
				}
				if z {
					row.deflate = append(row.deflate, points)
				} else {
					row.plain = append(row.plain, points)
				}
				log.Printf("deflate idle %s, negotiated %v: %.0f B RSS/conn", t.name, z, slope(points, rss))
			}
		}
		r.deflateIdle = append(r.deflateIdle, row)
	}
	return nil
}

// mean is the mean of f's slope over the rounds.
func mean(rounds [][]idlePoint, f func(idlePoint) float64) float64 {
	var sum float64
	for _, pts := range rounds {
		sum += slope(pts, f)
	}
	return sum / float64(len(rounds))
}

// at is what the connections cost at count n, over the server before any:
// (f at n - f at 0) / n, averaged over the rounds.
func at(rounds [][]idlePoint, n int, f func(idlePoint) float64) float64 {
	var sum float64
	for _, pts := range rounds {
		for _, p := range pts {
			if p.conns == n {
				sum += (f(p) - f(pts[0])) / float64(n)
			}
		}
	}
	return sum / float64(len(rounds))
}

func (r *report) writeDeflate(p printer) {
	if r.prebuilt {
		p("With servers built from another tree (`-server`). ")
	}
	p("%s subscribers in one room (`cmd/server -lib L [-deflate]`, `/room`) receive 1 KiB text messages of chat-like JSON (`load.FeedJSON`: ids, users, timestamps and text of common words, different in every message; flate.BestSpeed shrinks one about 2×, as it does a real chat message on its own), ", thousands(deflateSubs))
	p("20 messages per case, three times, as in the broadcast section; each library's server without deflate, then with, %d times in turn, a new process each time; the table gives the means and each round's CPU ratio. ", deflateBcastRounds)
	p("With deflate, every subscriber offers `%s` (gorilla's client's offer) and the run fails unless every 101 accepted it, every message came with RSV1 set, and every message to 1,000 of the subscribers (spread evenly; inflating costs the load generator, which shares the cores, about as much as the server's work) inflates to its JSON, in order; without it, the same server has deflate off and the clients offer nothing. ", "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
	p("Each library's deflate as its documentation shows, without context takeover: wshub `Options.Compression{}` (BestSpeed, from 128 bytes), compressing each publish once; gws `PermessageDeflate{Enabled: true}` (BestSpeed, from 512 bytes) and its `Broadcaster`, which also compresses once; nbio `EnableCompression(true)` (BestSpeed), which compresses in each connection's `WriteMessage`. ")
	p("Server CPU is utime+stime from `/proc/PID/stat` over the case; bytes on the wire are what the subscribers read, frame headers included; RSS \"at rest\" is the server's with its %s subscribers after a collection (`/stats`), \"peak\" the highest sampled every 20 ms through both cases.\n\n", thousands(deflateSubs))
	p("| library | deflate | %v | %v | CPU per delivery, one at a time | CPU per delivery, bursts | CPU, deflate ÷ plain (bursts) | each round | wire per delivery | compressed | RSS at rest | peak RSS |\n", deflateCases[0], deflateCases[1])
	p("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	plain := map[string]deflateRow{}
	for _, row := range r.deflateRows {
		if !row.deflate {
			plain[row.lib] = row
		}
	}
	cpu := func(c int) func(deflateRound) float64 {
		return func(r deflateRound) float64 { return float64(r.res[c].cpu) }
	}
	for _, row := range r.deflateRows {
		z, cmp, each := "off", "—", "—"
		if pl, ok := plain[row.lib]; ok && row.deflate {
			z = "on"
			cmp = ratio(row.mean(cpu(1)), pl.mean(cpu(1)))
			var rs []string
			for i := range row.rounds {
				rs = append(rs, ratio(cpu(1)(row.rounds[i]), cpu(1)(pl.rounds[i])))
			}
			each = strings.Join(rs, ", ")
		}
		p("| %s | %s | %.0f/s | %.0f/s | %.2f µs | %.2f µs | %s | %s | %.0f B | %.0f%% | %.0f MB | %.0f MB |\n", row.lib, z,
			row.mean(func(r deflateRound) float64 { return r.res[0].rate }),
			row.mean(func(r deflateRound) float64 { return r.res[1].rate }),
			row.mean(cpu(0))/1000, row.mean(cpu(1))/1000, cmp, each,
			row.mean(func(r deflateRound) float64 { return r.res[1].wire }),
			100*row.mean(func(r deflateRound) float64 { return r.res[1].compressed }),
			row.mean(func(r deflateRound) float64 { return float64(r.rest.RSS) })/1e6,
			row.mean(func(r deflateRound) float64 { return float64(r.res[1].peakRSS) })/1e6)
	}
	p("\n### Idle connections with deflate negotiated\n\n")
	p("The same server, deflate on (`-deflate`), holds %v silent connections (`/echo`) that offer deflate as above, and in turn as many that offer nothing; wshub %d times each, alternated, the peers once. ", r.countsOr(idleCounts), deflateIdleRounds)
	p("Per connection: the least-squares slope of RSS (from `/proc/PID/statm`) and of the Go heap over the counts, after a collection at each (`/stats`), averaged over the rounds; \"at %s\" is (RSS with %[1]s − RSS with none) / %[1]s, the figure issue 13 asks for. wshub is measured on both doors: `net/http` (`ServeHTTP`) and its own listener (`-listener`; the HTTP routes on another port).\n\n", thousands(deflateSubs))
	p("| server | RSS per connection, plain | with deflate | difference | each round | RSS at %s, plain | with deflate | difference | heap per connection, plain | with deflate |\n", thousands(deflateSubs))
	p("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, row := range r.deflateIdle {
		pr, dr := mean(row.plain, rss), mean(row.deflate, rss)
		var rounds []string
		for i := range row.plain {
			rounds = append(rounds, fmt.Sprintf("%+.0f B", slope(row.deflate[i], rss)-slope(row.plain[i], rss)))
		}
		pa, da := at(row.plain, deflateSubs, rss), at(row.deflate, deflateSubs, rss)
		p("| %s | %s | %s | %+.0f B | %s | %s | %s | %+.0f B | %s | %s |\n", row.name, kb(pr), kb(dr), dr-pr, strings.Join(rounds, ", "),
			kb(pa), kb(da), da-pa, kb(mean(row.plain, heap)), kb(mean(row.deflate, heap)))
	}
	p("\n")
}
