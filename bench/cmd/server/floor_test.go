//go:build linux

package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub/bench/load"
)

// The floor's event loops stay until the test process exits (they have no
// way to stop: a measuring stick).

func TestFloorEchoes(t *testing.T) {
	t.Parallel()
	cs, _, err := load.Dial(context.Background(), "ws://"+startLibrary(t, "floor", config{})+"/echo", 50)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { load.CloseAll(cs) })
	res := load.Echo(cs, 256, 50*time.Millisecond, 300*time.Millisecond)
	if res.Errors > 0 || res.Messages == 0 {
		t.Fatalf("echo: %d round trips, %d errors; want some and none", res.Messages, res.Errors)
	}
}

// TestFloorFrames sends frames of both header sizes, several in one write
// and one split across writes (the carry), and checks every echo.
func TestFloorFrames(t *testing.T) {
	t.Parallel()
	cs, _, err := load.Dial(context.Background(), "ws://"+startLibrary(t, "floor", config{})+"/echo", 1)
	if err != nil {
		t.Fatal(err)
	}
	c := cs[0]
	t.Cleanup(func() { c.Close() })
	small, big := []byte("hello"), bytes.Repeat([]byte("0123456789"), 100)
	two := append(load.Frame(ws.OpText, small), load.Frame(ws.OpBinary, big)...)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(two); err != nil {
		t.Fatal(err)
	}
	split := load.Frame(ws.OpBinary, big)
	for _, part := range [][]byte{split[:1], split[1:3], split[3:500], split[500:]} {
		if _, err := c.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // arrive apart
	}
	buf := make([]byte, 2048)
	for i, want := range [][]byte{small, big, big} {
		got, err := c.ReadMessage(buf)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("echo %d: got %d bytes %q…, want %d bytes %q…", i, len(got), got[:min(len(got), 10)], len(want), want[:10])
		}
	}
}

// TestFloorRawEchoesBytes: on /raw, whatever follows the upgrade comes
// back as it was sent, a fragmented message's frames included.
func TestFloorRawEchoesBytes(t *testing.T) {
	t.Parallel()
	cs, _, err := load.Dial(context.Background(), "ws://"+startLibrary(t, "floor", config{})+"/raw", 1)
	if err != nil {
		t.Fatal(err)
	}
	c := cs[0]
	t.Cleanup(func() { c.Close() })
	sent := load.Fragmented(ws.OpBinary, bytes.Repeat([]byte("raw floor "), 50000), 64)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go c.Write(sent)
	got := make([]byte, len(sent))
	if err := c.ReadRaw(got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatal("the bytes came back changed")
	}
}
