//go:build linux

package main

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// floorLib is the floor: no library, the least a server can do. Each
// connection is upgraded with gobwas/ws, then its socket taken from the Go
// runtime (a non-blocking duplicate of the descriptor) and served with
// bare system calls.
//
// On /echo the socket goes to one of GOMAXPROCS event loops, as a hub
// spreads its connections: one read and one write per round trip
// (floor_echo.go). On /raw a goroutine echoes the bytes that arrive, frames
// or not. In /room the socket is only ever written to: a publish frames
// its messages once and writes them to every member straight from the
// publishing goroutine, spread over GOMAXPROCS goroutines: a write of the
// frame for a single message, one writev of every frame for a burst (the
// /publish route hands the floor a burst as a batch). A socket too full to
// take it all is retried after 50 µs, which costs no CPU; one that fails
// is closed. It is a measuring stick, not a server: no pings, no limits,
// no timeouts.
type floorLib struct {
	loops      []*echoLoop
	nextLoop   atomic.Uint64
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

func newFloor() (*floorLib, error) {
	loops, err := startEchoLoops(runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	return &floorLib{loops: loops, shards: make([]floorShard, runtime.GOMAXPROCS(0))}, nil
}

// echo hands each upgraded socket to an event loop.
func (l *floorLib) echo() http.Handler {
	return adopting(func(fd int) {
		loop := l.loops[l.nextLoop.Add(1)%uint64(len(l.loops))]
		if err := loop.add(fd); err != nil {
			syscall.Close(fd)
		}
	})
}

// raw echoes the bytes that follow the upgrade as they come, 64 KiB reads
// on a goroutine per connection: the floor of moving a fragmented
// message's bytes, which the client gets back as it sent them.
func (l *floorLib) raw() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

func (l *floorLib) room() (http.Handler, func(bool, []byte)) {
	h := adopting(func(fd int) {
		s := &l.shards[l.next.Add(1)%uint64(len(l.shards))]
		s.mu.Lock()
		s.fds = append(s.fds, fd)
		s.mu.Unlock()
	})
	return h, func(text bool, p []byte) { l.publishBatch(text, [][]byte{p}) }
}

// adopting upgrades each connection and hands its socket to adopt, as a
// non-blocking duplicate of the descriptor that outlives the connection.
func adopting(adopt func(fd int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer c.Close()
		if fd, err := adoptSocket(c); err == nil {
			adopt(fd)
		}
	})
}

// adoptSocket returns a non-blocking duplicate of c's descriptor, which
// outlives c. The client sends nothing before the upgrade's response, so
// nothing read ahead is lost with c.
func adoptSocket(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("floor: a %T has no descriptor", c)
	}
	rc, err := sc.SyscallConn()
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
