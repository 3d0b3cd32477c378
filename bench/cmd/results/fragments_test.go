package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFragMedian(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	if m := fragMedian([]fragResult{{cpu: 3 * ms, messages: 1}, {cpu: ms, messages: 2}, {cpu: 2 * ms, messages: 3}}); m.cpu != 2*ms || m.messages != 6 || m.err != nil {
		t.Errorf("odd: %+v", m)
	}
	if m := fragMedian([]fragResult{{cpu: 4 * ms, messages: 1}, {cpu: 2 * ms, messages: 1}}); m.cpu != 3*ms {
		t.Errorf("even: %+v", m)
	}
	failed := fragResult{cpu: 20 * time.Second, err: errors.New("closed")}
	if m := fragMedian([]fragResult{failed}); m.err == nil || m.cpu != failed.cpu {
		t.Errorf("failed: %+v", m)
	}
}

// TestWriteFragments writes the section from made-up runs: a failed case
// shows as more than its CPU, with a note, and the ratios.
func TestWriteFragments(t *testing.T) {
	t.Parallel()
	r := &report{runs: 1, fragTimeout: time.Minute, before: "/tmp/old", frags: make(map[fragKey][]fragResult)}
	for _, name := range []string{"floor", "wshub", "wshub before", "gorilla"} {
		r.fragRows = append(r.fragRows, target{name: name})
	}
	for _, c := range fragCases {
		r.frags[fragKey{"floor", c}] = []fragResult{{cpu: time.Millisecond, messages: 100}}
		r.frags[fragKey{"wshub", c}] = []fragResult{{cpu: 20 * time.Millisecond, messages: 10}}
		r.frags[fragKey{"wshub before", c}] = []fragResult{{cpu: 2 * time.Second, messages: 1}}
		r.frags[fragKey{"gorilla", c}] = []fragResult{{cpu: 10 * time.Millisecond, messages: 10}}
	}
	r.frags[fragKey{"wshub before", fragCases[0]}] = []fragResult{{cpu: 25 * time.Second, err: errors.New("server closed the connection: 1008 read timeout")}}
	var w strings.Builder
	r.writeFragments(func(format string, args ...any) { fmt.Fprintf(&w, format, args...) })
	out := w.String()
	for _, want := range []string{
		"| message | fragments | frames | floor | wshub | wshub before | gorilla | wshub ÷ best peer | wshub before ÷ wshub |",
		"| 1,047,552 B | 16 B | 65,472 | 1.00 ms | 20.0 ms | > 25.00 s † | 10.0 ms | 2.00 | > 1250 |",
		"| 4,193,280 B | 256 B | 16,380 | 1.00 ms | 20.0 ms | 2.00 s | 10.0 ms | 2.00 | 100 |",
		"- † wshub before, 1,047,552 B in 16 B fragments: server closed the connection: 1008 read timeout, after 25.00 s of server CPU.",
		"floor 1.00, wshub 1.00, wshub before more than 12, gorilla 1.00.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
