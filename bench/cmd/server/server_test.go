package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub/bench/internal/gobuild"
	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// TestEveryLibraryServesTheScenarios checks each library's echo, room and
// stats, so that a broken peer fails here rather than in a ten-minute run.
func TestEveryLibraryServesTheScenarios(t *testing.T) {
	for _, name := range []string{"wshub", "gorilla", "melody", "gws", "nbio", "floor"} {
		t.Run(name, func(t *testing.T) {
			addr := startLibrary(t, name, config{})

			echo, _, err := load.Dial(context.Background(), "ws://"+addr+"/echo", 3)
			if err != nil {
				t.Fatal(err)
			}
			defer load.CloseAll(echo)
			if r := load.Echo(echo, 256, 0, 300*time.Millisecond); r.Errors > 0 || r.Messages == 0 {
				t.Errorf("echo: %+v", r)
			}

			room, _, err := load.Dial(context.Background(), "ws://"+addr+"/room", 3)
			if err != nil {
				t.Fatal(err)
			}
			defer load.CloseAll(room)
			time.Sleep(100 * time.Millisecond) // the last joins
			recv := load.Receive(room)
			resp, err := http.Get(fmt.Sprintf("http://%s/publish?n=5&size=64", addr))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !recv.WaitReceived(15, 5*time.Second) || recv.OutOfOrder() > 0 {
				t.Errorf("room: %d of 15 messages, %d out of order", recv.Received(), recv.OutOfOrder())
			}

			resp, err = http.Get("http://" + addr + "/stats")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("stats: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// TestEveryLibraryDeflates: with -deflate, each library negotiates
// permessage-deflate with load's offer (no context takeover, as gorilla's
// client offers it) and sends the room's JSON compressed (RSV1), and each
// message inflates to the JSON published, in order. wshub is checked on
// both doors.
func TestEveryLibraryDeflates(t *testing.T) {
	for _, name := range []string{"wshub", "wshub -listener", "gorilla", "melody", "gws", "nbio"} {
		t.Run(name, func(t *testing.T) {
			var addr, httpAddr string
			if name == "wshub -listener" {
				addr, httpAddr = freeAddr(t), freeAddr(t)
				l := newWshub(config{deflate: true})
				stop, err := l.serveOwn(addr, httpAddr, newMux(l))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
			} else {
				addr = startLibrary(t, name, config{deflate: true})
				httpAddr = addr
			}
			room, _, err := load.DialDeflate(context.Background(), "ws://"+addr+"/room", 3)
			if err != nil {
				t.Fatal(err)
			}
			defer load.CloseAll(room)
			for i, c := range room {
				if !c.Deflate {
					t.Fatalf("connection %d: permessage-deflate not negotiated", i)
				}
			}
			time.Sleep(100 * time.Millisecond) // the last joins
			recv := load.Receive(room)
			resp, err := http.Get(fmt.Sprintf("http://%s/publish?n=5&size=1024&json=1", httpAddr))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !recv.WaitReceived(15, 5*time.Second) || recv.OutOfOrder() > 0 || recv.BadInflate() > 0 {
				t.Fatalf("room: %d of 15 messages, %d out of order, %d did not inflate", recv.Received(), recv.OutOfOrder(), recv.BadInflate())
			}
			if recv.Compressed() != 15 {
				t.Errorf("%d of 15 messages compressed", recv.Compressed())
			}
			if per := recv.Wire() / 15; per >= 1024*2/3 {
				t.Errorf("%d bytes on the wire per 1 KiB message: not compressed", per)
			}
		})
	}
}

// TestEveryLibraryEchoesFragments: each library reassembles a message
// sent in fragments and echoes it whole, one larger than any library's
// default limit (nbio's 4 MiB the largest but gws's) with -max-message.
// The floor does not reassemble: its /raw is checked in floor_test.go.
func TestEveryLibraryEchoesFragments(t *testing.T) {
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte(i * 31)
	}
	for _, name := range []string{"wshub", "gorilla", "melody", "gws", "nbio"} {
		t.Run(name, func(t *testing.T) {
			addr := startLibrary(t, name, config{maxMessage: 6 << 20})
			cs, _, err := load.Dial(context.Background(), "ws://"+addr+"/echo", 1)
			if err != nil {
				t.Fatal(err)
			}
			c := cs[0]
			defer c.Close()
			var buf []byte
			for _, m := range []struct{ size, frag int }{{20000, 16}, {len(big), 64 << 10}} {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				go c.Write(load.Fragmented(ws.OpBinary, big[:m.size], m.frag))
				if buf, err = c.ReadWhole(buf); err != nil {
					t.Fatalf("%d bytes in %d-byte fragments: %v", m.size, m.frag, err)
				}
				if !bytes.Equal(buf, big[:m.size]) {
					t.Fatalf("%d bytes in %d-byte fragments: %d bytes back, not the same", m.size, m.frag, len(buf))
				}
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startLibrary serves library name on a free loopback port until the test
// ends, and returns the address, which listens. nbio v1.5.12 hands
// accepted connections to its pollers through epoll, which the race
// detector cannot see, and it reports a race inside nbio's own code; under
// -race nbio is served by this command built without it, in a process of
// its own, as cmd/results runs it.
func startLibrary(t *testing.T, name string, cfg config) string {
	if raceEnabled && name == "nbio" {
		s, err := harness.Start(harness.Process{Bin: buildServer(t), Args: []string{
			"-lib", name, fmt.Sprintf("-deflate=%v", cfg.deflate), fmt.Sprintf("-max-message=%d", cfg.maxMessage)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s.Addr
	}
	addr := freeAddr(t)
	l, err := newLibrary(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := serve(l, addr, newMux(l), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

// buildServer builds this command, without the race detector, for the
// tests that run it in a process of its own.
func buildServer(t *testing.T) string {
	t.Helper()
	bin, err := gobuild.Build(t.TempDir(), ".", ".")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestPublishStampsBatchesAndCounts: every binary message carries its
// sequence number and publish time, so that the receivers see no loss, no
// reordering and a latency for each; a batch (wshub's PublishBatch, the
// floor's writev) reaches each member in one write, and /stats counts the
// messages and writes.
func TestPublishStampsBatchesAndCounts(t *testing.T) {
	for _, name := range []string{"wshub", "floor"} {
		t.Run(name, func(t *testing.T) {
			addr := startLibrary(t, name, config{})
			const members, n = 3, 20
			room, _, err := load.Dial(context.Background(), "ws://"+addr+"/room", members)
			if err != nil {
				t.Fatal(err)
			}
			defer load.CloseAll(room)
			time.Sleep(100 * time.Millisecond) // the last joins
			recv := load.Receive(room)
			for i, query := range []string{"", "&batch=1"} {
				before := stats(t, addr)
				resp, err := http.Get(fmt.Sprintf("http://%s/publish?n=%d&size=64%s", addr, n, query))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				want := int64((i + 1) * members * n)
				if !recv.WaitReceived(want, 5*time.Second) {
					t.Fatalf("%q: %d of %d messages", query, recv.Received(), want)
				}
				after := stats(t, addr)
				if out := after["messages_out"] - before["messages_out"]; out != members*n {
					t.Errorf("%q: messages_out grew by %d, want %d", query, out, members*n)
				}
				writes := after["writes"] - before["writes"]
				t.Logf("%q: %d writes for %d deliveries", query, writes, members*n)
				if (query != "" || name == "floor") && writes != members {
					t.Errorf("%q: %d writes, want one per member", query, writes)
				}
			}
			if recv.Lost() != 0 || recv.OutOfOrder() != 0 {
				t.Errorf("%d lost, %d out of order", recv.Lost(), recv.OutOfOrder())
			}
			lat := recv.Latency()
			if lat.Count() != 2*members*n || lat.Percentile(0.5) <= 0 || lat.Max() > 5*time.Second {
				t.Errorf("latency: %d recorded, %v", lat.Count(), lat)
			}
			recv.ResetLatency()
			if recv.Latency().Count() != 0 {
				t.Error("ResetLatency kept the latencies")
			}
		})
	}
}

func stats(t *testing.T, addr string) map[string]uint64 {
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]uint64
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}
