//go:build linux || dragonfly || freebsd || netbsd

package wshub

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is the most buffers flushLocked hands sysWritev at once: enough
// for a burst of published messages to leave in one system call.
const maxIovecs = 64

// sysWritev writes bufs with one writev system call, made directly: it builds
// the iovec array on the stack, where x/sys's Writev allocates one for more
// than 8 buffers. (Darwin and OpenBSD go through libc instead; see
// writev_libc.go.)
func sysWritev(fd int, bufs [][]byte) (int, error) {
	var iov [maxIovecs]unix.Iovec
	n := 0
	for _, b := range bufs[:min(len(bufs), maxIovecs)] {
		if len(b) == 0 {
			continue
		}
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
