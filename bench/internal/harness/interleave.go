package harness

// Interleave measures every target runs times, in turn: each target once,
// then each again, so that a change in the machine's load over the runs
// falls on every target alike rather than on the last ones measured. It
// returns each target's results in the order of targets, each in the
// order of the runs, and stops at the first error. Tables show the median
// of a target's runs (MedianOf).
func Interleave[T, R any](runs int, targets []T, measure func(run int, t T) (R, error)) ([][]R, error) {
	out := make([][]R, len(targets))
	for run := range runs {
		for i, t := range targets {
			r, err := measure(run, t)
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], r)
		}
	}
	return out, nil
}
