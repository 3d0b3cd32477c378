package harness

import (
	"math"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{7}, 7},
		{"odd, unsorted", []float64{3, 1, 2}, 2},
		{"even: the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		if got := Median(in); got != tt.want {
			t.Errorf("%s: Median(%v) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
		if len(in) > 0 && in[0] != tt.in[0] {
			t.Errorf("%s: Median sorted its input: %v", tt.name, in)
		}
	}
	type run struct{ cpu time.Duration }
	rs := []run{{4 * time.Millisecond}, {2 * time.Millisecond}}
	if got := MedianOf(rs, func(r run) time.Duration { return r.cpu }); got != 3*time.Millisecond {
		t.Errorf("MedianOf two durations: %v, want 3ms", got)
	}
}

func TestSlope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		xs, ys []float64
		want   float64
	}{
		{"a line with a fixed cost", []float64{1000, 2000, 3000}, []float64{5e6 + 100e3, 5e6 + 200e3, 5e6 + 300e3}, 100},
		{"noise around a line", []float64{0, 1, 2, 3}, []float64{1, 2, 2, 4}, 0.9},
		{"one point", []float64{5}, []float64{9}, 0},
		{"the same x twice", []float64{5, 5}, []float64{1, 9}, 0},
	}
	for _, tt := range tests {
		if got := Slope(tt.xs, tt.ys); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: Slope = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestInterleave(t *testing.T) {
	t.Parallel()
	order := ""
	got, err := Interleave(2, []string{"a", "b"}, func(run int, name string) (int, error) {
		order += name
		return run*10 + len(order), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if order != "abab" || got[0][0] != 1 || got[0][1] != 13 || got[1][0] != 2 || got[1][1] != 14 {
		t.Errorf("measured %q, got %v; want abab, [[1 13] [2 14]]", order, got)
	}
}
