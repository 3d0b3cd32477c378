//go:build linux

package main

import (
	"log"
	"runtime"
	"syscall"
)

// The floor of the echo: about the least a server can do per round trip
// on Linux, one read and one write on a ready socket, with an epoll_wait
// to find it. Each loop is a goroutine locked to its thread and blocked in
// epoll_wait (level-triggered, 128 events at a time, one 4 KiB read
// buffer). Each masked client frame is unmasked in place and written back
// behind a rewritten header, with one read and one write for a frame that
// arrives whole; no control frames, fragments or frames over 4 KiB (such a
// connection is closed, as is one whose write does not complete at once).

// echoBufSize is each loop's read buffer, and so the largest frame it takes.
const echoBufSize = 4096

// echoLoop is one event loop. Only its goroutine touches carry; close
// deletes a descriptor's entry before the number can be reused.
type echoLoop struct {
	epfd  int
	carry map[int32][]byte // the start of an unfinished frame, by descriptor
}

// startEchoLoops starts n loops, which run until the process exits: a
// measuring stick has no way to stop.
func startEchoLoops(n int) ([]*echoLoop, error) {
	ls := make([]*echoLoop, n)
	for i := range ls {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return nil, err
		}
		ls[i] = &echoLoop{epfd: fd, carry: make(map[int32][]byte)}
		go ls[i].run()
	}
	return ls, nil
}

// add serves the non-blocking socket fd from l.
func (l *echoLoop) add(fd int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	return syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

func (l *echoLoop) run() {
	runtime.LockOSThread()
	events := make([]syscall.EpollEvent, 128)
	buf := make([]byte, echoBufSize)
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range events[:n] {
			l.ready(ev.Fd, buf)
		}
	}
}

// ready reads what fd has and echoes each complete frame: unmasked in
// place, its header rewritten in front of it, one write. The bytes of an
// unfinished frame wait in carry (rare on loopback: a frame arrives whole).
func (l *echoLoop) ready(fd int32, buf []byte) {
	c := l.carry[fd]
	n, err := syscall.Read(int(fd), buf[len(c):])
	if err == syscall.EAGAIN {
		return
	}
	if n <= 0 {
		l.close(fd)
		return
	}
	p := buf[:len(c)+n]
	copy(p, c)
	for len(p) > 0 {
		used, ok := echoFrame(int(fd), p)
		if !ok {
			l.close(fd)
			return
		}
		if used == 0 {
			break
		}
		p = p[used:]
	}
	if len(p) > 0 {
		l.carry[fd] = append(c[:0], p...)
	} else if c != nil {
		delete(l.carry, fd)
	}
}

// echoFrame answers the masked client frame at the start of p and returns
// the bytes it used: 0 if p holds only part of a frame. ok is false for a
// frame the floor does not take (unmasked, fragmented, a length of 64 bits
// or past the buffer) or a write that did not complete.
func echoFrame(fd int, p []byte) (used int, ok bool) {
	if len(p) < 2 {
		return 0, true
	}
	if p[0]&0x80 == 0 || p[1]&0x80 == 0 {
		return 0, false
	}
	size, hdr := int(p[1]&0x7f), 2
	switch {
	case size == 127:
		return 0, false
	case size == 126:
		if len(p) < 4 {
			return 0, true
		}
		size, hdr = int(p[2])<<8|int(p[3]), 4
	}
	if hdr+4+size > echoBufSize {
		return 0, false
	}
	if len(p) < hdr+4+size {
		return 0, true
	}
	var mask [4]byte
	copy(mask[:], p[hdr:hdr+4])
	payload := p[hdr+4 : hdr+4+size]
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
	// The server's header, unmasked, ends where the payload starts.
	var out []byte
	if hdr == 2 {
		out = p[4 : 6+size]
		out[0], out[1] = p[0], byte(size)
	} else {
		out = p[4 : 8+size]
		out[0], out[1], out[2], out[3] = p[0], 126, byte(size>>8), byte(size)
	}
	if w, _ := syscall.Write(fd, out); w != len(out) {
		return 0, false
	}
	return hdr + 4 + size, true
}

func (l *echoLoop) close(fd int32) {
	delete(l.carry, fd)
	syscall.Close(int(fd)) // also removes it from the epoll set
}
