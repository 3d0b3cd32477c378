package wshub

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// The project's own RFC 6455 conformance suite, written from the RFC
// (sections 5, 7 and 8): each section is a table of named cases, and every
// case runs through every door (net/http, the own listener, the portable
// variants, the ServeConn hand-offs, TLS on both doors, and net/http's TLS
// without Hub.Listener, on the portable path: confDoors). A case says what a
// client sends once upgraded, the frames the hub must answer with, in
// order, and how the connection must end; nothing else may come. Small
// inputs are sent twice, whole and a byte per write, so that every header
// and control frame is also cut across reads.
//
// Outcomes are not enough: a hub that reassembles a fragmented message by
// copying it whole for every fragment echoes it right, quadratically. The
// fragmentation and large-message cases also read the hub's count of the
// bytes reassembly copied (stats.copied) across one message on a fresh hub
// and require it to stay linear in the message (confCost).
//
// RFC 7692 (permessage-deflate) is in conformance_deflate_test.go.

// confKey is the masking key of the suite's client frames.
var confKey = [4]byte{0x9e, 0x37, 0x79, 0xb9}

// confHeader encodes a client frame header announcing n bytes of payload:
// fin, the reserved bits as they sit in the first byte (0x40 RSV1, 0x20
// RSV2, 0x10 RSV3), the opcode, a length field of form bits (7, 16 or 64;
// 0 picks the shortest, as RFC 6455 5.2 requires) and key, or no mask when
// key is nil.
func confHeader(fin bool, rsv, op byte, n uint64, form int, key *[4]byte) []byte {
	b := []byte{rsv | op&0x0f, 0}
	if fin {
		b[0] |= 0x80
	}
	if form == 0 {
		switch {
		case n <= 125:
			form = 7
		case n <= 0xffff:
			form = 16
		default:
			form = 64
		}
	}
	switch form {
	case 7:
		b[1] = byte(n)
	case 16:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, n)
	}
	if key != nil {
		b[1] |= 0x80
		b = append(b, key[:]...)
	}
	return b
}

// confEncode encodes a whole client frame carrying p, valid or not (see
// confHeader).
func confEncode(fin bool, rsv, op byte, p []byte, form int, key *[4]byte) []byte {
	b := append(confHeader(fin, rsv, op, uint64(len(p)), form, key), p...)
	if key != nil {
		ws.Cipher(b[len(b)-len(p):], *key, 0)
	}
	return b
}

// confFrame is a valid masked client frame carrying s.
func confFrame(fin bool, op byte, s string) []byte {
	return confEncode(fin, 0, op, []byte(s), 0, &confKey)
}

// confClose is a close frame carrying code and reason.
func confClose(code CloseCode, reason string) []byte {
	return confFrame(true, opClose, string(closeBody(code, reason)))
}

func confCat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// confMsg is a frame the hub must send: a final frame of op with payload.
type confMsg struct {
	op      byte
	payload string
}

// confCase is one conformance case.
type confCase struct {
	name string
	send []byte    // what the client sends once upgraded
	want []confMsg // the frames the hub must answer with, in order
	// close is the code of the close frame that must follow want: 0 means
	// none, the connection stays open and echoes a probe message;
	// CloseNoStatus means a close frame without a body.
	close  CloseCode
	reason string // the close reason, checked if set
	// peerClose says that send carries the client's close frame: the
	// client then has nothing to answer.
	peerClose bool
	// check, if set, runs once the case is over, with the case's hub.
	check func(t *testing.T, h *Hub)
}

// confBytewiseMax is the largest input also sent a byte per write.
const confBytewiseMax = 512

// confOptions returns the options of a conformance hub: every message is
// echoed to its sender, and the heartbeat is off, since a ping of the hub's
// would be a frame no case expects.
func confOptions() *Options {
	return &Options{
		PingInterval: -1,
		OnMessage:    func(c *Conn, typ MessageType, p []byte) { c.WriteMessage(typ, p) },
	}
}

// confLog reports how many cases a section has, for the suite's summary.
func confLog(t *testing.T, section string, cases int) {
	t.Logf("conformance %s: %d cases, each through %d doors", section, cases, len(doors))
}

// confSend writes p, whole or a byte per write. Errors are left to the
// reads that follow: a hub that hung up early shows there.
func confSend(c *client, p []byte, bytewise bool) {
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if !bytewise {
		c.nc.Write(p)
		return
	}
	for i := range p {
		if _, err := c.nc.Write(p[i : i+1]); err != nil {
			return
		}
	}
}

// confNext reads the hub's next frame, whatever it is.
func confNext(c *client) serverFrame {
	c.t.Helper()
	f, err := c.tryReadFrame(10 * time.Second)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// confExpect checks what the hub sends after a case's input: the frames of
// want in order, then either a close frame with code (and reason, if not
// empty), end of stream and nothing else, or, with code 0, nothing at all
// until a probe message, which must come back.
func confExpect(c *client, want []confMsg, code CloseCode, reason string, peerClose bool) {
	c.t.Helper()
	confExpectWith(c, confNext, want, code, reason, peerClose)
}

// confExpectWith is confExpect reading frames with next.
func confExpectWith(c *client, next func(*client) serverFrame, want []confMsg, code CloseCode, reason string, peerClose bool) {
	c.t.Helper()
	for i, w := range want {
		f := next(c)
		if !f.fin || f.op != w.op || string(f.payload) != w.payload {
			c.t.Fatalf("frame %d: got fin=%v op=%d, %d bytes %q; want final op=%d, %d bytes %q",
				i, f.fin, f.op, len(f.payload), trim(f.payload), w.op, len(w.payload), trim([]byte(w.payload)))
		}
	}
	if code == 0 {
		c.write(confFrame(true, opText, "probe"))
		if f := next(c); f.op != opText || string(f.payload) != "probe" {
			c.t.Fatalf("got op=%d %q, want the probe echoed: the connection must stay open", f.op, trim(f.payload))
		}
		return
	}
	f := next(c)
	if f.op != opClose {
		c.t.Fatalf("got op=%d %q, want a close frame %d", f.op, trim(f.payload), code)
	}
	switch {
	case code == CloseNoStatus && len(f.payload) != 0:
		c.t.Fatalf("got close %q, want a close frame without a body", f.payload)
	case code == CloseNoStatus:
	case len(f.payload) < 2:
		c.t.Fatalf("got close %q, want close %d", f.payload, code)
	default:
		got := CloseCode(binary.BigEndian.Uint16(f.payload))
		if got != code || reason != "" && string(f.payload[2:]) != reason {
			c.t.Fatalf("got close %d %q, want %d %q", got, f.payload[2:], code, reason)
		}
	}
	if !peerClose {
		c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		c.nc.Write(confFrame(true, opClose, string(f.payload[:min(2, len(f.payload))])))
	}
	confEnd(c)
}

// confEnd checks that nothing follows the hub's close frame and that the
// hub hangs up.
func confEnd(c *client) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatal("the hub did not close the connection after its close frame")
	}
	if n > 0 {
		c.t.Fatalf("got %d bytes after the close frame, want none", n)
	}
}

// confDoors are the doors the suite runs through: every door, and
// httpsForeign.
var confDoors = append(doors[:len(doors):len(doors)], httpsForeign)

// run connects to addr, sends the case's input and checks the answer.
func (tc *confCase) run(t *testing.T, addr string, bytewise bool) {
	c := connect(t, addr)
	confSend(c, tc.send, bytewise)
	confExpect(c, tc.want, tc.close, tc.reason, tc.peerClose)
}

// confRun runs cases through every door, on one echo hub per door (made
// with opts, if set, else confOptions), each case on its own connection,
// whole and, if short, a byte per write.
func confRun(t *testing.T, section string, cases []confCase, opts func() *Options) {
	confLog(t, section, len(cases))
	if opts == nil {
		opts = confOptions
	}
	for _, d := range confDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, opts(), d)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, addr, false)
					if len(tc.send) <= confBytewiseMax {
						t.Run("bytewise", func(t *testing.T) { tc.run(t, addr, true) })
					}
					if tc.check != nil {
						tc.check(t, h)
					}
				})
			}
		})
	}
}

// confRunFresh runs cases through every door, each on a hub of its own
// made with opts, for cases that check the hub's counters.
func confRunFresh(t *testing.T, section string, cases []confCase, opts func() *Options) {
	confLog(t, section, len(cases))
	for _, d := range confDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					h, addr := startHub(t, opts(), d)
					tc.run(t, addr, false)
					if tc.check != nil {
						tc.check(t, h)
					}
				})
			}
		})
	}
}

// confCost checks, from the hub's counter, what reassembling one message of
// size bytes copied into stored buffers (copied, the counter's move across
// that message alone): linear reassembly copies each byte about once, plus
// what geometric growth moves, at most as much again. stored says the
// message cannot have been handed over from a read buffer, so the counter
// must have moved.
func confCost(t *testing.T, copied uint64, size int, stored bool) {
	t.Helper()
	if bound := uint64(3*size + 64<<10); copied > bound {
		t.Errorf("reassembly copied %d bytes for a message of %d (%.1f per byte), want at most 3 per byte + 64 KiB = %d",
			copied, size, float64(copied)/float64(size), bound)
	}
	if stored && copied == 0 {
		t.Errorf("reassembly copied 0 bytes for a message of %d that had to be stored, want > 0: is stats.copied counted?", size)
	}
}

// confASCII returns n bytes of printable ASCII.
func confASCII(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// confUTF8 returns n bytes of valid UTF-8 that mixes characters of one to
// four bytes, so that fragments of any size cut some of them.
func confUTF8(n int) string {
	const pattern = "κόσμε € 😀 \U0010FFFF \uD7FF\uE000 ascii \u07FF\u0800 "
	s := strings.Repeat(pattern, n/len(pattern)+1)[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + strings.Repeat("x", n-len(s))
}

// confBinary returns n bytes of every value.
func confBinary(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>8)
	}
	return b
}

func TestConformanceFraming(t *testing.T) {
	t.Parallel()
	every := string(confBinary(256))
	var cases []confCase
	add := func(tc ...confCase) { cases = append(cases, tc...) }
	echo := func(op byte, s string) []confMsg { return []confMsg{{op, s}} }

	// Frames a server must accept (5.2, 5.5.2, 5.5.3): every length form at
	// its bounds, any masking key, pings answered, pongs ignored.
	add(
		confCase{name: "empty text", send: confFrame(true, opText, ""), want: echo(opText, "")},
		confCase{name: "empty binary", send: confFrame(true, opBinary, ""), want: echo(opBinary, "")},
		confCase{name: "125 bytes, 7-bit length", send: confFrame(true, opText, confASCII(125)), want: echo(opText, confASCII(125))},
		confCase{name: "126 bytes, 16-bit length", send: confFrame(true, opText, confASCII(126)), want: echo(opText, confASCII(126))},
		confCase{name: "65535 bytes, 16-bit length", send: confFrame(true, opBinary, confASCII(65535)), want: echo(opBinary, confASCII(65535))},
		confCase{name: "65536 bytes, 64-bit length", send: confFrame(true, opBinary, confASCII(65536)), want: echo(opBinary, confASCII(65536))},
		confCase{name: "binary of every byte value", send: confFrame(true, opBinary, every), want: echo(opBinary, every)},
		confCase{name: "zero masking key", send: confEncode(true, 0, opText, []byte("zero key"), 0, &[4]byte{}), want: echo(opText, "zero key")},
		confCase{name: "two messages in one write", send: confCat(confFrame(true, opText, "one"), confFrame(true, opBinary, "two")),
			want: []confMsg{{opText, "one"}, {opBinary, "two"}}},
		confCase{name: "empty ping", send: confFrame(true, opPing, ""), want: echo(opPong, "")},
		confCase{name: "ping of 125 bytes", send: confFrame(true, opPing, every[:125]), want: echo(opPong, every[:125])},
		confCase{name: "unsolicited pong ignored", send: confCat(confFrame(true, opPong, "unasked"), confFrame(true, opText, "after")), want: echo(opText, "after")},
	)

	// Reserved bits (5.2): no extension is negotiated, so any is an error.
	for _, r := range []struct {
		name string
		rsv  byte
		op   byte
	}{
		{"RSV1 on text", 0x40, opText}, {"RSV2 on text", 0x20, opText}, {"RSV3 on text", 0x10, opText},
		{"RSV1-3 on binary", 0x70, opBinary}, {"RSV1 on a ping", 0x40, opPing}, {"RSV2 on a pong", 0x20, opPong},
		{"RSV3 on a close", 0x10, opClose},
	} {
		p := "rsv"
		if r.op == opClose {
			p = string(closeBody(CloseNormal, ""))
		}
		add(confCase{name: r.name, send: confEncode(true, r.rsv, r.op, []byte(p), 0, &confKey), close: CloseProtocolError})
	}
	add(confCase{name: "RSV2 on a continuation", send: confCat(confFrame(false, opText, "a"), confEncode(true, 0x20, opContinuation, []byte("b"), 0, &confKey)),
		close: CloseProtocolError})

	// Reserved opcodes (5.2): 0x3-0x7 for data, 0xB-0xF for control.
	for _, op := range []byte{0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf} {
		add(confCase{name: fmt.Sprintf("reserved opcode %#x", op), send: confFrame(true, op, "reserved"), close: CloseProtocolError})
	}
	add(confCase{name: "reserved opcode inside a fragmented message", send: confCat(confFrame(false, opText, "a"), confFrame(true, 0x3, "b")),
		close: CloseProtocolError})

	// Masking (5.1, 5.3): every client frame is masked.
	add(
		confCase{name: "unmasked text", send: confEncode(true, 0, opText, []byte("bare"), 0, nil), close: CloseProtocolError},
		confCase{name: "unmasked empty binary", send: confEncode(true, 0, opBinary, nil, 0, nil), close: CloseProtocolError},
		confCase{name: "unmasked ping", send: confCat(confEncode(true, 0, opPing, []byte("bare"), 0, nil), confFrame(true, opText, "after")), close: CloseProtocolError},
		confCase{name: "unmasked close", send: confEncode(true, 0, opClose, closeBody(CloseNormal, ""), 0, nil), close: CloseProtocolError},
		confCase{name: "unmasked continuation", send: confCat(confFrame(false, opText, "a"), confEncode(true, 0, opContinuation, []byte("b"), 0, nil)),
			close: CloseProtocolError},
	)

	// Lengths (5.2): the shortest form only, and the 64-bit form's most
	// significant bit 0.
	for _, l := range []struct {
		n    int
		form int
	}{{0, 16}, {5, 16}, {125, 16}, {0, 64}, {125, 64}, {126, 64}, {65535, 64}} {
		add(confCase{name: fmt.Sprintf("%d bytes in a %d-bit length", l.n, l.form),
			send: confEncode(true, 0, opBinary, []byte(confASCII(l.n)), l.form, &confKey), close: CloseProtocolError})
	}
	add(
		confCase{name: "ping of 5 bytes in a 16-bit length", send: confEncode(true, 0, opPing, []byte("12345"), 16, &confKey), close: CloseProtocolError},
		confCase{name: "64-bit length with the top bit set", send: confHeader(true, 0, opBinary, 1<<63, 64, &confKey), close: CloseProtocolError},
		confCase{name: "64-bit length of all ones", send: confHeader(true, 0, opBinary, ^uint64(0), 64, &confKey), close: CloseProtocolError},
		confCase{name: "64-bit length with the top bit set, then bytes", send: append(confHeader(true, 0, opText, 1<<63|5, 64, &confKey), "hello"...),
			close: CloseProtocolError},
	)

	// Control frames (5.4, 5.5): at most 125 bytes, never fragmented.
	add(
		confCase{name: "ping of 126 bytes", send: confFrame(true, opPing, every[:126]), close: CloseProtocolError},
		confCase{name: "pong of 126 bytes", send: confFrame(true, opPong, every[:126]), close: CloseProtocolError},
		confCase{name: "close of 126 bytes", send: confClose(CloseNormal, confASCII(124)), close: CloseProtocolError, peerClose: true},
		confCase{name: "ping announcing 64 KiB, header only", send: confHeader(true, 0, opPing, 1<<16, 0, &confKey), close: CloseProtocolError},
		confCase{name: "fragmented ping", send: confFrame(false, opPing, "a"), close: CloseProtocolError},
		confCase{name: "fragmented pong", send: confFrame(false, opPong, "a"), close: CloseProtocolError},
		confCase{name: "fragmented close", send: confFrame(false, opClose, string(closeBody(CloseNormal, ""))), close: CloseProtocolError},
		confCase{name: "ping continued", send: confCat(confFrame(false, opPing, "a"), confFrame(true, opContinuation, "b")), close: CloseProtocolError},
	)

	// Message order (5.4): a continuation only inside a message, a new
	// message only after the last one's final frame.
	add(
		confCase{name: "continuation without a message", send: confFrame(true, opContinuation, "x"), close: CloseProtocolError},
		confCase{name: "non-final continuation without a message", send: confFrame(false, opContinuation, "x"), close: CloseProtocolError},
		confCase{name: "empty continuation without a message", send: confFrame(true, opContinuation, ""), close: CloseProtocolError},
		confCase{name: "continuation after a final frame", send: confCat(confFrame(true, opText, "done"), confFrame(true, opContinuation, "x")),
			want: echo(opText, "done"), close: CloseProtocolError},
		confCase{name: "text inside a fragmented text", send: confCat(confFrame(false, opText, "a"), confFrame(true, opText, "b")), close: CloseProtocolError},
		confCase{name: "binary inside a fragmented text", send: confCat(confFrame(false, opText, "a"), confFrame(true, opBinary, "b")), close: CloseProtocolError},
		confCase{name: "non-final text inside a fragmented binary", send: confCat(confFrame(false, opBinary, "a"), confFrame(false, opText, "b")),
			close: CloseProtocolError},
		confCase{name: "empty text inside a fragmented text", send: confCat(confFrame(false, opText, ""), confFrame(true, opText, "")), close: CloseProtocolError},
	)
	confRun(t, "framing", cases, nil)
}

// confFragCase is a message sent in fragments of frag bytes of payload,
// with a ping after every pingEvery fragments (0: none).
type confFragCase struct {
	size, frag int
	text       bool
	pingEvery  int
}

func (fc confFragCase) name() string {
	kind := "binary"
	if fc.text {
		kind = "text"
	}
	s := fmt.Sprintf("%s %d in %d-byte fragments", kind, fc.size, fc.frag)
	if fc.frag >= fc.size {
		s = fmt.Sprintf("%s %d in one frame", kind, fc.size)
	}
	if fc.pingEvery > 0 {
		s += fmt.Sprintf(", a ping every %d", fc.pingEvery)
	}
	return s
}

// stream returns the payload and the client's frames, and the payloads of
// the pings among them, in order.
func (fc confFragCase) stream() (payload []byte, stream []byte, pings []string) {
	op := byte(opBinary)
	payload = confBinary(fc.size)
	if fc.text {
		op, payload = opText, []byte(confUTF8(fc.size))
	}
	n := 0
	for i := 0; i == 0 || i < len(payload); i += fc.frag {
		end := min(i+fc.frag, len(payload))
		stream = append(stream, confEncode(end == len(payload), 0, op, payload[i:end], 0, &confKey)...)
		op = opContinuation
		if n++; fc.pingEvery > 0 && n%fc.pingEvery == 0 && end < len(payload) {
			p := fmt.Sprintf("ping %d", len(pings))
			pings = append(pings, p)
			stream = append(stream, confFrame(true, opPing, p)...)
		}
	}
	return payload, stream, pings
}

// TestConformanceFragmentation sends messages from 1 byte to MaxMessageSize
// in fragments of 1 byte to 64 KiB, some with pings between fragments: each
// ping's pong must come, in order, then the message whole; and, on a fresh
// hub per case, reassembly must copy a linear number of bytes.
func TestConformanceFragmentation(t *testing.T) {
	t.Parallel()
	const MiB = 1 << 20
	frags := []confFragCase{
		{size: 1, frag: 1}, {size: 2, frag: 1}, {size: 125, frag: 1, text: true},
		{size: 4096, frag: 1, text: true, pingEvery: 1}, {size: 64 << 10, frag: 1, pingEvery: 4096},
		{size: 3, frag: 2, text: true}, {size: 4097, frag: 2, text: true}, {size: 64<<10 + 1, frag: 2, pingEvery: 1000},
		{size: 1000, frag: 7, text: true, pingEvery: 10}, {size: 64 << 10, frag: 7},
		{size: 64 << 10, frag: 16, text: true, pingEvery: 512}, {size: MiB, frag: 16, pingEvery: 8192},
		{size: MiB, frag: 64, text: true, pingEvery: 2048},
		{size: MiB - 1, frag: 125, pingEvery: 1024},
		{size: 100000, frag: 4096, text: true}, {size: MiB, frag: 4096, pingEvery: 16},
		{size: MiB, frag: 65536, pingEvery: 1}, {size: MiB - 7, frag: 65536, text: true},
		{size: MiB, frag: MiB}, {size: MiB, frag: MiB, text: true},
	}
	type built struct {
		payload, stream []byte
		pings           []string
	}
	streams := make([]built, len(frags))
	for i, fc := range frags {
		streams[i].payload, streams[i].stream, streams[i].pings = fc.stream()
	}

	// Fragment shapes (5.4): empty fragments anywhere, control frames
	// between fragments.
	shapes := []confCase{
		{name: "empty first fragment", send: confCat(confFrame(false, opText, ""), confFrame(true, opContinuation, "abc")), want: []confMsg{{opText, "abc"}}},
		{name: "empty middle fragment", send: confCat(confFrame(false, opText, "ab"), confFrame(false, opContinuation, ""), confFrame(true, opContinuation, "c")),
			want: []confMsg{{opText, "abc"}}},
		{name: "empty last fragment", send: confCat(confFrame(false, opBinary, "abc"), confFrame(true, opContinuation, "")), want: []confMsg{{opBinary, "abc"}}},
		{name: "every fragment empty", send: confCat(confFrame(false, opText, ""), confFrame(false, opContinuation, ""), confFrame(true, opContinuation, "")),
			want: []confMsg{{opText, ""}}},
		{name: "ping between empty fragments", send: confCat(confFrame(false, opBinary, ""), confFrame(true, opPing, "p"), confFrame(true, opContinuation, "")),
			want: []confMsg{{opPong, "p"}, {opBinary, ""}}},
		{name: "pong between fragments ignored", send: confCat(confFrame(false, opText, "a"), confFrame(true, opPong, "p"), confFrame(true, opContinuation, "b")),
			want: []confMsg{{opText, "ab"}}},
		{name: "ping between every fragment", send: confCat(confFrame(false, opText, "a"), confFrame(true, opPing, "1"), confFrame(false, opContinuation, "b"),
			confFrame(true, opPing, "2"), confFrame(true, opContinuation, "c")), want: []confMsg{{opPong, "1"}, {opPong, "2"}, {opText, "abc"}}},
		{name: "messages back to back, fragmented and whole", send: confCat(confFrame(false, opText, "a"), confFrame(true, opContinuation, "b"),
			confFrame(true, opBinary, "c"), confFrame(false, opBinary, "d"), confFrame(true, opContinuation, "e")),
			want: []confMsg{{opText, "ab"}, {opBinary, "c"}, {opBinary, "de"}}},
	}
	confLog(t, "fragmentation (sizes)", len(frags))
	t.Run("shapes", func(t *testing.T) {
		t.Parallel()
		confRun(t, "fragmentation (shapes)", shapes, nil)
	})

	for _, d := range confDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for i, fc := range frags {
				t.Run(fc.name(), func(t *testing.T) {
					t.Parallel()
					s := streams[i]
					op := byte(opBinary)
					if fc.text {
						op = opText
					}
					h, addr := startHub(t, confOptions(), d)
					c := connect(t, addr)
					copied := h.stats.copied.Load()
					confEcho(t, c, s.stream, s.pings, op, s.payload)
					confCost(t, h.stats.copied.Load()-copied, fc.size, fc.size >= 64<<10 && fc.frag <= 4096)
				})
			}
		})
	}
}

// confEcho writes stream from a goroutine while it reads the answer: a pong
// for each of pings, in order, then the message op with payload, whole.
func confEcho(t *testing.T, c *client, stream []byte, pings []string, op byte, payload []byte) {
	t.Helper()
	wrote := make(chan error, 1)
	go func() {
		c.nc.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := c.nc.Write(stream)
		wrote <- err
	}()
	for i, p := range pings {
		f := confNext(c)
		if f.op != opPong || string(f.payload) != p {
			t.Fatalf("frame %d: got op=%d %q, want the pong %q", i, f.op, trim(f.payload), p)
		}
	}
	f := confNext(c)
	if !f.fin || f.op != op || !bytes.Equal(f.payload, payload) {
		t.Fatalf("got fin=%v op=%d, %d bytes, want final op=%d, %d bytes (first difference at byte %d)",
			f.fin, f.op, len(f.payload), op, len(payload), confDiff(f.payload, payload))
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
}

// TestConformanceUTF8 checks text messages against RFC 6455 8.1 and RFC
// 3629: valid text split at every byte across fragments comes back whole;
// invalid text (overlong forms, surrogates, code points past U+10FFFF,
// bytes that are never UTF-8, cut sequences) closes the connection with
// 1007, and in a fragmented message as soon as the fragment holding the
// invalid byte is complete, before the message ends: those cases never
// send the final fragment. So do close reasons.
func TestConformanceUTF8(t *testing.T) {
	t.Parallel()
	var cases []confCase
	add := func(tc ...confCase) { cases = append(cases, tc...) }

	// Every split of a string of one- to four-byte characters, the largest
	// code point and the neighbours of the surrogates among them.
	valid := "aé€😀\U0010FFFF\uD7FF\uE000\uFFFD"
	for i := 0; i <= len(valid); i++ {
		add(confCase{name: fmt.Sprintf("valid split at byte %d", i),
			send: confCat(confFrame(false, opText, valid[:i]), confFrame(true, opContinuation, valid[i:])), want: []confMsg{{opText, valid}}})
	}
	var perByte []byte
	for i := range len(valid) {
		op := byte(opContinuation)
		if i == 0 {
			op = opText
		}
		perByte = append(perByte, confFrame(i == len(valid)-1, op, valid[i:i+1])...)
	}
	add(confCase{name: "valid, a fragment per byte", send: perByte, want: []confMsg{{opText, valid}}})
	for _, s := range []struct{ name, s string }{
		{"U+0000", "\x00"}, {"U+007F", "\x7f"}, {"U+0080", "\u0080"}, {"U+07FF", "\u07ff"}, {"U+0800", "\u0800"},
		{"U+D7FF", "\ud7ff"}, {"U+E000", "\ue000"}, {"U+FEFF (BOM)", "\ufeff"}, {"U+FFFE (noncharacter)", "\ufffe"},
		{"U+FFFF", "\uffff"}, {"U+10000", "\U00010000"}, {"U+10FFFF", "\U0010ffff"},
	} {
		add(confCase{name: "valid " + s.name, send: confFrame(true, opText, "<"+s.s+">"), want: []confMsg{{opText, "<" + s.s + ">"}}})
	}
	add(confCase{name: "binary that is not UTF-8", send: confFrame(true, opBinary, "\xff\xfe\xc0\xaf\xed\xa0\x80"), want: []confMsg{{opBinary, "\xff\xfe\xc0\xaf\xed\xa0\x80"}}})

	// Invalid sequences, each in a whole message and, failing fast, at the
	// end of a first fragment, in a continuation, and split across two
	// fragments, with no final fragment.
	for _, s := range []struct{ name, s string }{
		{"lone continuation byte 0x80", "\x80"},
		{"lone continuation byte 0xBF", "\xbf"},
		{"overlong NUL in 2 bytes", "\xc0\x80"},
		{"overlong '/' in 2 bytes", "\xc0\xaf"},
		{"overlong U+007F in 2 bytes", "\xc1\xbf"},
		{"overlong '/' in 3 bytes", "\xe0\x80\xaf"},
		{"overlong U+07FF in 3 bytes", "\xe0\x9f\xbf"},
		{"overlong '/' in 4 bytes", "\xf0\x80\x80\xaf"},
		{"overlong U+FFFF in 4 bytes", "\xf0\x8f\xbf\xbf"},
		{"surrogate U+D800", "\xed\xa0\x80"},
		{"surrogate U+DBFF", "\xed\xaf\xbf"},
		{"surrogate U+DC00", "\xed\xb0\x80"},
		{"surrogate U+DFFF", "\xed\xbf\xbf"},
		{"surrogate pair (CESU-8)", "\xed\xa0\xbd\xed\xb8\x80"},
		{"U+110000", "\xf4\x90\x80\x80"},
		{"U+13FFFF", "\xf4\xbf\xbf\xbf"},
		{"lead byte 0xF5", "\xf5\x80\x80\x80"},
		{"U+1FFFFF (lead 0xF7)", "\xf7\xbf\xbf\xbf"},
		{"5-byte sequence", "\xf8\x88\x80\x80\x80"},
		{"6-byte sequence", "\xfc\x84\x80\x80\x80\x80"},
		{"byte 0xFE", "\xfe"},
		{"byte 0xFF", "\xff"},
		{"3-byte sequence cut by ASCII", "\xe2\x82x"},
		{"4-byte sequence cut by a new character", "\xf0\x9f\xe2\x82\xac"},
	} {
		bad := "ok " + s.s
		add(
			confCase{name: s.name + ", whole message", send: confFrame(true, opText, bad+" end"), close: CloseInvalidPayload},
			confCase{name: s.name + ", fails fast in a first fragment", send: confFrame(false, opText, bad), close: CloseInvalidPayload},
			confCase{name: s.name + ", fails fast in a continuation", send: confCat(confFrame(false, opText, "ok "), confFrame(false, opContinuation, s.s)),
				close: CloseInvalidPayload},
		)
		if len(s.s) > 1 {
			add(confCase{name: s.name + ", fails fast split across fragments",
				send: confCat(confFrame(false, opText, bad[:4]), confFrame(false, opContinuation, bad[4:])), close: CloseInvalidPayload})
		}
	}

	// A non-final fragment may end inside a character only if more bytes
	// can complete it; these prefixes cannot.
	for _, p := range []string{"\xc0", "\xc1", "\xe0\x80", "\xe0\x9f", "\xed\xa0", "\xed\xbf", "\xf0\x80", "\xf0\x8f", "\xf4\x90", "\xf5", "\xf8", "\xff"} {
		add(confCase{name: fmt.Sprintf("prefix % x that nothing completes, fails fast", p), send: confFrame(false, opText, "ok "+p), close: CloseInvalidPayload})
	}
	// The final fragment must not end inside a character.
	add(
		confCase{name: "message ending inside a character", send: confFrame(true, opText, "ok \xe2\x82"), close: CloseInvalidPayload},
		confCase{name: "final fragment ending inside a character", send: confCat(confFrame(false, opText, "ok "), confFrame(true, opContinuation, "\xf0\x9f\x98")),
			close: CloseInvalidPayload},
		confCase{name: "empty final fragment after a cut character", send: confCat(confFrame(false, opText, "ok \xe2\x82"), confFrame(true, opContinuation, "")),
			close: CloseInvalidPayload},
	)

	// Close reasons are UTF-8 too (5.5.1).
	for _, r := range []struct{ name, reason string }{
		{"byte 0xFF", "\xff"}, {"a surrogate", "bye \xed\xa0\x80"}, {"an overlong '/'", "\xc0\xaf"},
		{"a cut character", "bye \xe2\x82"}, {"U+110000", "\xf4\x90\x80\x80"},
	} {
		add(confCase{name: "close reason with " + r.name, send: confClose(CloseNormal, r.reason), close: CloseInvalidPayload, peerClose: true})
	}
	add(confCase{name: "close reason in multi-byte UTF-8", send: confClose(CloseNormal, "bye € 😀 κόσμε"), close: CloseNormal, peerClose: true})
	confRun(t, "utf8", cases, nil)
}

// TestConformanceClose checks the closing handshake (5.5.1, 7.4): the hub
// answers a valid close frame with the same code and hangs up, and fails a
// connection whose close frame carries a code no endpoint may send (1002),
// one byte, or more than 125 bytes.
func TestConformanceClose(t *testing.T) {
	t.Parallel()
	var cases []confCase
	// Codes an endpoint may send: RFC 6455's, the IANA registry's
	// 1012-1014, and the ranges for libraries and applications.
	for _, code := range []CloseCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, confCase{name: fmt.Sprintf("code %d echoed", code), send: confClose(code, "reason"), close: code, peerClose: true})
	}
	// Codes that must never be on the wire: unused, reserved for reports
	// (1004-1006, 1015), unassigned, or past the last range.
	for _, code := range []CloseCode{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, confCase{name: fmt.Sprintf("code %d refused", code), send: confClose(code, ""), close: CloseProtocolError, peerClose: true})
	}
	euro41 := strings.Repeat("€", 41) // 123 bytes
	cases = append(cases,
		confCase{name: "empty close echoed empty", send: confFrame(true, opClose, ""), close: CloseNoStatus, peerClose: true},
		confCase{name: "close of one byte", send: confFrame(true, opClose, "\x03"), close: CloseProtocolError, peerClose: true},
		confCase{name: "reason of 123 bytes", send: confClose(CloseNormal, confASCII(123)), close: CloseNormal, peerClose: true},
		confCase{name: "reason of 123 bytes in 3-byte characters", send: confClose(4000, euro41), close: 4000, peerClose: true},
		confCase{name: "reason of 124 bytes", send: confClose(CloseNormal, confASCII(124)), close: CloseProtocolError, peerClose: true},
		confCase{name: "close after a message", send: confCat(confFrame(true, opText, "last"), confClose(CloseNormal, "")),
			want: []confMsg{{opText, "last"}}, close: CloseNormal, peerClose: true},
		confCase{name: "nothing answered after the close", send: confCat(confClose(CloseGoingAway, ""), confFrame(true, opText, "late"), confFrame(true, opPing, "late")),
			close: CloseGoingAway, peerClose: true},
		confCase{name: "close between fragments", send: confCat(confFrame(false, opText, "never "), confClose(CloseNormal, ""), confFrame(true, opContinuation, "delivered")),
			close: CloseNormal, peerClose: true},
		confCase{name: "ping then close", send: confCat(confFrame(true, opPing, "p"), confClose(CloseNormal, "")), want: []confMsg{{opPong, "p"}},
			close: CloseNormal, peerClose: true},
	)
	confRun(t, "close", cases, nil)
}

// TestConformanceLimits checks MaxMessageSize, enforced at the header
// (1009) before any payload comes, and the bound on empty fragments (1008):
// a message may hold 16 empty non-final fragments, and the 17th closes the
// connection at once, even when 100,000 follow back to back.
func TestConformanceLimits(t *testing.T) {
	t.Parallel()
	const limit = 4096
	opts := func() *Options {
		o := confOptions()
		o.MaxMessageSize = limit
		o.ReadTimeout = 30 * time.Second
		return o
	}
	empties := func(op byte, n int) []byte {
		var b []byte
		for i := range n {
			o := byte(opContinuation)
			if i == 0 {
				o = op
			}
			b = append(b, confFrame(false, o, "")...)
		}
		return b
	}
	emptyCloses := func(want uint64) func(t *testing.T, h *Hub) {
		return func(t *testing.T, h *Hub) {
			t.Helper()
			if want > 0 {
				// Counted when the connection ends, which the client's
				// answer to the close frame has just brought about.
				waitFor(t, func() bool { return h.Stats().Conns == 0 })
			}
			if got := h.Stats().Reasons[ReasonEmptyFragments]; got != want {
				t.Errorf("Stats.Reasons[%q] = %d, want %d", ReasonEmptyFragments, got, want)
			}
		}
	}
	var spread []byte // "a", 8 empty, "b", 9 empty: 17 empty non-final in all
	spread = append(spread, confFrame(false, opText, "a")...)
	for range 8 {
		spread = append(spread, confFrame(false, opContinuation, "")...)
	}
	spread = append(spread, confFrame(false, opContinuation, "b")...)
	for range 9 {
		spread = append(spread, confFrame(false, opContinuation, "")...)
	}
	cases := []confCase{
		{name: "message of MaxMessageSize", send: confFrame(true, opBinary, confASCII(limit)), want: []confMsg{{opBinary, confASCII(limit)}}},
		{name: "fragments adding up to MaxMessageSize", send: confCat(confFrame(false, opText, confASCII(limit/2)), confFrame(true, opContinuation, confASCII(limit/2))),
			want: []confMsg{{opText, confASCII(limit/2) + confASCII(limit/2)}}},
		{name: "header announcing MaxMessageSize+1, refused before its payload", send: confHeader(true, 0, opBinary, limit+1, 0, &confKey), close: CloseMessageTooBig},
		{name: "continuation announcing a byte past MaxMessageSize, refused at its header",
			send: confCat(confFrame(false, opBinary, confASCII(limit)), confHeader(true, 0, opContinuation, 1, 0, &confKey)), close: CloseMessageTooBig},
		{name: "header announcing 2^62 bytes", send: confHeader(true, 0, opBinary, 1<<62, 0, &confKey), close: CloseMessageTooBig},
		{name: "16 empty non-final fragments, then data", send: confCat(empties(opText, 16), confFrame(true, opContinuation, "data")),
			want: []confMsg{{opText, "data"}}, check: emptyCloses(0)},
		{name: "16 empty non-final fragments and an empty final one", send: confCat(empties(opBinary, 16), confFrame(true, opContinuation, "")),
			want: []confMsg{{opBinary, ""}}, check: emptyCloses(0)},
		{name: "16 empty non-final fragments in each of two messages",
			send: confCat(empties(opText, 16), confFrame(true, opContinuation, "one"), empties(opText, 16), confFrame(true, opContinuation, "two")),
			want: []confMsg{{opText, "one"}, {opText, "two"}}, check: emptyCloses(0)},
		{name: "17 empty non-final text fragments", send: empties(opText, 17), close: ClosePolicyViolation, reason: ReasonEmptyFragments, check: emptyCloses(1)},
		{name: "17 empty non-final binary fragments", send: empties(opBinary, 17), close: ClosePolicyViolation, reason: ReasonEmptyFragments, check: emptyCloses(1)},
		{name: "17 empty non-final fragments among data", send: spread, close: ClosePolicyViolation, reason: ReasonEmptyFragments, check: emptyCloses(1)},
	}
	confRunFresh(t, "limits", cases, opts)

	// 100,000 empty non-final fragments back to back: the close must come at
	// the 17th, not at ReadTimeout.
	confLog(t, "limits (flood)", 1)
	flood := empties(opBinary, 100000)
	for _, d := range confDoors {
		t.Run(d.name+"/100000 empty fragments", func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, opts(), d)
			c := connect(t, addr)
			start := time.Now()
			wrote := make(chan struct{})
			go func() {
				c.nc.SetWriteDeadline(time.Now().Add(time.Minute))
				c.nc.Write(flood)
				close(wrote)
			}()
			f, err := c.tryReadFrame(10 * time.Second)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("after %v: %v, want close 1008 %q", took, err, ReasonEmptyFragments)
			}
			if f.op != opClose || string(f.payload) != string(closeBody(ClosePolicyViolation, ReasonEmptyFragments)) {
				t.Fatalf("got op=%d %q, want close 1008 %q", f.op, trim(f.payload), ReasonEmptyFragments)
			}
			if took > 5*time.Second {
				t.Errorf("closed after %v, want promptly (ReadTimeout is 30 s)", took)
			}
			<-wrote
			c.nc.Write(confClose(ClosePolicyViolation, ""))
			confEnd(c)
			emptyCloses(1)(t, h)
		})
	}
}

// TestConformanceLargeMessages echoes messages of 1 to 16 MiB at a raised
// MaxMessageSize (with MaxQueuedBytes just large enough for the echo's
// frame), the client writing while it reads, and checks that reassembly
// copied a linear number of bytes. 16 MiB in fragments runs through a door
// of each kind (raw socket, portable, TLS) to keep the suite's time under
// -race.
func TestConformanceLargeMessages(t *testing.T) {
	t.Parallel()
	const MiB = 1 << 20
	type large struct {
		size, frag int
		doors      []string // nil: every door
	}
	subset := []string{"listener", "http-portable", "listener-tls"}
	cases := []large{
		{size: MiB, frag: MiB},
		{size: 4 * MiB, frag: 4 * MiB},
		{size: 4 * MiB, frag: 4096},
		{size: 8 * MiB, frag: 8 * MiB},
		{size: 16 * MiB, frag: 16 * MiB},
		{size: 16 * MiB, frag: 64 << 10, doors: subset},
	}
	t.Logf("conformance large messages: %d cases, each through %d doors but 16 MiB in fragments, through %d", len(cases), len(doors), len(subset))
	payloads := map[int][]byte{}
	streams := make([][]byte, len(cases))
	for i, lc := range cases {
		if payloads[lc.size] == nil {
			payloads[lc.size] = confBinary(lc.size)
		}
		streams[i] = confFragments(payloads[lc.size], lc.frag)
	}
	for _, d := range confDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for i, lc := range cases {
				if lc.doors != nil && !slices.Contains(lc.doors, d.name) {
					continue
				}
				name := fmt.Sprintf("%d MiB in one frame", lc.size/MiB)
				if lc.frag < lc.size {
					name = fmt.Sprintf("%d MiB in %d-byte fragments", lc.size/MiB, lc.frag)
				}
				t.Run(name, func(t *testing.T) {
					opts := confOptions()
					opts.MaxMessageSize = int64(lc.size)
					opts.MaxQueuedBytes = lc.size + maxHeaderSize
					h, addr := startHub(t, opts, d)
					c := connect(t, addr)
					copied := h.stats.copied.Load()
					confEcho(t, c, streams[i], nil, opBinary, payloads[lc.size])
					confCost(t, h.stats.copied.Load()-copied, lc.size, true)
				})
			}
		})
	}
}

// confFragments encodes payload as one binary message in frames of frag
// bytes of payload.
func confFragments(payload []byte, frag int) []byte {
	var b []byte
	op := byte(opBinary)
	for i := 0; i < len(payload); i += frag {
		end := min(i+frag, len(payload))
		b = append(b, confEncode(end == len(payload), 0, op, payload[i:end], 0, &confKey)...)
		op = opContinuation
	}
	return b
}

// confDiff returns the index of the first byte where a and b differ.
func confDiff(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// TestConformanceOutboundBound checks MaxQueuedBytes as the largest frame
// the hub sends: a write or publish of a larger message returns
// ErrMessageTooBig before anything is written, and the connections stay
// usable; a frame of exactly the bound goes out.
func TestConformanceOutboundBound(t *testing.T) {
	t.Parallel()
	const bound = 4096
	cases := []struct {
		name string
		run  func(t *testing.T, d door)
	}{
		{"Conn.WriteMessage", func(t *testing.T, d door) {
			opened := make(chan *Conn, 1)
			opts := confOptions()
			opts.MaxQueuedBytes = bound
			opts.OnOpen = func(c *Conn) { opened <- c }
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			conn := <-opened
			if err := conn.WriteMessage(Binary, make([]byte, bound-3)); !errors.Is(err, ErrMessageTooBig) {
				t.Errorf("WriteMessage of a %d-byte frame with MaxQueuedBytes %d: got %v, want ErrMessageTooBig", bound+1, bound, err)
			}
			if err := conn.WriteMessage(Text, []byte("small")); err != nil {
				t.Errorf("WriteMessage after the refused one: got %v, want nil", err)
			}
			confExpect(c, []confMsg{{opText, "small"}}, 0, "", false)
			// A frame of exactly the bound goes out (read before anything
			// else is written: it fills the queue).
			fits := confASCII(bound - 4)
			if err := conn.WriteMessage(Binary, []byte(fits)); err != nil {
				t.Errorf("WriteMessage of a frame of exactly MaxQueuedBytes: got %v, want nil", err)
			}
			confExpect(c, []confMsg{{opBinary, fits}}, 0, "", false)
			if n := h.Stats().Conns; n != 1 {
				t.Errorf("%d connections open, want 1", n)
			}
		}},
		{"echo from OnMessage", func(t *testing.T, d door) {
			errs := make(chan error, 4)
			opts := confOptions()
			opts.MaxQueuedBytes = bound
			opts.MaxMessageSize = 2 * bound
			opts.OnMessage = func(c *Conn, typ MessageType, p []byte) { errs <- c.WriteMessage(typ, p) }
			_, addr := startHub(t, opts, d)
			c := connect(t, addr)
			c.write(confCat(confFrame(true, opBinary, confASCII(bound+1)), confFrame(true, opText, "small")))
			if err := <-errs; !errors.Is(err, ErrMessageTooBig) {
				t.Errorf("echo of %d bytes with MaxQueuedBytes %d: got %v, want ErrMessageTooBig", bound+1, bound, err)
			}
			confExpect(c, []confMsg{{opText, "small"}}, 0, "", false)
		}},
		{"Channel.Publish", func(t *testing.T, d door) {
			opened := make(chan *Conn, 2)
			closed := make(chan *CloseError, 2)
			opts := confOptions()
			opts.MaxQueuedBytes = bound
			opts.OnOpen = func(c *Conn) { opened <- c }
			opts.OnClose = func(c *Conn, err *CloseError) { closed <- err }
			h, addr := startHub(t, opts, d)
			a, b := connect(t, addr), connect(t, addr)
			ch := h.Channel("conformance")
			for range 2 {
				if err := ch.Subscribe(<-opened); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := ch.Publish(Binary, make([]byte, bound)); n != 0 || !errors.Is(err, ErrMessageTooBig) {
				t.Errorf("Publish of a %d-byte frame with MaxQueuedBytes %d: got %d, %v; want 0, ErrMessageTooBig", bound+4, bound, n, err)
			}
			if n, err := ch.Publish(Text, []byte("small")); n != 2 || err != nil {
				t.Errorf("Publish after the refused one: got %d, %v; want 2, nil", n, err)
			}
			confExpect(a, []confMsg{{opText, "small"}}, 0, "", false)
			confExpect(b, []confMsg{{opText, "small"}}, 0, "", false)
			if st := h.Stats(); st.Conns != 2 || len(closed) != 0 {
				t.Errorf("%d connections open, %d closed; want 2 open, none closed", st.Conns, len(closed))
			}
		}},
	}
	confLog(t, "outbound bound", len(cases))
	for _, d := range confDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, d)
				})
			}
		})
	}
}
