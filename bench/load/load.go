// Package load drives WebSocket servers from many client connections and
// measures what they deliver. It is shared by cmd/wsload, which runs it
// against any ws:// URL, and cmd/results, which runs it against each
// library's server in turn.
package load

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// Conn is one client connection with a reader positioned after the handshake.
type Conn struct {
	net.Conn
	br *bufio.Reader

	// Deflate is whether the server accepted permessage-deflate (only
	// offered by DialDeflate).
	Deflate bool
}

// Dial opens n upgraded connections to url, dialing up to 100 at a time,
// and returns them with the time each upgrade took.
func Dial(ctx context.Context, url string, n int) ([]*Conn, []time.Duration, error) {
	return dial(ctx, url, n, ws.Dialer{Timeout: 30 * time.Second})
}

// DeflateOffer is the permessage-deflate offer DialDeflate makes: no
// context takeover either way, as gorilla/websocket's client offers it, so
// that every message decompresses on its own.
var DeflateOffer = wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}

// DialDeflate is Dial with DeflateOffer in each upgrade request; each
// Conn's Deflate says whether the server accepted it. It sends nothing
// compressed; Receive inflates the compressed messages it gets.
func DialDeflate(ctx context.Context, url string, n int) ([]*Conn, []time.Duration, error) {
	return dial(ctx, url, n, ws.Dialer{Timeout: 30 * time.Second, Extensions: []httphead.Option{DeflateOffer.Option()}})
}

// dial opens n connections to url with d, up to 100 at a time. With
// d.TLSConfig set, each must be a TLS connection.
func dial(ctx context.Context, url string, n int, d ws.Dialer) ([]*Conn, []time.Duration, error) {
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
			nc, br, hs, err := d.Dial(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			if _, ok := nc.(*tls.Conn); d.TLSConfig != nil && !ok {
				nc.Close()
				errs <- fmt.Errorf("%s: not a TLS connection", url)
				return
			}
			if br == nil {
				br = bufio.NewReaderSize(nc, 4096)
			}
			lat[i] = time.Since(start)
			conns[i] = &Conn{Conn: nc, br: br}
			for _, ext := range hs.Extensions {
				conns[i].Deflate = conns[i].Deflate || string(ext.Name) == wsflate.ExtensionName
			}
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
// its payload; pings are answered, other control frames but close skipped.
func (c *Conn) ReadMessage(buf []byte) ([]byte, error) {
	_, p, err := c.readFrame(buf, nil)
	return p, err
}

// readFrame is ReadMessage that also returns the data frame's header and
// counts every frame's bytes, header included, in wire.
func (c *Conn) readFrame(buf []byte, wire *atomic.Int64) (ws.Header, []byte, error) {
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return h, nil, err
		}
		if wire != nil {
			wire.Add(int64(ws.HeaderSize(h)) + h.Length)
		}
		if int64(cap(buf)) < h.Length {
			buf = make([]byte, h.Length)
		}
		p := buf[:h.Length]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return h, nil, err
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
			return h, nil, fmt.Errorf("server closed the connection: %d%s", code, reason)
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			return h, p, nil
		case ws.OpPing:
			// Answered, as RFC 6455 asks: servers with a heartbeat (wshub
			// pings after 25 s of silence) close peers that do not. A
			// Write is whole even beside another goroutine's.
			if _, err := c.Write(Frame(ws.OpPong, p)); err != nil {
				return h, nil, err
			}
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
	// The hook runs at each end just before the count starts and is
	// read: whatever it samples lags the count by about the same at both
	// ends, and the lags cancel.
	if window != nil {
		window(false)
	}
	n := count.Load()
	elapsed := time.Since(start)
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

// Receiver counts the messages arriving on many connections.
type Receiver struct {
	received   atomic.Int64
	errors     atomic.Int64 // messages out of order
	lost       atomic.Int64 // sequence numbers skipped
	wire       atomic.Int64 // bytes read, frame headers included
	compressed atomic.Int64 // messages that came compressed (RSV1)
	bad        atomic.Int64 // compressed messages that did not inflate
	inflated   atomic.Int64 // compressed messages inflated and checked

	// latency holds publish to receipt of the binary messages that carry
	// a send time (see Stamp).
	latency atomic.Pointer[Histogram]
}

// StampSize is the size of a stamp: a binary benchmark message of at least
// this many bytes starts with its sequence number and the time it was
// published, in nanoseconds since the Unix epoch, both big-endian.
const StampSize = 16

// Stamp writes seq and the current time into the first StampSize bytes
// of p, which must be that long.
func Stamp(p []byte, seq uint64) {
	binary.BigEndian.PutUint64(p, seq)
	binary.BigEndian.PutUint64(p[8:], uint64(time.Now().UnixNano()))
}

// Stamped returns the publish time of a stamped binary message.
func Stamped(p []byte) (time.Time, bool) {
	if len(p) < StampSize {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(p[8:]))), true
}

// inflaters are shared by every Receiver's readers: a flate reader holds a
// 32 KiB window, too much to keep one per connection.
var inflaters = sync.Pool{New: func() any { return flate.NewReader(nil) }}

// inflateTail ends a permessage-deflate message (RFC 7692, 7.2.2): the
// sync marker the sender removed, then an empty final block.
var inflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// inflate decompresses one message compressed without context takeover
// into out, grown if needed.
func inflate(p, out []byte) ([]byte, error) {
	fr := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(fr)
	fr.(flate.Resetter).Reset(io.MultiReader(bytes.NewReader(p), bytes.NewReader(inflateTail)), nil)
	out = out[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// inflateSample is how many of Receive's connections inflate what they
// get: inflating is about as costly as the server's whole work per
// delivery, and the load generator shares the server's cores.
const inflateSample = 1000

// Receive starts a reader on each connection that counts messages and the
// bytes they took on the wire, and checks that their sequence numbers
// increase: the first 8 bytes of a binary message, the "seq" a FeedJSON
// message starts with. Compressed messages (RSV1; permessage-deflate
// without context takeover) are counted as such; they are inflated, and
// their sequence checked, on inflateSample of the connections spread
// evenly over conns (all if fewer), the others only count them.
//
// Each connection's messages must also be consecutive, after its first:
// the servers number every message published, so a gap is a message lost
// (Lost). Binary messages of StampSize bytes or more carry their publish
// time, and the time from it to receipt is recorded (Latency).
func Receive(conns []*Conn) *Receiver {
	r := new(Receiver)
	r.latency.Store(new(Histogram))
	every := max(1, len(conns)/inflateSample)
	for i, c := range conns {
		inflating := i%every == 0
		go func() {
			buf := make([]byte, 2048)
			var plain []byte // what compressed messages inflate to
			if inflating {
				plain = make([]byte, 2048)
			}
			var last uint64
			for {
				h, p, err := c.readFrame(buf, &r.wire)
				if err != nil {
					return
				}
				if h.Rsv1() {
					r.compressed.Add(1)
					if !inflating {
						r.received.Add(1)
						continue
					}
					if p, err = inflate(p, plain); err != nil {
						r.bad.Add(1)
						return
					}
					r.inflated.Add(1)
				}
				if seq, ok := Seq(p); ok {
					switch {
					case last != 0 && seq <= last:
						r.errors.Add(1)
					case last != 0 && seq > last+1:
						r.lost.Add(int64(seq - last - 1))
					}
					last = seq
				}
				if h.OpCode == ws.OpBinary && !h.Rsv1() {
					if at, ok := Stamped(p); ok {
						r.latency.Load().Record(time.Since(at))
					}
				}
				r.received.Add(1)
			}
		}()
	}
	return r
}

// Inflated returns how many compressed messages were inflated and checked.
func (r *Receiver) Inflated() int64 { return r.inflated.Load() }

// Wire returns the bytes the connections have read so far, frame headers
// included: what the server put on the wire.
func (r *Receiver) Wire() int64 { return r.wire.Load() }

// Compressed returns how many messages came compressed (RSV1 set).
func (r *Receiver) Compressed() int64 { return r.compressed.Load() }

// BadInflate returns how many compressed messages did not decompress; a
// connection stops reading at the first.
func (r *Receiver) BadInflate() int64 { return r.bad.Load() }

// Received returns the messages counted so far.
func (r *Receiver) Received() int64 { return r.received.Load() }

// OutOfOrder returns how many messages arrived out of publish order.
func (r *Receiver) OutOfOrder() int64 { return r.errors.Load() }

// Lost returns how many messages never arrived between two that did, on
// one connection: the gaps in its sequence numbers.
func (r *Receiver) Lost() int64 { return r.lost.Load() }

// Latency returns the publish-to-receipt times recorded since Receive or
// the last ResetLatency.
func (r *Receiver) Latency() *Histogram { return r.latency.Load() }

// ResetLatency starts a new record of latencies, for the next case.
func (r *Receiver) ResetLatency() { r.latency.Store(new(Histogram)) }

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
