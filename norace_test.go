//go:build !race

package wshub

const raceEnabled = false
