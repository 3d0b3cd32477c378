package wshub

import (
	"bytes"
	"compress/flate"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNegotiateDeflate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		offer    string
		answer   string
		takeover bool
	}{
		{"permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover; client_max_window_bits=9", true},
		{"permessage-deflate; client_max_window_bits=15; server_no_context_takeover", "permessage-deflate; server_no_context_takeover; client_max_window_bits=9", true},
		{"permessage-deflate; client_max_window_bits=8", "permessage-deflate; server_no_context_takeover; client_max_window_bits=8", true},
		{"permessage-deflate; client_no_context_takeover", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"permessage-deflate; server_max_window_bits=15; client_no_context_takeover", "permessage-deflate; server_no_context_takeover; server_max_window_bits=15; client_no_context_takeover", false},
		{"permessage-deflate", "", false}, // a 32 KiB client window: declined
		{"permessage-deflate; server_max_window_bits=10; client_no_context_takeover", "", false}, // flate cannot
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", "", false},
		{"permessage-deflate; mystery=1; client_no_context_takeover", "", false},
		{"x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"permessage-deflate; server_max_window_bits=10, permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover; client_max_window_bits=9", true},
		{`permessage-deflate; client_max_window_bits="10"`, "permessage-deflate; server_no_context_takeover; client_max_window_bits=9", true},
	}
	for _, tc := range cases {
		answer, takeover, ok := negotiateDeflate([]string{tc.offer})
		if answer != tc.answer || takeover != tc.takeover || ok != (tc.answer != "") {
			t.Errorf("%q: got %q, %v, %v; want %q, %v", tc.offer, answer, takeover, ok, tc.answer, tc.takeover)
		}
	}
}

// deflateClient connects to addr offering permessage-deflate with offer and
// returns the client and the extension the hub answered.
func deflateClient(t *testing.T, addr, offer string) (*client, string) {
	t.Helper()
	c := dial(t, addr)
	c.write([]byte(upgradeRequest(addr, "Sec-WebSocket-Extensions: "+offer)))
	c.nc.SetReadDeadline(timeout())
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c, resp.Header.Get("Sec-WebSocket-Extensions")
}

// compressor compresses client messages as a permessage-deflate client
// does; with takeover it keeps its context from one message to the next.
type compressor struct {
	buf      bytes.Buffer
	fw       *flate.Writer
	takeover bool
}

func newCompressor(takeover bool) *compressor {
	z := &compressor{takeover: takeover}
	z.fw, _ = flate.NewWriter(&z.buf, flate.BestSpeed)
	return z
}

// frame returns a masked, compressed client frame of op carrying p.
func (z *compressor) frame(op byte, p []byte) []byte {
	z.buf.Reset()
	if !z.takeover {
		z.fw.Reset(&z.buf)
	}
	z.fw.Write(p)
	z.fw.Flush()
	body := bytes.TrimSuffix(z.buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	f := clientFrame(true, op, body, true)
	f[0] |= rsv1
	return f
}

func decompress(t *testing.T, p []byte) string {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(inflateTail)))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("the hub's compressed frame does not inflate: %v", err)
	}
	return string(out)
}

func TestCompressedEchoThroughEveryDoor(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("compressible JSON, ", 100)
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, takeover := range []bool{false, true} {
				offer := "permessage-deflate; client_no_context_takeover"
				if takeover {
					offer = "permessage-deflate; client_max_window_bits"
				}
				rec := newRecorder()
				opts := rec.options(true)
				opts.Compression = &Compression{}
				h, addr := startHub(t, opts, d)
				c, ext := deflateClient(t, addr, offer)
				if !strings.Contains(ext, "server_no_context_takeover") {
					t.Fatalf("answered %q", ext)
				}
				conn := <-rec.opened
				z := newCompressor(takeover)
				// Two compressed messages, the second referring to the first
				// when the client keeps its context, and a short one sent
				// plain both ways. compress/flate cannot keep to a 512-byte
				// window, so with takeover all it has seen stays within one
				// (Node's ws, with zlib, keeps to it: examples/echo).
				msgs := []string{long, long[:300] + "!"}
				if takeover {
					msgs = []string{long[:400], long[:150] + "!"}
				}
				c.write(z.frame(opText, []byte(msgs[0])))
				c.write(z.frame(opText, []byte(msgs[1])))
				c.write(text("short"))
				for _, want := range msgs {
					f := c.readFrame()
					if !f.rsv1 || decompress(t, f.payload) != want {
						t.Fatalf("takeover %v: echo: op %d rsv1 %v, %q; want it compressed", takeover, f.op, f.rsv1, trim(f.payload))
					}
				}
				if f := c.readFrame(); f.rsv1 || string(f.payload) != "short" {
					t.Fatalf("a short message came back compressed (%v) or changed: %q", f.rsv1, f.payload)
				}
				// What an idle compressed connection keeps: nothing, or the
				// client's 512-byte window when it keeps its context.
				waitFor(t, func() bool { return h.Stats().BufferedBytes == map[bool]int64{false: 0, true: windowSize}[takeover] })
				if st := h.Stats(); st.Deflating != 1 || st.Compressed != 2 {
					t.Errorf("stats: %d deflating, %d compressed; want 1, 2", st.Deflating, st.Compressed)
				}
				conn.Close(CloseNormal, "")
				politeClose(c)
				rec.waitClosed(t)
			}
		})
	}
}

func TestPublishCompressesOnce(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.Compression = &Compression{}
	h, addr := startHub(t, opts, doors[0])
	var clients []*client
	for range 3 {
		c, _ := deflateClient(t, addr, "permessage-deflate; client_no_context_takeover")
		clients = append(clients, c)
	}
	clients = append(clients, connect(t, addr)) // without compression
	for range clients {
		h.Channel("all").Subscribe(<-rec.opened)
	}
	msg := strings.Repeat("price update ", 50)
	if n, err := h.Channel("all").Publish(Text, []byte(msg)); n != 4 || err != nil {
		t.Fatalf("published to %d: %v", n, err)
	}
	for i, c := range clients {
		f := c.readFrame()
		got := string(f.payload)
		if f.rsv1 {
			got = decompress(t, f.payload)
		}
		if got != msg || f.rsv1 != (i < 3) {
			t.Errorf("client %d: rsv1 %v, %d bytes", i, f.rsv1, len(got))
		}
	}
	if st := h.Stats(); st.Compressed != 1 {
		t.Errorf("compressed %d times for one publish, want once", st.Compressed)
	}
}

func TestCompressedInputIsChecked(t *testing.T) {
	t.Parallel()
	bomb := newCompressor(false).frame(opBinary, make([]byte, 1<<20)) // a few KiB inflating to 1 MiB
	bad := clientFrame(true, opText, []byte{0xff, 0xff, 0xff}, true)
	bad[0] |= rsv1
	badUTF8 := newCompressor(false).frame(opText, []byte("ok \xff"))
	rsvOnContinuation := append(newCompressor(false).frame(opText, []byte("x"))[:0:0], clientFrame(false, opText, []byte("a"), true)...)
	cont := clientFrame(true, opContinuation, []byte("b"), true)
	cont[0] |= rsv1
	rsvOnContinuation = append(rsvOnContinuation, cont...)
	cases := []struct {
		name  string
		input []byte
		want  CloseCode
	}{
		{"inflates past MaxMessageSize", bomb, CloseMessageTooBig},
		{"not deflate data", bad, CloseInvalidPayload},
		{"invalid UTF-8 once inflated", badUTF8, CloseInvalidPayload},
		{"RSV1 on a continuation", rsvOnContinuation, CloseProtocolError},
	}
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				rec := newRecorder()
				opts := rec.options(false)
				opts.Compression = &Compression{}
				opts.MaxMessageSize = 64 << 10
				_, addr := startHub(t, opts, d)
				c, _ := deflateClient(t, addr, "permessage-deflate; client_no_context_takeover")
				c.write(tc.input)
				if got := politeClose(c); got != tc.want {
					t.Errorf("%s: close %d, want %d", tc.name, got, tc.want)
				}
				if len(rec.messages) != 0 {
					t.Errorf("%s: a message was delivered", tc.name)
				}
			}
		})
	}
}

func TestCompressionOffThenPlain(t *testing.T) {
	t.Parallel()
	_, addr := startHub(t, nil, doors[1])
	c, ext := deflateClient(t, addr, "permessage-deflate; client_no_context_takeover")
	if ext != "" {
		t.Errorf("a hub without Compression answered %q", ext)
	}
	f := newCompressor(false).frame(opText, []byte("x"))
	c.write(f) // RSV1 without the extension: a protocol error
	c.expectClose(CloseProtocolError)
}

func timeout() time.Time { return time.Now().Add(10 * time.Second) }
