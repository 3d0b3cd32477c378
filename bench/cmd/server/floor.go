//go:build linux

package main

import (
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/sys/unix"
)

// floorLib is the floor of the broadcast: no library, nothing per member
// but its socket. A room member's socket is taken from the Go runtime
// after the upgrade (a non-blocking duplicate of the descriptor) and only
// ever written to. A publish frames its messages once and writes them to
// every member straight from the publishing goroutine, spread over
// GOMAXPROCS goroutines as a hub spreads its members over its loops: a
// write of the frame for a single message, one writev of every frame for
// a burst (the /publish route hands the floor a burst as a batch). A
// socket too full to take it all is retried after 50 µs, which costs no
// CPU; one that fails is closed. It is a measuring stick, not a server:
// no reads, no pings, no limits.
type floorLib struct {
	shards     []floorShard
	next       atomic.Uint64
	messages   atomic.Uint64 // messages sent, one per member
	writes     atomic.Uint64 // write and writev system calls
	publishing sync.Mutex    // one publish at a time, so that members see publish order
}

type floorShard struct {
	mu  sync.Mutex
	fds []int
}

func newFloor() *floorLib {
	return &floorLib{shards: make([]floorShard, runtime.GOMAXPROCS(0))}
}

// echo is a plain gobwas/ws echo, a goroutine per connection: the floor
// measures the broadcast; cmd/floor is the echo's.
func (l *floorLib) echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			p, op, err := wsutil.ReadClientData(c)
			if err != nil {
				return
			}
			if err := wsutil.WriteServerMessage(c, op, p); err != nil {
				return
			}
		}
	})
}

func (l *floorLib) room() (http.Handler, func(bool, []byte)) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer c.Close()
		fd, err := adoptSocket(c)
		if err != nil {
			return
		}
		s := &l.shards[l.next.Add(1)%uint64(len(l.shards))]
		s.mu.Lock()
		s.fds = append(s.fds, fd)
		s.mu.Unlock()
	})
	return h, func(text bool, p []byte) { l.publishBatch(text, [][]byte{p}) }
}

// adoptSocket returns a non-blocking duplicate of c's descriptor, which
// outlives c.
func adoptSocket(c net.Conn) (int, error) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) })
	if derr != nil {
		return -1, derr
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (l *floorLib) counts() (messagesOut, writes uint64) {
	return l.messages.Load(), l.writes.Load()
}

// publishBatch frames each payload once and writes all of them to every
// member: a write for one, a writev for more.
func (l *floorLib) publishBatch(text bool, ps [][]byte) {
	op := ws.OpBinary
	if text {
		op = ws.OpText
	}
	frames := make([][]byte, len(ps))
	for i, p := range ps {
		frames[i] = frame(op, p)
	}
	l.publishing.Lock()
	defer l.publishing.Unlock()
	var wg sync.WaitGroup
	for i := range l.shards {
		wg.Go(func() { l.writeShard(&l.shards[i], frames) })
	}
	wg.Wait()
}

// frame encodes an unmasked server frame.
func frame(op ws.OpCode, p []byte) []byte {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	b := make([]byte, 0, ws.HeaderSize(h)+len(p))
	w := &appendWriter{b}
	ws.WriteHeader(w, h)
	return append(w.b, p...)
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func (l *floorLib) writeShard(s *floorShard, frames [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var iov [64]unix.Iovec
	kept := s.fds[:0]
	for _, fd := range s.fds {
		if l.writeAll(fd, frames, iov[:]) {
			kept = append(kept, fd)
			l.messages.Add(uint64(len(frames)))
		} else {
			syscall.Close(fd)
		}
	}
	clear(s.fds[len(kept):])
	s.fds = kept
}

// writeAll writes frames to fd, waiting while the socket is full, and
// reports false if the socket failed.
func (l *floorLib) writeAll(fd int, frames [][]byte, iov []unix.Iovec) bool {
	first, skip := 0, 0 // the next frame and its bytes already written
	for first < len(frames) {
		k := 0
		for i := first; i < len(frames) && k < len(iov); i++ {
			b := frames[i]
			if i == first {
				b = b[skip:]
			}
			iov[k].Base = &b[0]
			iov[k].SetLen(len(b))
			k++
		}
		var n uintptr
		var errno syscall.Errno
		l.writes.Add(1)
		if k == 1 {
			b := frames[first][skip:]
			n, _, errno = syscall.Syscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		} else {
			n, _, errno = syscall.Syscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		}
		if errno == syscall.EAGAIN {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if errno != 0 {
			return false
		}
		for left := int(n); left > 0; {
			if rest := len(frames[first]) - skip; left >= rest {
				left -= rest
				first, skip = first+1, 0
			} else {
				skip += left
				left = 0
			}
		}
	}
	return true
}
