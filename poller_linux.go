package wshub

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// netpoll is one epoll instance. Sockets are registered once, edge-triggered,
// for reading and writing, so that a connection never needs another
// epoll_ctl call in its life: an edge is reported only when a socket goes
// from empty to readable or from full to writable, which costs an idle
// connection nothing.
//
// The instance is itself registered with the Go runtime's netpoller (an
// epoll descriptor is readable while events are ready), and wait never
// blocks in epoll_wait: a loop with nothing to do parks its goroutine, not
// its thread, and the runtime resumes it when events come. A thread blocked
// in epoll_wait costs a context switch each time it sleeps and wakes, and
// the runtime's retaking of its P, which a goroutine parked in the
// runtime's netpoller does not.
type netpoll struct {
	epfd   int
	wakefd int      // eventfd that interrupts wait
	file   *os.File // epfd, known to the runtime's netpoller
	raw    syscall.RawConn
	events []unix.EpollEvent

	// collect is what raw.Read calls, made once, with its results: a
	// closure made per wait would be an allocation per wait.
	collect func(fd uintptr) bool
	n       int
	err     error
}

func openNetpoll() (*netpoll, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, err
	}
	// Non-blocking, so that os.NewFile registers it with the runtime.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, err
	}
	file := os.NewFile(uintptr(epfd), "wshub-epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		unix.Close(wakefd)
		file.Close()
		return nil, err
	}
	p := &netpoll{epfd: epfd, wakefd: wakefd, file: file, raw: raw, events: make([]unix.EpollEvent, 256)}
	p.collect = func(fd uintptr) bool {
		p.n, p.err = unix.EpollWait(int(fd), p.events, 0)
		return p.n != 0 || p.err != nil && p.err != unix.EINTR
	}
	return p, nil
}

func (p *netpoll) add(fd int) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(fd),
	}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// wait returns the number of events to read with event. With block it
// waits until a socket is ready or wake is called; without, it only
// collects what is ready now.
func (p *netpoll) wait(block bool) (int, error) {
	var n int
	var err error
	if !block {
		n, err = unix.EpollWait(p.epfd, p.events, 0)
	} else {
		// Read parks the goroutine until epfd is readable whenever
		// collect reports false, and calls it again.
		if rerr := p.raw.Read(p.collect); rerr != nil {
			return 0, rerr // closed
		}
		n, err = p.n, p.err
	}
	if err == unix.EINTR {
		return 0, nil
	}
	return n, err
}

// event returns the i-th event of the last wait; fd is -1 for a wake-up.
func (p *netpoll) event(i int) (fd int, ev pollEvent) {
	e := &p.events[i]
	if int(e.Fd) == p.wakefd {
		var b [8]byte
		unix.Read(p.wakefd, b[:])
		return -1, 0
	}
	if e.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		ev |= pollRead
	}
	if e.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		ev |= pollWrite
	}
	if e.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		ev |= pollHup
	}
	return int(e.Fd), ev
}

func (p *netpoll) wake() {
	one := [8]byte{1}
	unix.Write(p.wakefd, one[:])
}

func (p *netpoll) close() {
	unix.Close(p.wakefd)
	p.file.Close() // and epfd with it
}
