package main

import (
	"os"
	"strings"
	"testing"
)

// TestResultsSectionsRegenerate: every section of bench/RESULTS.md is a
// scenario's and starts with the command this code writes for it, so that
// a run of that command replaces it in place.
func TestResultsSectionsRegenerate(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../RESULTS.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range strings.Split(string(b), "\n## ")[1:] {
		title, _, _ := strings.Cut(sec, "\n")
		i := 0
		for i < len(scenarios) && scenarios[i].title != title {
			i++
		}
		if i == len(scenarios) {
			t.Errorf("RESULTS.md section %q is no scenario's", title)
			continue
		}
		if want := "\n\nRegenerate: `" + regenerate(scenarios[i]) + "`\n"; !strings.HasPrefix(sec[len(title):], want) {
			t.Errorf("RESULTS.md section %q does not start with %q", title, strings.TrimSpace(want))
		}
	}
}

func TestMedianOfRuns(t *testing.T) {
	t.Parallel()
	runs := []bcastResult{
		{rate: 3, cpu: 30, perWrite: 1, p50: 5, p99: 9, lost: 1},
		{rate: 1, cpu: 10, perWrite: 3, p50: 4, p99: 7},
		{rate: 2, cpu: 20, perWrite: 2, p50: 6, p99: 8, lost: 2},
	}
	got := median(runs)
	want := bcastResult{rate: 2, cpu: 20, perWrite: 2, p50: 5, p99: 8, lost: 3}
	if got != want {
		t.Errorf("median %+v, want %+v (each field's median, the runs' losses summed)", got, want)
	}
	if got := median(runs[:2]); got.rate != 2 || got.cpu != 20 {
		t.Errorf("median of two %+v, want their means", got)
	}
}
