package load

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestFragmentedFrames parses what Fragmented encodes: frames of at most
// size bytes, the first of op, the rest continuations, only the last
// final, masked, the payload whole once unmasked.
func TestFragmentedFrames(t *testing.T) {
	t.Parallel()
	payload := make([]byte, 1000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, tc := range []struct{ size, frames int }{{1, 1000}, {16, 63}, {125, 8}, {126, 8}, {999, 2}, {1000, 1}, {70000, 1}} {
		br := bufio.NewReader(bytes.NewReader(Fragmented(ws.OpBinary, payload, tc.size)))
		var got []byte
		for i := 0; ; i++ {
			h, err := ws.ReadHeader(br)
			if err == io.EOF {
				if i != tc.frames {
					t.Errorf("size %d: %d frames, want %d", tc.size, i, tc.frames)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			wantOp := ws.OpContinuation
			if i == 0 {
				wantOp = ws.OpBinary
			}
			if h.OpCode != wantOp || h.Fin != (i == tc.frames-1) || !h.Masked || h.Length > int64(tc.size) {
				t.Fatalf("size %d, frame %d: %+v", tc.size, i, h)
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(br, p); err != nil {
				t.Fatal(err)
			}
			ws.Cipher(p, h.Mask, 0)
			got = append(got, p...)
		}
		if !bytes.Equal(got, payload) {
			t.Errorf("size %d: payload differs", tc.size)
		}
	}
	if f := Fragmented(ws.OpText, nil, 16); !bytes.Equal(f, Frame(ws.OpText, nil)) {
		t.Errorf("empty message: % x, want one empty final frame", f)
	}
}

// TestReadWholeEchoOfFragments sends a message in small fragments to a hub
// that echoes it, then reads it back whole, twice on one connection.
func TestReadWholeEchoOfFragments(t *testing.T) {
	t.Parallel()
	cs, _, err := Dial(context.Background(), echoServer(t, func(int64) bool { return false }), 1)
	if err != nil {
		t.Fatal(err)
	}
	c := cs[0]
	defer c.Close()
	payload := bytes.Repeat([]byte("fragments "), 10000)
	var buf []byte
	for range 2 {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(Fragmented(ws.OpBinary, payload, 100)); err != nil {
			t.Fatal(err)
		}
		if buf, err = c.ReadWhole(buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, payload) {
			t.Fatalf("echo of %d bytes: %d bytes back, not the same", len(payload), len(buf))
		}
	}
}
