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

// fixSendBuffer sets the send buffer of c's socket to n bytes, which ends
// the kernel's growing it: a peer that does not read fills it soon, and
// stays behind. Nothing on the portable path.
func fixSendBuffer(c *Conn, n int) {
	if c.fd >= 0 {
		syscall.SetsockoptInt(int(c.fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, n)
	}
}
