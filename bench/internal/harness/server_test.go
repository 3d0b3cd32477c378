package harness

import (
	"strings"
	"testing"
)

// TestStartFailureShowsStderr: a server that exits at once is not waited
// for, and what it said is in the error.
func TestStartFailureShowsStderr(t *testing.T) {
	t.Parallel()
	// Start adds -addr ADDR, which sh takes as $0 and $1.
	_, err := Start(Process{Bin: "/bin/sh", Args: []string{"-c", "echo cannot start: no such thing >&2; exit 1"}})
	if err == nil || !strings.Contains(err.Error(), "cannot start: no such thing") {
		t.Fatalf("got %v, want the server's stderr in the error", err)
	}
}

// TestStatsLines: examples/echo's -stats lines, written in pieces, are
// parsed line by line.
func TestStatsLines(t *testing.T) {
	t.Parallel()
	var got []statsLine
	w := &lineWriter{line: func(s string) { got = append(got, parseStatsLine(s)) }}
	w.Write([]byte("conns=0 deflating=0 heap_inuse=999 sys=1 goroutines=3\nconns=20"))
	w.Write([]byte("00 heap_inuse=5000000 sys=9 goroutines=9\npartial"))
	want := []statsLine{{conns: 0, Memory: Memory{Heap: 999, Goroutines: 3}}, {conns: 2000, Memory: Memory{Heap: 5000000, Goroutines: 9}}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
