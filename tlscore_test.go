package wshub

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var tlsDoors = []door{doorNamed("https"), doorNamed("listener-tls")}

// capture is a client's socket that can hold back what its TLS client
// writes, so that a test sends the ciphertext as it likes, and records the
// types of the records it reads.
type capture struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	held    []byte
	types   []byte // outer types of the records read (TLS 1.2 shows alerts)
	partial []byte // a record header being read
	left    int    // bytes of the current record's body still to read
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	for b := p[:n]; len(b) > 0; {
		if c.left > 0 {
			k := min(c.left, len(b))
			c.left -= k
			b = b[k:]
			continue
		}
		k := min(5-len(c.partial), len(b))
		c.partial = append(c.partial, b[:k]...)
		b = b[k:]
		if len(c.partial) == 5 {
			c.types = append(c.types, c.partial[0])
			c.left = int(c.partial[3])<<8 | int(c.partial[4])
			c.partial = c.partial[:0]
		}
	}
	c.mu.Unlock()
	return n, err
}

// take returns what was held back and stops holding.
func (c *capture) take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	b := c.held
	c.held = nil
	return b
}

// connectCapture upgrades a TLS client whose socket is a capture.
func connectCapture(t *testing.T, addr string, cfg *tls.Config) (*client, *capture) {
	t.Helper()
	var cp *capture
	c := connectTLS(t, addr, cfg, func(nc net.Conn) net.Conn {
		cp = &capture{Conn: nc}
		return cp
	})
	return c, cp
}

func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
}

// TestTLSOnTheLoops checks that a wss:// connection of either door is served
// by the loops, not by a goroutine of its own, and that tls.Conn's read
// buffers, grown by the handshake and by a 64 KiB message, are emptied
// between reads.
func TestTLSOnTheLoops(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			type caps struct{ raw, hand int }
			seen := make(chan caps, 4)
			opts := &Options{OnMessage: func(c *Conn, typ MessageType, p []byte) {
				if len(p) == 1 { // the owner, between reads of tc
					raw, hand := tlsBuffers(c.cio.tc)
					seen <- caps{raw.Cap(), hand.Cap()}
				}
				c.WriteMessage(typ, p)
			}}
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			for conn := range h.Conns() {
				if !(conn.transport() == viaTLS) || conn.fd < 0 {
					t.Fatalf("the connection is not on the loops: fd %d, TLS %v", conn.fd, (conn.transport() == viaTLS))
				}
			}
			big := strings.Repeat("x", 64<<10)
			c.write(clientFrame(true, opText, []byte(big), true))
			c.expectMessage(opText, big)
			c.write(text("y"))
			c.expectMessage(opText, "y")
			got := <-seen
			if !tlsLayout.ok {
				t.Fatal("crypto/tls's layout is not the one the hub knows: its buffers are kept")
			}
			// While "y" is handled its record is in rawInput: a fresh
			// buffer for one small record, not the one the 64 KiB grew.
			if got.hand != 0 || got.raw > 4<<10 {
				t.Errorf("tls.Conn buffers during a small message: rawInput %d, hand %d bytes; want at most 4 KiB and 0", got.raw, got.hand)
			}
		})
	}
}

// TestTLSPartialRecord has a client send half a TLS record and stop: the
// hub charges what tls.Conn holds to the inbound budget, gives it back when
// the record is completed, and closes a peer that never completes it after
// ReadTimeout, as it does one that stops in the middle of a frame.
func TestTLSPartialRecord(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(true)
			opts.ReadTimeout = 300 * time.Millisecond
			h, addr := startHub(t, opts, d)

			c, cp := connectCapture(t, addr, clientTLS())
			cp.holding = true
			c.write(text(strings.Repeat("a", 1000)))
			record := cp.take()
			if _, err := cp.Conn.Write(record[:len(record)/2]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return h.Stats().BufferedBytes > 0 })
			cp.Conn.Write(record[len(record)/2:])
			c.expectMessage(opText, strings.Repeat("a", 1000))
			waitFor(t, func() bool { return h.Stats().BufferedBytes == 0 })

			c2, cp2 := connectCapture(t, addr, clientTLS())
			cp2.holding = true
			c2.write(text("never whole"))
			record = cp2.take()
			cp2.Conn.Write(record[:len(record)-1])
			rec.waitClosed(t) // c2; c stays
			if r := h.Stats().Reasons[ReasonReadTimeout]; r != 1 {
				t.Errorf("%d connections closed for a read timeout, want 1", r)
			}
			waitFor(t, func() bool { return h.Stats().BufferedBytes == 0 })
			c.write(text("still here"))
			c.expectMessage(opText, "still here")
		})
	}
}

// TestTLSShutdownSendsCloseNotify checks that Shutdown's close frame is
// followed by TLS's close_notify before the socket is shut (TLS 1.2, whose
// alert records show their type).
func TestTLSShutdownSendsCloseNotify(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, &Options{}, d)
			cfg := clientTLS()
			cfg.MaxVersion = tls.VersionTLS12
			c, cp := connectCapture(t, addr, cfg)
			done := make(chan error, 1)
			go func() { done <- h.Shutdown(context.Background()) }()
			c.expectClose(CloseGoingAway) // answers, reads to the end
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			cp.mu.Lock()
			types := cp.types
			cp.mu.Unlock()
			if len(types) == 0 || types[len(types)-1] != 21 {
				t.Errorf("record types read %v: want an alert (21), close_notify, last", types)
			}
		})
	}
}

// TestTLSCipherBacklogIsBounded stands for a peer that keeps asking for key
// updates and never reads: tls.Conn answers each through the hub's
// transport, by itself, outside every queue. What the socket does not take
// is bounded by maxCipherBacklog; past it the connection is closed as a
// slow consumer. The callback writes to the transport as tls.Conn does, in
// the owner's turn, since no client here can send a key update.
func TestTLSCipherBacklogIsBounded(t *testing.T) {
	t.Parallel()
	for _, d := range tlsDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			record := make([]byte, 16<<10)
			opts.OnMessage = func(c *Conn, typ MessageType, p []byte) {
				for range (32 << 20) / len(record) { // more than loopback's buffers take
					c.cio.Write(record)
				}
			}
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			c.write(text("update my keys")) // and never read
			got := rec.waitClosed(t)
			if got.err.Code != ClosePolicyViolation || got.err.Reason != ReasonSlowConsumer {
				t.Errorf("closed with %v, want %d %q", got.err, ClosePolicyViolation, ReasonSlowConsumer)
			}
			if n := h.Stats().Reasons[ReasonSlowConsumer]; n != 1 {
				t.Errorf("%d slow-consumer closes counted, want 1", n)
			}
		})
	}
}
