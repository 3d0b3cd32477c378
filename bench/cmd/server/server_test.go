package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wshub/wshub/bench/load"
)

// TestEveryLibraryServesTheScenarios checks each library's echo, room and
// stats, so that a broken peer fails here rather than in a ten-minute run.
func TestEveryLibraryServesTheScenarios(t *testing.T) {
	for _, name := range []string{"wshub", "gorilla", "melody", "gws", "nbio"} {
		t.Run(name, func(t *testing.T) {
			addr := startLibrary(t, name)
			if err := load.WaitPort(addr, 5*time.Second); err != nil {
				t.Fatal(err)
			}

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

// startLibrary serves library name on a free loopback port until the test
// ends, and returns the address. nbio v1.5.12 hands accepted connections to
// its pollers through epoll, which the race detector cannot see, and it
// reports a race inside nbio's own code; under -race nbio is served by this
// command built without it, in a process of its own, as cmd/results runs it.
func startLibrary(t *testing.T, name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if raceEnabled && name == "nbio" {
		bin := filepath.Join(t.TempDir(), "server")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-lib", name, "-addr", addr)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		return addr
	}
	l, err := newLibrary(name, "")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := serve(l, addr, newMux(l))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}
