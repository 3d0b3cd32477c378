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
	if got := merge(path, report, false); got != report {
		t.Errorf("full run kept old sections:\n%s", got)
	}
}
