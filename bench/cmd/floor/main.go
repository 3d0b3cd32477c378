//go:build linux

// Command floor is the floor of an echo benchmark: about the least a
// server can do per round trip on Linux, one read and one write on a ready
// socket, with an epoll_wait to find it.
//
//	go run ./cmd/floor -addr 127.0.0.1:9002
//
// It upgrades each connection with gobwas/ws (any path), takes its
// descriptor from the Go runtime, and serves it from one of -loops event
// loops, each a goroutine locked to its thread and blocked in epoll_wait
// (level-triggered, 128 events at a time, one 4 KiB read buffer). Each
// masked client frame is unmasked in place and written back behind a
// rewritten header, with one read and one write for a frame that arrives
// whole; no control frames, fragments or frames over 4 KiB (such a
// connection is closed, as is one whose write does not complete at once).
// It is a measuring stick, not a server: no limits, no timeouts.
//
// With -raw it is the floor of moving bytes instead: after the upgrade,
// each connection's goroutine reads up to 64 KiB at a time and writes back
// what it read, frames or not, as a bare TCP echo would (cmd/results'
// fragments scenario sends it a fragmented message and reads the same
// bytes back).
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"runtime"
	"syscall"

	"github.com/gobwas/ws"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9002", "address to listen on")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops")
	raw := flag.Bool("raw", false, "after the upgrade, echo the bytes as they come, a goroutine per connection, without parsing frames")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *raw {
		log.Fatal(serveRaw(ln))
	}
	log.Fatal(serve(ln, *loops))
}

// serveRaw upgrades each connection accepted on ln and then echoes its
// bytes raw, until Accept fails.
func serveRaw(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if _, err := ws.Upgrade(c); err != nil {
				return
			}
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
		}()
	}
}

// serve starts the loops and hands them the connections accepted on ln,
// in turn, until Accept fails. The loops run until the process exits.
func serve(ln net.Listener, loops int) error {
	ls := make([]*loop, loops)
	for i := range ls {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return err
		}
		ls[i] = &loop{epfd: fd, carry: make(map[int32][]byte)}
		go ls[i].run()
	}
	for n := 0; ; n++ {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			// io.EOF: a connection that only checked the port.
			if err := adopt(c, ls[n%len(ls)]); err != nil && err != io.EOF {
				log.Print(err)
			}
		}()
	}
}

// adopt upgrades c, then moves its socket to l: a duplicate of the
// descriptor, non-blocking, outlives c.
func adopt(c net.Conn, l *loop) error {
	defer c.Close()
	// The client sends nothing before the response, so nothing read
	// ahead is lost with c.
	if _, err := ws.Upgrade(c); err != nil {
		return err
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var derr error
	rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) })
	if derr != nil {
		return derr
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return err
	}
	return nil
}

// bufSize is each loop's read buffer, and so the largest frame it takes.
const bufSize = 4096

// loop is one event loop. Only its goroutine touches carry; close deletes a
// descriptor's entry before the number can be reused.
type loop struct {
	epfd  int
	carry map[int32][]byte // the start of an unfinished frame, by descriptor
}

func (l *loop) run() {
	runtime.LockOSThread()
	events := make([]syscall.EpollEvent, 128)
	buf := make([]byte, bufSize)
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
func (l *loop) ready(fd int32, buf []byte) {
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
		used, ok := echo(int(fd), p)
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

// echo answers the masked client frame at the start of p and returns the
// bytes it used: 0 if p holds only part of a frame. ok is false for a frame
// the floor does not take (unmasked, fragmented, a length of 64 bits or
// past the buffer) or a write that did not complete.
func echo(fd int, p []byte) (used int, ok bool) {
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
	if hdr+4+size > bufSize {
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

func (l *loop) close(fd int32) {
	delete(l.carry, fd)
	syscall.Close(int(fd)) // also removes it from the epoll set
}
