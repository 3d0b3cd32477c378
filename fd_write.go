//go:build dragonfly || freebsd || netbsd

package wshub

// maxIovecs is the most buffers flushLocked hands sysWritev at once.
const maxIovecs = 8

// sysWritev writes bufs one after the other; x/sys has no writev here.
func sysWritev(fd int, bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		n, err := sysWrite(fd, b)
		total += n
		if err != nil || n < len(b) {
			return total, err
		}
	}
	return total, nil
}
