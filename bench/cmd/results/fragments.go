package main

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The fragments scenario (issue 23): what it costs a server to reassemble
// one large message that a client sends in small fragments. One client
// sends one binary message as masked client frames of a fixed payload
// size (load.Fragmented), waits for the echo and checks it; the server's
// CPU (utime+stime, /proc/PID/stat) over the messages is divided by their
// number. Each server in its own process, a new one for each case.

// fragCase is one message size and fragment size.
type fragCase struct{ size, frag int }

// The message sizes: 1 MiB less 1 KiB, under every library's default
// limit (wshub's 1 MiB the least but melody's), and 4 MiB less 1 KiB,
// with every server's limit raised to 4 MiB.
const (
	fragSmall = 1<<20 - 1<<10
	fragLarge = 4<<20 - 1<<10
)

var fragCases = []fragCase{
	{fragSmall, 16}, {fragSmall, 64}, {fragSmall, 256}, {fragSmall, 4096}, {fragSmall, 65536},
	{fragLarge, 64}, {fragLarge, 256},
}

// limit is the -max-message a case's server is started with: the message
// size rounded up to a power of two.
func (c fragCase) limit() int {
	n := 1
	for n < c.size {
		n <<= 1
	}
	return n
}

func (c fragCase) frames() int { return (c.size + c.frag - 1) / c.frag }

func (c fragCase) String() string {
	return fmt.Sprintf("%s B in %s fragments", thousands(c.size), sizeName(c.frag))
}

// sizeName names a fragment size.
func sizeName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// fragLibs are the libraries the scenario measures, those of -libs among
// them; melody reads with gorilla's Conn, so reassembles as gorilla does.
var fragLibs = []string{"wshub", "gorilla", "gws", "nbio"}

// fragWindow is how long each case sends messages, one after the other's
// echo, at least one and at most fragMaxMessages: /proc counts CPU in
// 10 ms ticks, which a single fast message would not show.
const (
	fragWindow      = time.Second
	fragMaxMessages = 1000
)

// fragResult is one case of one target in one run.
type fragResult struct {
	cpu      time.Duration // server CPU per message; with err, all it used
	messages int
	err      error // the message did not come back: timed out, closed
}

type fragKey struct {
	target string
	c      fragCase
}

// fragTargets are the servers measured, in order: the floor (Linux), wshub,
// -before, the peers of -libs.
//
// The floor's /raw is a bare TCP echo: the same bytes come back, not a
// message.
func (r *report) fragTargets() ([]target, error) {
	bin, err := r.server()
	if err != nil {
		return nil, err
	}
	var ts []target
	if runtime.GOOS == "linux" {
		ts = append(ts, target{"floor", harness.Process{Bin: bin, Args: []string{"-lib", "floor"}}, "/raw"})
	}
	for _, lib := range r.libsOf(fragLibs) {
		ts = append(ts, target{lib, harness.Process{Bin: bin, Args: []string{"-lib", lib}}, "/echo"})
		if lib == "wshub" && r.before != "" {
			ts = append(ts, target{"wshub before", harness.Process{Bin: r.before, Args: []string{"-lib", lib}}, "/echo"})
		}
	}
	return ts, nil
}

// fragments measures every target's cases, -runs times in turn. A case
// that fails (-frag-timeout passes, or the server closes the connection)
// is not run again: its row says how much CPU it had used by then.
func (r *report) fragments() error {
	ts, err := r.fragTargets()
	if err != nil {
		return err
	}
	r.fragRows = ts
	r.frags = make(map[fragKey][]fragResult)
	streams := make(map[fragCase][]byte)
	payload := make([]byte, fragLarge)
	for i := range payload {
		payload[i] = byte(i*7 + i>>12)
	}
	for _, c := range fragCases {
		streams[c] = load.Fragmented(ws.OpBinary, payload[:c.size], c.frag)
	}
	_, err = harness.Interleave(r.runs, ts, func(run int, t target) (struct{}, error) {
		for _, c := range fragCases {
			k := fragKey{t.name, c}
			if prev := r.frags[k]; len(prev) > 0 && prev[0].err != nil {
				continue
			}
			res, err := r.measureFragments(t, c, payload[:c.size], streams[c])
			if err != nil {
				return struct{}{}, fmt.Errorf("%s, %v: %v", t.name, c, err)
			}
			r.frags[k] = append(r.frags[k], res)
			if res.err != nil {
				log.Printf("fragments run %d %s, %v: failed after %v of server CPU: %v", run+1, t.name, c, res.cpu, res.err)
			} else {
				log.Printf("fragments run %d %s, %v: %s of server CPU per message (%d messages)", run+1, t.name, c, cpuText(res.cpu), res.messages)
			}
		}
		return struct{}{}, nil
	})
	return err
}

// measureFragments starts t's server, sends it a small fragmented message
// to warm up, then for fragWindow messages of payload as stream, each
// after the previous one's echo.
func (r *report) measureFragments(t target, c fragCase, payload, stream []byte) (fragResult, error) {
	p := t.p
	p.Args = append(slices.Clip(p.Args), "-max-message", fmt.Sprint(c.limit()))
	s, err := harness.Start(p)
	if err != nil {
		return fragResult{}, err
	}
	defer s.Stop()
	raw := t.path == "/raw"
	cs, err := dial(s.URL(t.path), 1)
	if err != nil {
		return fragResult{}, err
	}
	conn := cs[0]
	defer conn.Close()
	buf := make([]byte, 0, len(stream))
	// roundTrip sends stream and reads back its echo, within timeout.
	roundTrip := func(payload, stream []byte) error {
		conn.SetDeadline(time.Now().Add(r.fragTimeout))
		written := make(chan error, 1)
		go func() {
			_, err := conn.Write(stream)
			written <- err
		}()
		var err error
		if raw {
			buf = buf[:len(stream)]
			if err = conn.ReadRaw(buf); err == nil && !bytes.Equal(buf, stream) {
				err = errors.New("the bytes came back changed")
			}
		} else if buf, err = conn.ReadWhole(buf); err == nil && !bytes.Equal(buf, payload) {
			err = fmt.Errorf("%d bytes came back, not the %d sent", len(buf), len(payload))
		}
		if err != nil {
			conn.Close() // ends the write
			<-written
			return err
		}
		return <-written
	}
	warm := payload[:min(len(payload), 64<<10)]
	if err := roundTrip(warm, load.Fragmented(ws.OpBinary, warm, 1024)); err != nil {
		return fragResult{}, fmt.Errorf("warm-up: %v", err)
	}
	cpu0, err := s.CPU()
	if err != nil {
		return fragResult{}, err
	}
	used := func() (time.Duration, error) {
		cpu1, err := s.CPU()
		return cpu1.Sub(cpu0).Total(), err
	}
	start := time.Now()
	n := 0
	for n == 0 || time.Since(start) < fragWindow && n < fragMaxMessages {
		if err := roundTrip(payload, stream); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("no echo within %v", r.fragTimeout)
			}
			cpu, uerr := used()
			return fragResult{cpu: cpu, err: err}, uerr
		}
		n++
	}
	cpu, err := used()
	return fragResult{cpu: cpu / time.Duration(n), messages: n}, err
}

// fragMedian is the median server CPU per message of a case's runs, or,
// if it failed, the CPU it had used when it did, and the error.
func fragMedian(rs []fragResult) fragResult {
	if len(rs) == 0 {
		return fragResult{}
	}
	if rs[0].err != nil {
		return rs[0]
	}
	n := 0
	for _, x := range rs {
		n += x.messages
	}
	return fragResult{cpu: harness.MedianOf(rs, func(x fragResult) time.Duration { return x.cpu }), messages: n}
}

// cpuText formats a CPU time for the table.
func cpuText(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2f s", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

// fragCell is a table cell: the median CPU per message, or "> " what a
// failed case had used, marked.
func fragCell(m fragResult) string {
	if m.err != nil {
		return "> " + cpuText(m.cpu) + " †"
	}
	if m.messages == 0 {
		return "—"
	}
	return cpuText(m.cpu)
}

// fragRatio is a's CPU per message ÷ b's, "> " it where a failed, "—"
// where either was not measured or b failed.
func fragRatio(a, b fragResult) string {
	switch {
	case a.messages == 0 && a.err == nil, b.messages == 0 || b.err != nil:
		return "—"
	case a.err != nil:
		return "> " + ratio(float64(a.cpu), float64(b.cpu))
	}
	return ratio(float64(a.cpu), float64(b.cpu))
}

// writeFragments writes the fragments scenario's section.
func (r *report) writeFragments(p printer) {
	p("One client sends one binary message as masked client frames each carrying the fragment size of payload (a first binary frame, continuations, the last final; `load.Fragmented`), waits for the echo (`/echo`) and checks it; ")
	p("server CPU is utime+stime from `/proc/PID/stat` of the server's process over the messages, per message: each case sends messages one after the other's echo for %v (at least one, at most %d), after a 64 KiB message in 1 KiB fragments to warm up, on a server started for that case. ", fragWindow, fragMaxMessages)
	if r.runs > 1 {
		p("Each figure is the median of %d runs, the servers measured in turn in each run. ", r.runs)
	}
	p("Messages of %s bytes (1 MiB less 1 KiB) and %s bytes (4 MiB less 1 KiB); each server is started with `-max-message` the size rounded up to a power of two, 1 MiB (wshub's default) or 4 MiB (wshub `MaxMessageSize`, and `MaxQueuedBytes` at least that plus 14 for the echo; gorilla `SetReadLimit`, gws `ReadMaxPayloadSize`, nbio `MessageLengthLimit`). ", thousands(fragSmall), thousands(fragLarge))
	p("The floor (`cmd/server -lib floor`'s `/raw`) is no WebSocket at all: a goroutine per connection reads up to 64 KiB and writes back what it read, so the client gets its own frames back (all the bytes sent, headers included, where the others send one frame of the payload). ")
	if r.before != "" {
		p("\"wshub before\" is `cmd/server` built on an older core (`-before %s`). ", r.before)
	}
	p("† the message did not come back: no echo within %v (`-frag-timeout`) or the server closed the connection (see below); the figure is the CPU the server had used by then, and the case was not run again.\n\n", r.fragTimeout)
	p("| message | fragments | frames |")
	for _, t := range r.fragRows {
		p(" %s |", t.name)
	}
	p(" wshub ÷ best peer |")
	before := slices.ContainsFunc(r.fragRows, func(t target) bool { return t.name == "wshub before" })
	if before {
		p(" wshub before ÷ wshub |")
	}
	p("\n|---|---:|---:|")
	for range r.fragRows {
		p("---:|")
	}
	if before {
		p("---:|")
	}
	p("---:|\n")
	for _, c := range fragCases {
		p("| %s B | %s | %s |", thousands(c.size), sizeName(c.frag), thousands(c.frames()))
		best := time.Duration(0)
		for _, t := range r.fragRows {
			m := fragMedian(r.frags[fragKey{t.name, c}])
			p(" %s |", fragCell(m))
			if t.name != "floor" && !strings.HasPrefix(t.name, "wshub") && m.err == nil && m.messages > 0 && (best == 0 || m.cpu < best) {
				best = m.cpu
			}
		}
		w := fragMedian(r.frags[fragKey{"wshub", c}])
		var peer fragResult
		if best > 0 {
			peer = fragResult{cpu: best, messages: 1}
		}
		p(" %s |", fragRatio(w, peer))
		if before {
			p(" %s |", fragRatio(fragMedian(r.frags[fragKey{"wshub before", c}]), w))
		}
		p("\n")
	}
	p("\n")
	// Reassembly is linear if a message costs about the same whatever
	// its fragments: the 16 B fragments against the 4 KiB ones.
	var lines []string
	small, big := fragCase{fragSmall, 16}, fragCase{fragSmall, 4096}
	for _, t := range r.fragRows {
		a, b := fragMedian(r.frags[fragKey{t.name, small}]), fragMedian(r.frags[fragKey{t.name, big}])
		if b.messages == 0 || b.err != nil {
			continue
		}
		if a.err != nil {
			lines = append(lines, fmt.Sprintf("%s more than %s", t.name, ratio(float64(a.cpu), float64(b.cpu))))
		} else if a.messages > 0 {
			lines = append(lines, fmt.Sprintf("%s %s", t.name, ratio(float64(a.cpu), float64(b.cpu))))
		}
	}
	if len(lines) > 0 {
		p("Server CPU for the %s B message in %s fragments ÷ in %s fragments (the same payload; issue 23's aim for wshub: at most 4): %s.\n\n",
			thousands(fragSmall), sizeName(small.frag), sizeName(big.frag), strings.Join(lines, ", "))
	}
	var notes []string
	for _, t := range r.fragRows {
		for _, c := range fragCases {
			if m := fragMedian(r.frags[fragKey{t.name, c}]); m.err != nil {
				notes = append(notes, fmt.Sprintf("- † %s, %v: %v, after %s of server CPU.\n", t.name, c, m.err, cpuText(m.cpu)))
			}
		}
	}
	if len(notes) > 0 {
		p("%s\n", strings.Join(notes, ""))
	}
}
