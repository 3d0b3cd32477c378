package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// presenceOf is GET /presence's answer.
type presenceOf struct {
	Connections int      `json:"connections"`
	Users       int      `json:"users"`
	Members     []string `json:"members"`
	Partial     bool     `json:"partial"`
}

func getPresence(t *testing.T, addr, room string) presenceOf {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/presence?room=" + room)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p presenceOf
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPresence waits until GET /presence on addr answers want.
func waitPresence(t *testing.T, addr, room string, want presenceOf) time.Duration {
	t.Helper()
	start := time.Now()
	var got presenceOf
	for deadline := start.Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		got = getPresence(t, addr, room)
		if got.Connections == want.Connections && got.Users == want.Users &&
			slices.Equal(got.Members, want.Members) && got.Partial == want.Partial {
			return time.Since(start)
		}
	}
	t.Fatalf("GET /presence on %s: %+v, want %+v", addr, got, want)
	return 0
}

// joinRoom opens a WebSocket to addr in room as user.
func joinRoom(t *testing.T, addr, room, user string) *websocket.Conn {
	t.Helper()
	url := fmt.Sprintf("ws://%s/ws?room=%s&user=%s", addr, room, user)
	var c *websocket.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, _, err = websocket.DefaultDialer.Dial(url, nil); err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
	}
	t.Fatal(err)
	return nil
}

// startNode runs a node in this process, joined to natsURL, until the test
// ends.
func startNode(t *testing.T, natsURL string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, config{natsURL: natsURL}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// TestPresenceAcrossNodes: GET /presence answers alike on both nodes, for
// users with several tabs on one node or on both, and a connection without
// a user.
func TestPresenceAcrossNodes(t *testing.T) {
	*presenceTick = 50 * time.Millisecond
	ns, err := startNATS("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	a, b := startNode(t, ns.ClientURL()), startNode(t, ns.ClientURL())
	joinRoom(t, a, "lobby", "ann")
	joinRoom(t, a, "lobby", "ann")
	joinRoom(t, b, "lobby", "ann")
	bob := joinRoom(t, b, "lobby", "bob")
	joinRoom(t, b, "lobby", "")
	joinRoom(t, a, "kitchen", "cat")
	for _, addr := range []string{a, b} {
		waitPresence(t, addr, "lobby", presenceOf{5, 2, []string{"ann", "bob"}, false})
		waitPresence(t, addr, "kitchen", presenceOf{1, 1, []string{"cat"}, false})
	}
	bob.Close()
	waitPresence(t, a, "lobby", presenceOf{4, 1, []string{"ann"}, false})
}

// TestPresenceNodeKilled kills a node's process with SIGKILL: the other
// node forgets its members within 15 ticks; a node started again in its
// place, with its users back, leaves no ghost.
func TestPresenceNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example")
	}
	const tick = 100 * time.Millisecond
	*presenceTick = tick
	bin := filepath.Join(t.TempDir(), "cluster")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns, err := startNATS("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	survivor := startNode(t, ns.ClientURL())
	joinRoom(t, survivor, "lobby", "bob")
	process := func() (string, *exec.Cmd) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(bin, "-addr", addr, "-nats", ns.ClientURL(), "-presence-tick", tick.String())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return addr, cmd
	}
	doomed, cmd := process()
	joinRoom(t, doomed, "lobby", "ann")
	joinRoom(t, doomed, "lobby", "dan")
	waitPresence(t, survivor, "lobby", presenceOf{3, 3, []string{"ann", "bob", "dan"}, false})
	cmd.Process.Kill() // SIGKILL: no goodbye
	cmd.Wait()
	took := waitPresence(t, survivor, "lobby", presenceOf{1, 1, []string{"bob"}, false})
	if most := 17 * tick; took > most+time.Second {
		t.Errorf("the killed node's members went after %v; documented 15 ticks (%v)", took, 15*tick)
	}
	t.Logf("the killed node's members went after %v (15 ticks: %v)", took, 15*tick)
	restarted, _ := process()
	joinRoom(t, restarted, "lobby", "ann")
	waitPresence(t, survivor, "lobby", presenceOf{2, 2, []string{"ann", "bob"}, false})
	time.Sleep(20 * tick) // past any ghost's expiry
	waitPresence(t, restarted, "lobby", presenceOf{2, 2, []string{"ann", "bob"}, false})
	waitPresence(t, survivor, "lobby", presenceOf{2, 2, []string{"ann", "bob"}, false})
}
