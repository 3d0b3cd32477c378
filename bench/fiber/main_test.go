package main

import (
	"log"
	"os"
	"testing"
	"time"
)

// TestMain runs a server when the measuring test starts the test binary
// again for one.
func TestMain(m *testing.M) {
	if name := os.Getenv(serveEnv); name != "" {
		if err := runServer(name, os.Getenv(addrEnv)); err != nil {
			log.Fatal(err)
		}
		return
	}
	os.Exit(m.Run())
}

// TestMeasure runs the measurement at small counts, so that the program
// keeps working: every server echoes (dial checks the upgrade) and the
// goroutines per connection come out as each library spends them.
func TestMeasure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	want := map[string]float64{"wshub-fiber": 0, "wshub-nethttp": 0, "fiber-websocket": 1}
	for _, s := range servers {
		r, err := measure(s.name, []int{100, 200, 300}, 200*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		t.Logf("%s: %.0f B RSS, %.0f B heap, %.2f goroutines per connection", s.name, r.rss, r.heap, r.goroutines)
		if d := r.goroutines - want[s.name]; d < -0.05 || d > 0.05 {
			t.Errorf("%s: %.2f goroutines per connection, want %v", s.name, r.goroutines, want[s.name])
		}
	}
}
