//go:build darwin || openbsd

package wshub

import "golang.org/x/sys/unix"

// maxIovecs is the most buffers flushLocked hands sysWritev at once; x/sys
// allocates for more than 8. Darwin and OpenBSD allow system calls only
// through libc, so the raw call of writev_raw.go is not an option.
const maxIovecs = 8

// sysWritev writes bufs with one system call.
func sysWritev(fd int, bufs [][]byte) (int, error) {
	n, err := unix.Writev(fd, bufs)
	if n < 0 {
		n = 0
	}
	return n, err
}
