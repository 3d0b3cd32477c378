package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testReport is a report for the tests: every scenario at small counts
// and short windows, building its binaries from this tree.
func testReport(t *testing.T, libs ...string) *report {
	t.Helper()
	return &report{
		root: "../..", out: t.TempDir(), tmp: t.TempDir(), libs: libs, runs: 1, partial: true, ran: make(map[string]ran),
		conns: 20, size: 64, warm: 100 * time.Millisecond, measure: 300 * time.Millisecond, count: "none",
		settle: 300 * time.Millisecond, counts: []int{50, 150},
	}
}

// TestTLS runs the tls scenario at small counts against examples/echo
// -tls on both doors and cmd/server -tls with gws, so that a broken target
// fails here rather than in a long run, and checks what the examples'
// promise makes checkable at any count: no goroutine per idle wss://
// connection on either of wshub's doors, and one for gws.
func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts servers")
	}
	t.Parallel()
	r := testReport(t, "wshub", "gws")
	if err := r.tls(); err != nil {
		t.Fatal(err)
	}
	if len(r.tlsRows) != 3 {
		t.Fatalf("%d servers measured, want 3", len(r.tlsRows))
	}
	for i, tg := range r.tlsRows {
		run := r.tlsRuns[i][0]
		if len(run.points) != 3 || run.points[2].conns != 150 || run.points[2].RSS <= 0 {
			t.Errorf("%s: points %+v", tg.name, run.points)
		}
		want := 0.0
		if strings.HasPrefix(tg.name, "gws") {
			want = 1
		}
		if g := slope(run.points, goroutines); g < want-0.05 || g > want+0.05 {
			t.Errorf("%s: %.2f goroutines per idle connection, want %.0f", tg.name, g, want)
		}
		if run.upgradeCPU <= 0 || run.echo.Rate() <= 0 {
			t.Errorf("%s: upgrade CPU %v, %v round trips/s", tg.name, run.upgradeCPU, run.echo.Rate())
		}
	}
	section := writeOne(t, r, "tls")
	if !strings.Contains(section, "| wshub, own listener (examples/echo -tls -listener) |") {
		t.Errorf("section:\n%s", section)
	}
}

// writeOne writes scenario name's section into a RESULTS.md that has an
// old one between two others, and returns the file: the section must
// replace the old one in place.
func writeOne(t *testing.T, r *report, name string) string {
	t.Helper()
	var title string
	for _, s := range scenarios {
		if s.name == name {
			title = s.title
		}
	}
	path := filepath.Join(r.out, "RESULTS.md")
	if err := os.WriteFile(path, []byte("# Results\n\n## Before\n\nkept\n\n## "+title+"\n\nold\n\n## After\n\nkept too\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.ran[name] = ran{took: time.Second, load0: "1.00", load1: "2.00"}
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	regen := "## " + title + "\n\nRegenerate: `cd bench && go run ./cmd/results -scenarios " + name
	if strings.Contains(s, "\nold\n") || !strings.Contains(s, regen) ||
		!strings.HasPrefix(s, "# Results\n\n## Before\n\nkept\n\n## "+title) || !strings.HasSuffix(s, "\n\n## After\n\nkept too\n") {
		t.Errorf("RESULTS.md after writing %s:\n%s", name, s)
	}
	return s
}
