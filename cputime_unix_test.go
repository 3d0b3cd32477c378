//go:build unix

package wshub

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the test process has used, user and
// system. In the benchmarks whose clients run in another process it is the
// hub's.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
