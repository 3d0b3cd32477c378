package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wshub/wshub/bench/internal/gobuild"
	"github.com/wshub/wshub/bench/internal/markdown"
)

// TestMeasure runs the whole measurement at small counts against
// examples/echo -tls on both doors and cmd/server -tls with gws, so that a
// broken target fails here rather than in a long run, and checks what the
// examples' promise makes checkable at any count: no goroutine per idle
// wss:// connection on either of wshub's doors, and one for gws.
func TestMeasure(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts servers")
	}
	dir := t.TempDir()
	echoBin := gobuild.MustBuild(dir, "../../../examples", "./echo")
	serverBin := gobuild.MustBuild(dir, "../..", "./cmd/server")
	targets := []target{
		{name: "echo", bin: echoBin, args: []string{"-tls"}, echo: true},
		{name: "echo -listener", bin: echoBin, args: []string{"-tls", "-listener"}, echo: true},
		{name: "gws", bin: serverBin, args: []string{"-tls", "-lib", "gws"}},
	}
	m := measurer{counts: []int{50, 150}, conns: 20, size: 64, warm: 100 * time.Millisecond, measure: 300 * time.Millisecond}
	all := make(map[string][]run)
	for _, tg := range targets {
		r, err := m.run(tg)
		if err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		all[tg.name] = []run{r}
		if len(r.points) != 3 || r.points[2].conns != 150 || r.points[2].rss <= 0 {
			t.Errorf("%s: points %+v", tg.name, r.points)
		}
		want := 0.0
		if tg.name == "gws" {
			want = 1
		}
		if r.goroutines < want-0.05 || r.goroutines > want+0.05 {
			t.Errorf("%s: %.2f goroutines per idle connection, want %.0f", tg.name, r.goroutines, want)
		}
		if r.upgradeCPU <= 0 || r.rate <= 0 {
			t.Errorf("%s: upgrade CPU %v, %v round trips/s", tg.name, r.upgradeCPU, r.rate)
		}
	}
	section := m.section(targets, all, 1, time.Second)
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	os.WriteFile(path, []byte("# Results\n\n"+sectionTitle+"\n\nold\n\n## Next\n\nkept\n"), 0o644)
	if err := markdown.ReplaceSection(path, sectionTitle, section); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if s := string(b); strings.Contains(s, "old") || !strings.Contains(s, "| echo -listener |") || !strings.Contains(s, "## Next\n\nkept") {
		t.Errorf("RESULTS.md after writeSection:\n%s", s)
	}
}
