//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package wshub

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// hasNetpoll is true where the poller can wait on raw sockets.
const hasNetpoll = true

// takeFD detaches the socket behind nc from the Go runtime: it duplicates the
// descriptor and closes nc, so that the runtime's poll descriptor and any
// buffers around nc are freed and the hub alone owns the socket. It reports
// false, leaving nc open, when nc has no raw socket (TLS, net.Pipe).
func takeFD(nc net.Conn) (fd int, ok bool) {
	sc, isSC := nc.(syscall.Conn)
	if !isSC {
		return -1, false
	}
	// A *tls.Conn is no syscall.Conn; a type that wraps a socket but adds
	// framing of its own would be, so accept only the plain kinds.
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return -1, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, false
	}
	fd = -1
	var dupErr error
	err = rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err != nil || dupErr != nil {
		return -1, false
	}
	// The duplicate shares the open file description, which Go has already
	// made non-blocking; set it again in case a caller changed it.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, false
	}
	nc.Close()
	return fd, true
}

func sysRead(fd int, p []byte) (int, error) { return counted(unix.Read(fd, p)) }

// sysPeek reads what the socket holds into p without taking it.
func sysPeek(fd int, p []byte) (int, error) {
	n, _, err := unix.Recvfrom(fd, p, unix.MSG_PEEK)
	return counted(n, err)
}

func sysWrite(fd int, p []byte) (int, error) { return counted(unix.Write(fd, p)) }

// counted returns a system call's byte count, which is -1 on an error, as
// the count the io interfaces expect: 0 then.
func counted(n int, err error) (int, error) { return max(n, 0), err }

func sysClose(fd int) { unix.Close(fd) }

// sysShutdown shuts down the write side, or both sides when both is set.
// Unlike close it leaves the descriptor number allocated, so any goroutine
// may call it while the connection's owner still uses the descriptor.
func sysShutdown(fd int, both bool) {
	how := unix.SHUT_WR
	if both {
		how = unix.SHUT_RDWR
	}
	unix.Shutdown(fd, how)
}

func isWouldBlock(err error) bool { return err == unix.EAGAIN || err == unix.EINTR }

// peerAddr returns the address of the socket's peer, or nil.
func peerAddr(fd int) net.Addr {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return nil
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}
	}
	return nil
}
