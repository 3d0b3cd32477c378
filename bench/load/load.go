// Package load drives WebSocket servers from many client connections and
// measures what they deliver. It is shared by cmd/wsload, which runs it
// against any ws:// URL, and cmd/results, which runs it against each
// library's server in turn.
package load

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Conn is one client connection with a reader positioned after the handshake.
type Conn struct {
	net.Conn
	br *bufio.Reader
}

// Dial opens n upgraded connections to url, dialing up to 100 at a time,
// and returns them with the time each upgrade took.
func Dial(ctx context.Context, url string, n int) ([]*Conn, []time.Duration, error) {
	conns := make([]*Conn, n)
	lat := make([]time.Duration, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			nc, br, _, err := ws.Dialer{Timeout: 30 * time.Second}.Dial(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			if br == nil {
				br = bufio.NewReaderSize(nc, 4096)
			}
			lat[i] = time.Since(start)
			conns[i] = &Conn{Conn: nc, br: br}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	return conns, lat, nil
}

// Frame encodes one masked client frame; the mask is fixed, which is
// allowed and spares the load generator the work of a new one per frame.
func Frame(op ws.OpCode, payload []byte) []byte {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(payload)), Masked: true, Mask: [4]byte{1, 2, 3, 4}}
	b := make([]byte, 0, ws.HeaderSize(h)+len(payload))
	w := &appendWriter{b: b}
	ws.WriteHeader(w, h)
	p := append([]byte(nil), payload...)
	ws.Cipher(p, h.Mask, 0)
	return append(w.b, p...)
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// ReadMessage reads one server frame into buf (grown if needed) and returns
// its payload; control frames other than close are skipped.
func (c *Conn) ReadMessage(buf []byte) ([]byte, error) {
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		if int64(cap(buf)) < h.Length {
			buf = make([]byte, h.Length)
		}
		p := buf[:h.Length]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpClose:
			code := 0
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			reason := ""
			if len(p) > 2 {
				reason = " " + string(p[2:])
			}
			return nil, fmt.Errorf("server closed the connection: %d%s", code, reason)
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			return p, nil
		}
	}
}

// EchoResult is what an echo run measured.
type EchoResult struct {
	Messages int           // round trips completed in the measured window
	Elapsed  time.Duration // the measured window
	P50, P99 time.Duration // round-trip latency
	Errors   int
}

// Rate returns round trips per second.
func (r EchoResult) Rate() float64 { return float64(r.Messages) / r.Elapsed.Seconds() }

// Echo runs a closed loop on every connection: send a message of size
// bytes, wait for it to come back, check it, repeat. Round trips are counted
// for d after a warm-up of warm.
func Echo(conns []*Conn, size int, warm, d time.Duration) EchoResult {
	return EchoWindow(conns, size, warm, d, nil)
}

// EchoWindow is Echo with a hook called at the start (true) and the end
// (false) of the measured window, to sample other figures over the same time.
func EchoWindow(conns []*Conn, size int, warm, d time.Duration, window func(start bool)) EchoResult {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	frame := Frame(ws.OpBinary, payload)
	var (
		counting atomic.Bool
		stop     atomic.Bool
		count    atomic.Int64
		errCount atomic.Int64
		mu       sync.Mutex
		lats     []time.Duration
		wg       sync.WaitGroup
	)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			var mine []time.Duration
			for !stop.Load() {
				start := time.Now()
				if _, err := c.Write(frame); err != nil {
					errCount.Add(1)
					return
				}
				p, err := c.ReadMessage(buf)
				if err != nil || len(p) != size || p[size-1] != payload[size-1] {
					errCount.Add(1)
					return
				}
				if counting.Load() {
					count.Add(1)
					mine = append(mine, time.Since(start))
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	time.Sleep(warm)
	if window != nil {
		window(true)
	}
	count.Store(0)
	counting.Store(true)
	start := time.Now()
	time.Sleep(d)
	n := count.Load()
	elapsed := time.Since(start)
	if window != nil {
		window(false)
	}
	stop.Store(true)
	wg.Wait()
	slices.Sort(lats)
	return EchoResult{
		Messages: int(n),
		Elapsed:  elapsed,
		P50:      percentile(lats, 0.50),
		P99:      percentile(lats, 0.99),
		Errors:   int(errCount.Load()),
	}
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// CloseAll closes every connection.
func CloseAll(conns []*Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// WaitPort waits until addr accepts TCP connections.
func WaitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("nothing listens on " + addr)
}

// ProcessCPU returns the user and system CPU time process pid has used, from
// /proc (Linux only).
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 12th and 13th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTick = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// Receiver counts the messages arriving on many connections.
type Receiver struct {
	received atomic.Int64
	errors   atomic.Int64
}

// Receive starts a reader on each connection that counts messages and
// checks that the sequence numbers in their first 8 bytes increase.
func Receive(conns []*Conn) *Receiver {
	r := new(Receiver)
	for _, c := range conns {
		go func() {
			buf := make([]byte, 2048)
			var last uint64
			for {
				p, err := c.ReadMessage(buf)
				if err != nil {
					return
				}
				if len(p) >= 8 {
					seq := binary.BigEndian.Uint64(p)
					if seq <= last {
						r.errors.Add(1)
					}
					last = seq
				}
				r.received.Add(1)
			}
		}()
	}
	return r
}

// Received returns the messages counted so far.
func (r *Receiver) Received() int64 { return r.received.Load() }

// OutOfOrder returns how many messages arrived out of publish order.
func (r *Receiver) OutOfOrder() int64 { return r.errors.Load() }

// WaitReceived waits until n messages have arrived in all, or d passes.
func (r *Receiver) WaitReceived(n int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for r.received.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}
