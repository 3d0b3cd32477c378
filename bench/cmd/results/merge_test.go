package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMergeKeepsTheOtherSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	old := "# title\n\nold preamble\n\n## Idle\n\nidle figures\n\n## Echo\n\nold echo\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	report := "# title\n\nnew preamble\n\n## Echo\n\nnew echo\n\n## Attack\n\nattack figures\n"
	want := "# title\n\nold preamble\n\n## Idle\n\nidle figures\n\n## Echo\n\nnew echo\n\n## Attack\n\nattack figures\n"
	if got := merge(path, report, true); got != want {
		t.Errorf("partial run:\n%s\nwant:\n%s", got, want)
	}
	// The report's last section, trimmed, replaces one in the middle.
	if got := merge(path, "# t\n\n## Idle\n\nnew idle", true); got != "# title\n\nold preamble\n\n## Idle\n\nnew idle\n\n## Echo\n\nold echo\n" {
		t.Errorf("partial run, last section:\n%q", got)
	}
	if got := merge(path, report, false); got != report {
		t.Errorf("full run kept old sections:\n%s", got)
	}
}

func TestMedianOfRuns(t *testing.T) {
	runs := []fanoutResult{
		{rate: 3, cpu: 30, perWrite: 1, p50: 5, p99: 9, lost: 1},
		{rate: 1, cpu: 10, perWrite: 3, p50: 4, p99: 7},
		{rate: 2, cpu: 20, perWrite: 2, p50: 6, p99: 8, lost: 2},
	}
	got := median(runs)
	want := fanoutResult{rate: 2, cpu: 20, perWrite: 2, p50: 5, p99: 8, lost: 3}
	if got != want {
		t.Errorf("median %+v, want %+v (each field's median, the runs' losses summed)", got, want)
	}
	if got := median(runs[:2]); got.rate != 2 || got.cpu != 20 {
		t.Errorf("median of two %+v, want their means", got)
	}
}

func TestSyscwCountsWrites(t *testing.T) {
	before, err := syscw(os.Getpid())
	if err != nil {
		t.Skip(err) // not Linux, or no /proc/PID/io
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 10 {
		f.Write([]byte("x"))
	}
	if after, _ := syscw(os.Getpid()); after-before < 10 {
		t.Errorf("syscw grew by %d over 10 writes", after-before)
	}
}
