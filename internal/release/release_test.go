package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestFormatSum checks that formatSum writes go.sum lines in the go
// command's order: every go.sum of the repository, which go mod tidy
// wrote, comes back unchanged.
func TestFormatSum(t *testing.T) {
	sums, _ := filepath.Glob("../../*/go.sum")
	more, _ := filepath.Glob("../../*/*/go.sum")
	sums = append(append(sums, more...), "../../go.sum")
	for _, name := range sums {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := formatSum(parseSum(data)); !bytes.Equal(got, data) {
			t.Errorf("%s: formatSum(parseSum) differs:\n%s", name, lineDiff("go.sum", data, got))
		}
	}
}

func TestLineDiff(t *testing.T) {
	if d := lineDiff("go.mod", []byte("a\nb\n"), []byte("a\nb\n")); d != "" {
		t.Errorf("same content: %q", d)
	}
	if d, want := lineDiff("go.mod", []byte("a\nb\n"), []byte("a\nc\n")), "\tgo.mod -b\n\tgo.mod +c\n"; d != want {
		t.Errorf("got %q, want %q", d, want)
	}
}
