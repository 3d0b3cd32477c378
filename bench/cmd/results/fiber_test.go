package main

import "testing"

// TestFiber runs the fiber scenario at small counts: every server of
// bench/fiber echoes (the dial checks the upgrade) and the goroutines per
// connection come out as each spends them.
func TestFiber(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bench/fiber and starts three servers")
	}
	t.Parallel()
	r := testReport(t)
	r.counts = []int{100, 200, 300}
	if err := r.fiber(); err != nil {
		t.Fatal(err)
	}
	want := []float64{0, 0, 1} // wshub-fiber, wshub-nethttp, fiber-websocket
	for i, row := range r.fiberRows {
		g := slope(row.points, goroutines)
		t.Logf("%s: %.0f B RSS, %.0f B heap, %.2f goroutines per connection", row.what, slope(row.points, rss), slope(row.points, heap), g)
		if d := g - want[i]; d < -0.05 || d > 0.05 {
			t.Errorf("%s: %.2f goroutines per connection, want %v", row.what, g, want[i])
		}
	}
	writeOne(t, r, "fiber")
}
