//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package wshub

import (
	"golang.org/x/sys/unix"
)

// netpoll is one kqueue. Sockets are registered once with EV_CLEAR for
// reading and writing, which makes both filters edge-triggered, as the epoll
// poller does. A pipe wakes it, because EVFILT_USER is missing on OpenBSD.
type netpoll struct {
	kq     int
	wake0  int // read end of the wake pipe
	wake1  int // write end
	events []unix.Kevent_t
	noWait unix.Timespec // zero: the timeout of a wait that does not block
}

func openNetpoll() (*netpoll, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(kq)
	var pfd [2]int
	if err := unix.Pipe(pfd[:]); err != nil {
		unix.Close(kq)
		return nil, err
	}
	for _, fd := range pfd {
		unix.CloseOnExec(fd)
		unix.SetNonblock(fd, true)
	}
	p := &netpoll{kq: kq, wake0: pfd[0], wake1: pfd[1], events: make([]unix.Kevent_t, 256)}
	var ch [1]unix.Kevent_t
	unix.SetKevent(&ch[0], p.wake0, unix.EVFILT_READ, unix.EV_ADD|unix.EV_CLEAR)
	if _, err := unix.Kevent(kq, ch[:], nil, nil); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *netpoll) add(fd int) error {
	var ch [2]unix.Kevent_t
	unix.SetKevent(&ch[0], fd, unix.EVFILT_READ, unix.EV_ADD|unix.EV_CLEAR)
	unix.SetKevent(&ch[1], fd, unix.EVFILT_WRITE, unix.EV_ADD|unix.EV_CLEAR)
	_, err := unix.Kevent(p.kq, ch[:], nil, nil)
	return err
}

// wait returns the number of events to read with event. With block it
// waits until a socket is ready or wake is called; without, it only
// collects what is ready now.
func (p *netpoll) wait(block bool) (int, error) {
	var timeout *unix.Timespec
	if !block {
		timeout = &p.noWait
	}
	n, err := unix.Kevent(p.kq, nil, p.events, timeout)
	if err == unix.EINTR {
		return 0, nil
	}
	return n, err
}

// event returns the i-th event of the last wait; fd is -1 for a wake-up.
func (p *netpoll) event(i int) (fd int, ev pollEvent) {
	e := &p.events[i]
	fd = int(e.Ident)
	if fd == p.wake0 {
		var b [64]byte
		unix.Read(p.wake0, b[:])
		return -1, 0
	}
	switch {
	case e.Flags&(unix.EV_EOF|unix.EV_ERROR) != 0:
		ev = pollRead | pollWrite | pollHup
	case e.Filter == unix.EVFILT_READ:
		ev = pollRead
	case e.Filter == unix.EVFILT_WRITE:
		ev = pollWrite
	}
	return fd, ev
}

func (p *netpoll) wake() {
	unix.Write(p.wake1, []byte{1})
}

func (p *netpoll) close() {
	unix.Close(p.wake0)
	unix.Close(p.wake1)
	unix.Close(p.kq)
}
