package wshub

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The RFC 7692 (permessage-deflate) section of the conformance suite (see
// conformance_test.go): compressed messages with and without the client's
// context takeover, compressed messages in fragments with RSV1 on the first
// only, the reserved bits a compressed message may not carry, and
// decompression bounded by MaxMessageSize.

// confDeflater compresses a client's messages as RFC 7692 7.2.1 says: the
// DEFLATE data of the message, flushed, without its trailing 00 00 ff ff.
// With takeover it keeps its context from one message to the next within
// window bytes, the LZ77 window the client agreed to (client_max_window_bits):
// a message shorter than the window may refer to the history that fits in
// the window beside it (so no distance can exceed it), a longer one is
// Huffman-coded only, without references.
type confDeflater struct {
	takeover bool
	window   int
	history  []byte
	last     int // the compressed size of the last message
}

// newConfDeflater returns the compressor for what the hub answered.
func newConfDeflater(t *testing.T, answer string) *confDeflater {
	t.Helper()
	z := &confDeflater{}
	for p := range strings.SplitSeq(answer, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if k == "client_max_window_bits" {
			bits, err := strconv.Atoi(v)
			if err != nil || bits < 8 || bits > 15 {
				t.Fatalf("answered %q: client_max_window_bits %q", answer, v)
			}
			z.takeover, z.window = true, 1<<bits
		}
	}
	if strings.Contains(answer, "client_no_context_takeover") {
		z.takeover = false
	}
	return z
}

// compress returns the payload of a compressed message carrying p.
func (z *confDeflater) compress(p []byte) []byte {
	var buf bytes.Buffer
	var fw *flate.Writer
	switch {
	case !z.takeover:
		fw, _ = flate.NewWriter(&buf, flate.BestSpeed)
	case len(p) >= z.window:
		fw, _ = flate.NewWriter(&buf, flate.HuffmanOnly)
	default:
		dict := z.history[max(0, len(z.history)-(z.window-len(p))):]
		fw, _ = flate.NewWriterDict(&buf, flate.DefaultCompression, dict)
	}
	fw.Write(p)
	fw.Flush()
	if z.takeover {
		z.history = append(z.history, p...)
		z.history = z.history[max(0, len(z.history)-z.window):]
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	z.last = len(out)
	return out
}

// message returns a compressed message of op carrying p in one frame.
func (z *confDeflater) message(op byte, p []byte) []byte {
	return confEncode(true, rsv1, op, z.compress(p), 0, &confKey)
}

// fragments returns a compressed message of op carrying p, its compressed
// payload cut into fragments of frag bytes, RSV1 on the first only, and a
// ping after each fragment but the last if ping is set.
func (z *confDeflater) fragments(op byte, p []byte, frag int, ping bool) []byte {
	body := z.compress(p)
	var b []byte
	rsv := byte(rsv1)
	for i := 0; i == 0 || i < len(body); i += frag {
		end := min(i+frag, len(body))
		b = append(b, confEncode(end == len(body), rsv, op, body[i:end], 0, &confKey)...)
		if ping && end < len(body) {
			b = append(b, confFrame(true, opPing, fmt.Sprint(i))...)
		}
		op, rsv = opContinuation, 0
	}
	return b
}

// confTail ends a compressed message for a reader: the 00 00 ff ff its
// sender removed (RFC 7692 7.2.2), then an empty final block, so that the
// reader ends with io.EOF.
var confTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// confInflated reads the hub's next frame and inflates it if it is
// compressed: the hub compresses each message on its own
// (server_no_context_takeover).
func confInflated(c *client) serverFrame {
	c.t.Helper()
	f := confNext(c)
	if f.rsv1 {
		r := flate.NewReader(io.MultiReader(bytes.NewReader(f.payload), bytes.NewReader(confTail)))
		p, err := io.ReadAll(r)
		if err != nil {
			c.t.Fatalf("the hub's compressed frame (op=%d, %d bytes) does not inflate: %v", f.op, len(f.payload), err)
		}
		f.rsv1, f.payload = false, p
	}
	return f
}

// confWords returns n bytes of words drawn from a small vocabulary in a
// pseudo-random order: text that deflate shrinks, though not to nothing.
func confWords(n int) string {
	words := strings.Fields("price update order book trade quote bid ask volume symbol time stamp user channel join leave €uro 😀 κόσμε")
	var b strings.Builder
	x := uint32(1)
	for b.Len() < n {
		x = x*1664525 + 1013904223
		b.WriteString(words[x>>16%uint32(len(words))])
		b.WriteByte(' ')
	}
	s := b.String()[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + strings.Repeat(".", n-len(s))
}

// confZCase is a permessage-deflate case: what the client offers, whether
// the hub must accept, and what the client sends, built with the
// compressor the answer calls for.
type confZCase struct {
	name      string
	offer     string // Sec-WebSocket-Extensions; "" offers nothing
	plainHub  bool   // the hub has no Options.Compression
	accepted  bool   // the hub must answer with permessage-deflate
	takeover  bool   // and let the client keep its context
	send      func(z *confDeflater) []byte
	want      []confMsg
	close     CloseCode
	smallLast int // if set, the last message must compress to fewer bytes: it refers to earlier ones
}

// TestConformanceDeflate runs the permessage-deflate cases through every
// door, each on a fresh hub with Compression and a MaxMessageSize of 64 KiB.
func TestConformanceDeflate(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	const (
		noContext = "permessage-deflate; client_no_context_takeover"
		takeover  = "permessage-deflate; client_max_window_bits"
	)
	long := confWords(2000)
	big := confWords(limit)
	short := "short"
	r200 := confWords(200)
	msgs := func(op byte, ss ...string) []confMsg {
		var m []confMsg
		for _, s := range ss {
			m = append(m, confMsg{op, s})
		}
		return m
	}
	pongs := func(n, frag int) []confMsg {
		var m []confMsg
		for i := 0; i+frag < n; i += frag {
			m = append(m, confMsg{opPong, fmt.Sprint(i)})
		}
		return m
	}
	// zeros inflates past the limit from a few hundred bytes.
	zeros := make([]byte, 16*limit)
	cases := []confZCase{
		{name: "compressed text, client_no_context_takeover", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				return confCat(z.message(opText, []byte(long)), z.message(opText, []byte(short)), z.message(opText, []byte(big)))
			},
			want: msgs(opText, long, short, big)},
		{name: "compressed binary", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.message(opBinary, confBinary(3000)) }, want: msgs(opBinary, string(confBinary(3000)))},
		{name: "server_no_context_takeover offered", offer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover", accepted: true,
			send: func(z *confDeflater) []byte {
				return confCat(z.message(opText, []byte(long)), z.message(opText, []byte(long)))
			}, want: msgs(opText, long, long)},
		{name: "client context takeover, 512-byte window", offer: takeover, accepted: true, takeover: true,
			send: func(z *confDeflater) []byte {
				// r200 again refers to the first; the long message slides the
				// window; its tail again refers to it.
				return confCat(z.message(opText, []byte(r200)), z.message(opText, []byte("x"+r200[:150])), z.message(opText, []byte(long)),
					z.message(opText, []byte(long[len(long)-300:])))
			},
			want: msgs(opText, r200, "x"+r200[:150], long, long[len(long)-300:]), smallLast: 60},
		{name: "client context takeover, 256-byte window", offer: "permessage-deflate; client_max_window_bits=8", accepted: true, takeover: true,
			send: func(z *confDeflater) []byte {
				return confCat(z.message(opText, []byte(r200[:100])), z.message(opText, []byte(r200[:100]+"!")))
			},
			want: msgs(opText, r200[:100], r200[:100]+"!"), smallLast: 30},
		{name: "uncompressed message on a compressed connection", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return confFrame(true, opText, long) }, want: msgs(opText, long)},
		{name: "empty compressed message", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.message(opText, nil) }, want: msgs(opText, "")},
		{name: "compressed, in 100-byte fragments", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.fragments(opText, []byte(big), 100, false) }, want: msgs(opText, big)},
		{name: "compressed, in 1-byte fragments with pings between", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.fragments(opBinary, []byte(r200), 1, true) }},
		{name: "compressed with context, in 7-byte fragments", offer: takeover, accepted: true, takeover: true,
			send: func(z *confDeflater) []byte {
				return confCat(z.fragments(opText, []byte(r200), 7, false), z.fragments(opText, []byte(r200), 7, false))
			},
			want: msgs(opText, r200, r200)},
		{name: "compressed, empty first fragment with RSV1", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				body := z.compress([]byte(long))
				return confCat(confEncode(false, rsv1, opText, nil, 0, &confKey), confEncode(true, 0, opContinuation, body, 0, &confKey))
			},
			want: msgs(opText, long)},
		{name: "compressed message inflating to MaxMessageSize", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.message(opBinary, zeros[:limit]) }, want: msgs(opBinary, string(zeros[:limit]))},

		{name: "RSV1 on a continuation", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				body := z.compress([]byte(long))
				return confCat(confEncode(false, rsv1, opText, body[:10], 0, &confKey), confEncode(true, rsv1, opContinuation, body[10:], 0, &confKey))
			},
			close: CloseProtocolError},
		{name: "RSV1 on a continuation only", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				return confCat(confFrame(false, opText, "plain "), confEncode(true, rsv1, opContinuation, z.compress([]byte("then packed")), 0, &confKey))
			},
			close: CloseProtocolError},
		{name: "RSV1 on a ping", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				return confEncode(true, rsv1, opPing, z.compress([]byte("ping")), 0, &confKey)
			}, close: CloseProtocolError},
		{name: "RSV1 on a close", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				return confEncode(true, rsv1, opClose, closeBody(CloseNormal, ""), 0, &confKey)
			},
			close: CloseProtocolError},
		{name: "RSV2 on a compressed message", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				return confEncode(true, rsv1|0x20, opText, z.compress([]byte(long)), 0, &confKey)
			}, close: CloseProtocolError},
		{name: "RSV3 on a compressed message", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				return confEncode(true, rsv1|0x10, opText, z.compress([]byte(long)), 0, &confKey)
			}, close: CloseProtocolError},
		{name: "decompression bomb past MaxMessageSize", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.message(opBinary, zeros) }, close: CloseMessageTooBig},
		{name: "decompression bomb in fragments", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.fragments(opBinary, zeros, 16, false) }, close: CloseMessageTooBig},
		{name: "compressed data that is not DEFLATE", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte {
				return confEncode(true, rsv1, opBinary, []byte{0xff, 0xff, 0xff, 0xff}, 0, &confKey)
			}, close: CloseInvalidPayload},
		{name: "invalid UTF-8 once inflated", offer: noContext, accepted: true,
			send: func(z *confDeflater) []byte { return z.message(opText, []byte(long+"\xed\xa0\x80")) }, close: CloseInvalidPayload},

		{name: "RSV1 without an offer", send: func(z *confDeflater) []byte { return (&confDeflater{}).message(opText, []byte(long)) }, close: CloseProtocolError},
		{name: "RSV1 after a declined offer (32 KiB client window)", offer: "permessage-deflate",
			send: func(z *confDeflater) []byte { return (&confDeflater{}).message(opText, []byte(long)) }, close: CloseProtocolError},
		{name: "RSV1 to a hub without Compression", offer: noContext, plainHub: true,
			send: func(z *confDeflater) []byte { return (&confDeflater{}).message(opText, []byte(long)) }, close: CloseProtocolError},
	}
	// The pongs of the 1-byte fragments case, then its message: its
	// compressed size is known only once compressed.
	withPings := (&confDeflater{}).compress([]byte(r200))
	for i := range cases {
		if cases[i].name == "compressed, in 1-byte fragments with pings between" {
			cases[i].want = append(pongs(len(withPings), 1), confMsg{opBinary, r200})
		}
	}
	confLog(t, "permessage-deflate", len(cases))
	for _, d := range confDoors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					opts := confOptions()
					opts.MaxMessageSize = limit
					if !tc.plainHub {
						opts.Compression = &Compression{}
					}
					_, addr := startHub(t, opts, d)
					var c *client
					var answer string
					if tc.offer == "" {
						c = connect(t, addr)
					} else {
						c, answer = deflateClient(t, addr, tc.offer)
					}
					if got := strings.HasPrefix(answer, deflateExt); got != tc.accepted {
						t.Fatalf("offered %q: answered %q, want permessage-deflate %v", tc.offer, answer, tc.accepted)
					}
					if tc.accepted && !strings.Contains(answer, "server_no_context_takeover") {
						t.Fatalf("answered %q: the hub compresses each message on its own, want server_no_context_takeover", answer)
					}
					z := newConfDeflater(t, answer)
					if z.takeover != tc.takeover {
						t.Fatalf("answered %q: client context takeover %v, want %v", answer, z.takeover, tc.takeover)
					}
					send := tc.send(z)
					if tc.smallLast > 0 && z.last >= tc.smallLast {
						t.Fatalf("the last message compressed to %d bytes, want under %d: it does not refer to the earlier ones", z.last, tc.smallLast)
					}
					c.nc.Write(send)
					confExpectWith(c, confInflated, tc.want, tc.close, "", false)
				})
			}
		})
	}
}
