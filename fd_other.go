//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package wshub

import (
	"errors"
	"net"
)

// hasNetpoll is false here: every connection takes the portable path.
const hasNetpoll = false

const maxIovecs = 8

var errNoNetpoll = errors.New("wshub: no netpoll on this system")

// netpoll is never opened on this system; its methods exist so that the
// shared loop code compiles.
type netpoll struct{}

func openNetpoll() (*netpoll, error)          { return nil, errNoNetpoll }
func (p *netpoll) add(int) error              { return errNoNetpoll }
func (p *netpoll) wait(bool) (int, error)     { return 0, errNoNetpoll }
func (p *netpoll) event(int) (int, pollEvent) { return -1, 0 }
func (p *netpoll) wake()                      {}
func (p *netpoll) close()                     {}
func takeFD(net.Conn) (int, bool)             { return -1, false }
func sysRead(int, []byte) (int, error)        { return 0, errNoNetpoll }
func sysPeek(int, []byte) (int, error)        { return 0, errNoNetpoll }
func sysWrite(int, []byte) (int, error)       { return 0, errNoNetpoll }
func sysWritev(int, [][]byte) (int, error)    { return 0, errNoNetpoll }
func sysClose(int)                            {}
func sysShutdown(int, bool)                   {}
func isWouldBlock(error) bool                 { return false }
func peerAddr(int) net.Addr                   { return nil }
