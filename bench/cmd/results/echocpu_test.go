package main

import (
	"strings"
	"testing"
)

// TestEchoCPU runs the echocpu scenario briefly against the floor,
// examples/echo on both doors and cmd/server -lib wshub, without counting
// system calls: every server echoes, and the section has a row for each.
func TestEchoCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts servers")
	}
	t.Parallel()
	r := testReport(t, "wshub")
	if err := r.echoCPU(); err != nil {
		t.Fatal(err)
	}
	if len(r.echoCPURows) != 4 {
		t.Fatalf("%d servers measured, want 4", len(r.echoCPURows))
	}
	for i, tg := range r.echoCPURows {
		if run := r.echoCPURuns[i][0]; run.Messages == 0 || run.cpu <= 0 || run.sys != nil {
			t.Errorf("%s: %+v", tg.name, run)
		}
	}
	section := writeOne(t, r, "echocpu")
	for _, row := range []string{"| " + floorName + " |", "| " + ownName + " |", "| wshub, net/http (cmd/server) |"} {
		if !strings.Contains(section, row) {
			t.Errorf("no row %q in:\n%s", row, section)
		}
	}
}
