//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package wshub

import (
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

const fuzzMaxMessage = 4096

// fuzzConn returns a connection over one end of a socket pair, not
// registered with any poller, so that a test can feed its parser directly.
// The peer end is drained and everything is closed when the test ends.
func fuzzConn(t testing.TB, h *Hub, state uint32) *Conn {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.SetNonblock(fd, true)
	}
	c := h.newConn(state)
	c.fd = int32(fds[0])
	if state == connHandshake {
		c.reader()
	}
	t.Cleanup(func() {
		if c.own&ownDone == 0 {
			c.dropReader()
			c.mu.Lock()
			if c.out != nil {
				c.out.discard()
				c.out = nil
			}
			c.mu.Unlock()
			unix.Close(fds[0])
		}
		unix.Close(fds[1])
	})
	return c
}

func fuzzHub(t testing.TB) *Hub {
	h, err := New(&Options{
		MaxMessageSize: fuzzMaxMessage,
		MaxQueuedBytes: 64 << 10,
		OnMessage: func(c *Conn, typ MessageType, p []byte) {
			if typ == Text && !utf8.Valid(p) {
				panic("OnMessage got invalid UTF-8 text")
			}
			if len(p) > fuzzMaxMessage {
				panic("OnMessage got a message over MaxMessageSize")
			}
			c.WriteMessage(typ, p)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// FuzzConnInput feeds arbitrary bytes, in arbitrary chunks, to the upgrade
// and frame parser. It checks that nothing panics, that input kept between
// reads never exceeds what the limits allow and is charged to the inbound
// budget exactly, and (in OnMessage) that only valid, bounded messages are
// delivered. The seeds run in every go test.
func FuzzConnInput(f *testing.F) {
	req := upgradeRequest("example.com")
	seeds := [][]byte{
		text("hello"),
		append(text("a"), clientFrame(true, opBinary, []byte{0, 1, 2}, true)...),
		append(append(clientFrame(false, opText, []byte("frag"), true),
			clientFrame(true, opPing, []byte("p"), true)...),
			clientFrame(true, opContinuation, []byte("ment"), true)...),
		clientFrame(true, opClose, closeBody(1000, "bye"), true),
		clientFrame(true, opClose, []byte{3}, true),
		clientFrame(true, opPing, make([]byte, 126), true),
		{0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		text(strings.Repeat("\xe2\x82\xac", 300)),
		clientFrame(true, opText, []byte("unmasked"), false),
		text("\xff"),
		[]byte(req),
		append([]byte(req), text("after the request")...),
		[]byte("GET / HTTP/1.0\r\n\r\n"),
	}
	for i, s := range seeds {
		f.Add(s, uint8(i))
	}
	h := fuzzHub(f)
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		state := connOpen
		if len(data) > 3 && string(data[:3]) == "GET" {
			state = connHandshake
		}
		c := fuzzConn(t, h, state)
		chunk := int(mode%64) + 1
		for len(data) > 0 && c.own&ownDone == 0 {
			n := min(chunk, len(data))
			c.onData(data[:n])
			data = data[n:]
			if rd := c.rd; rd != nil {
				limit := fuzzMaxMessage + maxHeaderSize
				if c.state.Load() == connHandshake {
					limit = maxRequestSize + chunk
				}
				if len(rd.buf) > limit {
					t.Fatalf("kept %d unparsed bytes, limit %d", len(rd.buf), limit)
				}
				if len(rd.msg) > fuzzMaxMessage {
					t.Fatalf("kept a %d-byte partial message, limit %d", len(rd.msg), fuzzMaxMessage)
				}
				if held := int64(cap(rd.buf) + cap(rd.msg)); rd.charged != held || rd.prepaid != 0 {
					t.Fatalf("budget: charged %d, prepaid %d for buffers of %d bytes", rd.charged, rd.prepaid, held)
				}
			}
		}
	})
}

// TestHugeHeaderAllocatesNothing checks that a frame header declaring 2^62
// bytes is refused from the header alone. It runs alone (no t.Parallel) so
// that the allocation count is its own.
func TestHugeHeaderAllocatesNothing(t *testing.T) {
	h := fuzzHub(t)
	huge := []byte{0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	conns := make([]*Conn, 100)
	for i := range conns {
		conns[i] = fuzzConn(t, h, connOpen)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, c := range conns {
		c.onData(huge)
		if c.err == nil || c.err.Code != CloseMessageTooBig {
			t.Fatalf("got %v, want close %d", c.err, CloseMessageTooBig)
		}
	}
	runtime.ReadMemStats(&after)
	if perConn := (after.TotalAlloc - before.TotalAlloc) / uint64(len(conns)); perConn > 1024 {
		t.Errorf("refusing the header allocated %d bytes per connection", perConn)
	}
}

// TestAnnouncedLengthAllocatesLittle feeds the parser directly and counts
// every allocation. It runs alone so that the count is its own.
func TestAnnouncedLengthAllocatesLittle(t *testing.T) {
	h := fuzzHub(t) // MaxMessageSize 4 KiB: announce all of it
	frame := clientFrame(true, opBinary, make([]byte, fuzzMaxMessage), true)
	conns := make([]*Conn, 100)
	for i := range conns {
		conns[i] = fuzzConn(t, h, connOpen)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, c := range conns {
		c.onData(frame[:8+10])
	}
	runtime.ReadMemStats(&after)
	// The read state and a buffer of the smallest pooled size.
	if perConn := (after.TotalAlloc - before.TotalAlloc) / uint64(len(conns)); perConn > 1024 {
		t.Errorf("10 bytes of a 4 KiB frame allocated %d bytes per connection", perConn)
	}
	for _, c := range conns {
		if got := c.rd.charged; got > 512 {
			t.Errorf("charged %d bytes for 10", got)
		}
	}
}

// TestRefusedFramesKeepTheStreamInStep feeds refused frames a byte at a
// time, then the peer's close frame: the parser must skip exactly the
// refused frames and see the close, which finishes the connection.
func TestRefusedFramesKeepTheStreamInStep(t *testing.T) {
	h := fuzzHub(t)
	inputs := map[string][]byte{
		"unmasked ping":   clientFrame(true, opPing, []byte("abc"), false),
		"long ping":       clientFrame(true, opPing, make([]byte, 200), true),
		"oversized text":  text(strings.Repeat("x", fuzzMaxMessage+1)),
		"reserved opcode": clientFrame(true, 0x3, []byte("hi"), true),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			c := fuzzConn(t, h, connOpen)
			stream := append(append(append([]byte{}, in...), text("ignored")...), clientFrame(true, opClose, closeBody(CloseNormal, ""), true)...)
			for i := range stream {
				c.onData(stream[i : i+1])
			}
			if c.own&ownDone == 0 {
				t.Fatalf("the peer's close frame was not seen: the stream lost its frame boundaries")
			}
		})
	}
}
