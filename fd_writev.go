//go:build darwin || linux || openbsd

package wshub

import "golang.org/x/sys/unix"

// sysWritev writes bufs with one system call.
func sysWritev(fd int, bufs [][]byte) (int, error) {
	n, err := unix.Writev(fd, bufs)
	if n < 0 {
		n = 0
	}
	return n, err
}
