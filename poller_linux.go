package wshub

import (
	"golang.org/x/sys/unix"
)

// netpoll is one epoll instance. Sockets are registered once, edge-triggered,
// for reading and writing, so that a connection never needs another
// epoll_ctl call in its life: an edge is reported only when a socket goes
// from empty to readable or from full to writable, which costs an idle
// connection nothing.
type netpoll struct {
	epfd   int
	wakefd int // eventfd that interrupts wait
	events []unix.EpollEvent
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
	return &netpoll{epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, 256)}, nil
}

func (p *netpoll) add(fd int) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(fd),
	}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// wait blocks until sockets are ready or wake is called and returns the
// number of events to read with event.
func (p *netpoll) wait() (int, error) {
	n, err := unix.EpollWait(p.epfd, p.events, -1)
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
	unix.Close(p.epfd)
}
