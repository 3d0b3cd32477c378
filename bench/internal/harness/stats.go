package harness

import "slices"

// Number is what Median takes: counts, rates, byte sizes, durations.
type Number interface {
	~int | ~int64 | ~uint64 | ~float64
}

// Median returns the median of vs, and the zero value for none. For an
// even count it is the mean of the two middle values, the conventional
// definition, so that two runs give their mean rather than the larger.
// vs is not modified.
func Median[T Number](vs []T) T {
	if len(vs) == 0 {
		var zero T
		return zero
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return s[mid-1] + (s[mid]-s[mid-1])/2
}

// MedianOf is the median of f over rs: one column of a table of runs.
func MedianOf[R any, T Number](rs []R, f func(R) T) T {
	vs := make([]T, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	return Median(vs)
}

// Slope is the least-squares slope of ys over xs: the cost of one more
// connection, with the fixed costs and the noise of any one sample left
// out. It is 0 where the xs do not differ.
func Slope(xs, ys []float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for i, x := range xs {
		y := ys[i]
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
