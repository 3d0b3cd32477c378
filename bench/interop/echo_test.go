package interop

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub/bench/internal/gobuild"
	"github.com/wshub/wshub/bench/internal/harness"
)

// tap keeps a copy of every byte read from a connection, and the first
// byte of each write after the upgrade request.
type tap struct {
	net.Conn
	mu     sync.Mutex
	read   bytes.Buffer
	writes []byte
}

func (t *tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	if !bytes.HasPrefix(p, []byte("GET ")) && len(p) > 0 {
		t.writes = append(t.writes, p[0])
	}
	t.mu.Unlock()
	return t.Conn.Write(p)
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	t.mu.Lock()
	t.read.Write(p[:n])
	t.mu.Unlock()
	return n, err
}

// frames returns the first byte (FIN, RSV1-3, opcode) and the length of
// each server frame read after the 101 response. Server frames are not
// masked.
func (t *tap) frames(tb testing.TB) (firsts []byte, lengths []int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.read.Bytes()
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		tb.Fatal("no end of the 101 response in what was read")
	}
	for b = b[i+4:]; len(b) >= 2; {
		n, h := int(b[1]&0x7f), 2
		switch n {
		case 126:
			n, h = int(b[2])<<8|int(b[3]), 4
		case 127:
			tb.Fatal("a frame of 64 KiB or more")
		}
		firsts, lengths = append(firsts, b[0]), append(lengths, n)
		b = b[min(h+n, len(b)):]
	}
	return firsts, lengths
}

// TestGorillaDeflatesWithExamplesEcho is issue 13's "done when": gorilla's
// stock client with EnableCompression (it offers, and keeps, no context
// takeover either way) negotiates permessage-deflate with the examples/echo
// command, built and run as a user runs it, on both doors, and gets its
// compressed message back compressed (RSV1 on the frame read from the
// socket) and whole; a message below the hub's threshold comes back
// uncompressed.
func TestGorillaDeflatesWithExamplesEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts examples/echo")
	}
	bin, err := gobuild.Build(t.TempDir(), "../../examples", "./echo") // the examples' own module
	if err != nil {
		t.Fatal(err)
	}
	for _, door := range []string{"net/http", "own listener"} {
		t.Run(door, func(t *testing.T) {
			p := harness.Process{Bin: bin}
			if door == "own listener" {
				p.Args = []string{"-listener"}
			}
			s, err := harness.Start(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Stop)
			var raw *tap
			d := websocket.Dialer{
				EnableCompression: true,
				HandshakeTimeout:  5 * time.Second,
				NetDialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					nc, err := (&net.Dialer{}).DialContext(ctx, network, a)
					if err != nil {
						return nil, err
					}
					raw = &tap{Conn: nc}
					return raw, nil
				},
			}
			conn, resp, err := d.Dial(s.URL("/ws"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			if !strings.Contains(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
				t.Fatalf("Sec-WebSocket-Extensions: %q, want permessage-deflate with server_no_context_takeover", ext)
			}
			long := strings.Repeat(`{"user":"alice","text":"a compressed echo"},`, 100)
			for _, msg := range []string{long, "short"} {
				if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				typ, got, err := conn.ReadMessage()
				if err != nil || typ != websocket.TextMessage || string(got) != msg {
					t.Fatalf("echo of %d bytes: type %d, %d bytes, %v", len(msg), typ, len(got), err)
				}
			}
			raw.mu.Lock()
			sent := raw.writes
			raw.mu.Unlock()
			if len(sent) < 1 || sent[0] != 0xc1 {
				t.Errorf("gorilla's frames began % #x, want 0xc1 first: it did not send compressed", sent)
			}
			firsts, lengths := raw.frames(t)
			if len(firsts) != 2 {
				t.Fatalf("%d frames read, want 2", len(firsts))
			}
			if firsts[0] != 0xc1 || lengths[0] >= len(long)/4 {
				t.Errorf("echo of %d bytes: first byte %#x, %d bytes on the wire; want 0xc1 (FIN, RSV1, text), compressed", len(long), firsts[0], lengths[0])
			}
			if firsts[1] != 0x81 || lengths[1] != len("short") {
				t.Errorf("echo of 5 bytes: first byte %#x, %d bytes; want 0x81 (below the threshold: not compressed)", firsts[1], lengths[1])
			}
			t.Logf("%s: %q; gorilla sent frames beginning % #x; %d bytes came back in a %d-byte frame (first byte %#x), 5 in %d (%#x)",
				door, ext, sent, len(long), lengths[0], firsts[0], lengths[1], firsts[1])
		})
	}
}
