//go:build race

package wshub

// raceEnabled is true in race builds, where sync.Pool drops items on
// purpose and allocation counts say nothing.
const raceEnabled = true
