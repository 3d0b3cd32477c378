package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A wsClient's messages are read on a goroutine into a channel, so that
// the test can wait for one with a timeout: a gorilla connection is done
// for after a read times out.
type wsClient struct {
	*websocket.Conn
	got chan string
}

// dial connects to a node at url (ws://ADDR/ws?...), retrying while the
// node starts.
func dial(t *testing.T, url string) wsClient {
	t.Helper()
	var c *websocket.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, _, err = websocket.DefaultDialer.Dial(url, nil); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got := make(chan string, 256)
	go func() {
		defer close(got)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			got <- string(b)
		}
	}()
	return wsClient{c, got}
}

func (c wsClient) say(t *testing.T, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// within returns the next message, or "" if none comes within d.
func (c wsClient) within(d time.Duration) string {
	select {
	case m := <-c.got:
		return m
	case <-time.After(d):
		return ""
	}
}

func (c wsClient) read(t *testing.T) string {
	t.Helper()
	m := c.within(10 * time.Second)
	if m == "" {
		t.Fatal("no message in 10 s")
	}
	return m
}

// readMessage reads a message frame of the contract.
func (c wsClient) readMessage(t *testing.T) message {
	t.Helper()
	raw := c.read(t)
	var m message
	if err := json.Unmarshal([]byte(raw), &m); err != nil || m.Offset == 0 || m.Epoch == "" {
		t.Fatalf("got %q, not a message with a position", raw)
	}
	return m
}

func (c wsClient) expect(t *testing.T, room, data string) message {
	t.Helper()
	m := c.readMessage(t)
	if m.Room != room || m.Data != data {
		t.Fatalf("got %+v, want %q in room %q", m, data, room)
	}
	return m
}

// nodes starts n nodes with cfg until the test ends, and returns their
// addresses.
func nodes(t *testing.T, n int, cfg config) []string {
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make([]string, n)
	done := make(chan error, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		go func() { done <- serve(ctx, ln, cfg) }()
	}
	t.Cleanup(func() {
		cancel()
		for range addrs {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
	return addrs
}

func post(t *testing.T, addr, room, body string) int {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/publish?room="+room, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTwoNodesNATS runs two nodes and an embedded NATS server with
// JetStream through the wire contract.
func TestTwoNodesNATS(t *testing.T) {
	ns, err := startNATS("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	testTwoNodes(t, config{natsURL: ns.ClientURL(), history: 100, age: time.Minute})
}

// TestTwoNodesRedis is TestTwoNodesNATS through Redis.
func TestTwoNodesRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found: test.sh installs it (Debian package redis-server)")
		}
		t.Skip("redis-server not found; ./test.sh installs it")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	testTwoNodes(t, config{redisURL: fmt.Sprintf("redis://127.0.0.1:%d", port), history: 100, age: time.Minute})
}

// testTwoNodes: what a client of one node says reaches the room's clients
// on the other, and so does a publish through the HTTP endpoint, each
// message with its position; a client that comes back to the other node
// gets what it missed, the marker, then the live messages; one that comes
// back from a position the history does not have gets the current epoch.
func testTwoNodes(t *testing.T, cfg config) {
	addrs := nodes(t, 2, cfg)
	ws := func(i int, query string) string { return "ws://" + addrs[i] + "/ws?" + query }
	alice := dial(t, ws(0, "room=lobby"))
	bob := dial(t, ws(1, "room=lobby"))
	carol := dial(t, ws(1, "room=kitchen"))

	// The room's subscription reaches the broker asynchronously after Bob
	// joins: say hello until Bob hears it.
	var heard string
	for deadline := time.Now().Add(10 * time.Second); heard == "" && time.Now().Before(deadline); {
		alice.say(t, "hello")
		alice.expect(t, "lobby", "hello")
		heard = bob.within(100 * time.Millisecond)
	}
	if heard == "" {
		t.Fatal("bob, on the other node, heard nothing")
	}
	for bob.within(200*time.Millisecond) != "" { // hellos still in flight
	}
	if s := post(t, addrs[0], "lobby", "from the backend"); s != http.StatusNoContent {
		t.Fatalf("POST /publish: %d", s)
	}
	last := bob.expect(t, "lobby", "from the backend")
	if m := alice.expect(t, "lobby", "from the backend"); m.Offset != last.Offset || m.Epoch != last.Epoch {
		t.Fatalf("the nodes disagree on the position: %+v and %+v", m, last)
	}
	carol.say(t, "anyone in the kitchen?")
	if m := carol.expect(t, "kitchen", "anyone in the kitchen?"); m.Offset != 1 {
		t.Errorf("the kitchen's first message at offset %d", m.Offset)
	}
	if m := bob.within(200 * time.Millisecond); m != "" {
		t.Errorf("bob got %q from another room", m)
	}

	// Bob leaves; two messages are said on node 0; he comes back on node
	// 0, from the last position he saw.
	bob.Close()
	alice.say(t, "while you were away")
	alice.say(t, "and again")
	alice.expect(t, "lobby", "while you were away")
	alice.expect(t, "lobby", "and again")
	back := dial(t, ws(0, fmt.Sprintf("room=lobby&offset=%d&epoch=%s", last.Offset, last.Epoch)))
	if m := back.expect(t, "lobby", "while you were away"); m.Offset != last.Offset+1 {
		t.Errorf("missed message at offset %d, want %d", m.Offset, last.Offset+1)
	}
	back.expect(t, "lobby", "and again")
	if got := back.read(t); got != `{"recovered":true}` {
		t.Fatalf("after the history: %q", got)
	}
	alice.say(t, "welcome back")
	back.expect(t, "lobby", "welcome back")

	// From an epoch that is not the room's: told the current one.
	lost := dial(t, ws(1, fmt.Sprintf("room=lobby&offset=%d&epoch=gone", last.Offset)))
	var r recovered
	if err := json.Unmarshal([]byte(lost.read(t)), &r); err != nil || r.Recovered || r.Epoch != last.Epoch {
		t.Fatalf("recovery from another epoch: %+v, %v; want recovered false, epoch %s", r, err, last.Epoch)
	}
	alice.say(t, "live again")
	lost.expect(t, "lobby", "live again")

	// A bad position is refused at the upgrade.
	if _, resp, err := websocket.DefaultDialer.Dial(ws(0, "room=lobby&offset=x"), nil); err == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("?offset=x: %v", err)
	}
}

// TestNodeStartsWithoutNATS starts a node while NATS is down: it serves,
// answers a publish for the other nodes with 502, and joins NATS when it
// comes, with the room its member joined meanwhile. Rooms without history
// here: the local member gets what is published meanwhile.
func TestNodeStartsWithoutNATS(t *testing.T) {
	ln0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln0.Addr().String()
	ln0.Close() // nothing listens there yet
	addr := nodes(t, 1, config{natsURL: "nats://" + natsAddr})[0]
	c := dial(t, "ws://"+addr+"/ws?room=lobby")
	if s := post(t, addr, "lobby", "hi"); s != http.StatusBadGateway {
		t.Fatalf("POST /publish with NATS down: %d, want 502", s)
	}
	if got := c.read(t); got != "hi" {
		t.Fatalf("the local member got %q", got)
	}
	ns, err := startNATS(natsAddr, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	for deadline := time.Now().Add(10 * time.Second); post(t, addr, "lobby", "hi") != http.StatusNoContent; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node did not join NATS 10 s after it started")
		}
	}
}
