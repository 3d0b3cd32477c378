package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestTwoNodes runs two nodes and an embedded NATS server: what a client of
// one node says reaches the room's clients on the other, and so does a
// publish through the HTTP endpoint.
func TestTwoNodes(t *testing.T) {
	ns, err := startNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	var addrs [2]string
	done := make(chan error, 2)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		go func() { done <- serve(ctx, ln, ns.ClientURL()) }()
	}
	// A client's messages are read on a goroutine into a channel, so that
	// the test can wait for one with a timeout: a gorilla connection is
	// done for after a read times out.
	type client struct {
		*websocket.Conn
		got chan string
	}
	dial := func(addr, room string) client {
		t.Helper()
		url := "ws://" + addr + "/ws?room=" + room
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
		got := make(chan string, 64)
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
		return client{c, got}
	}
	say := func(c client, msg string) {
		t.Helper()
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	// within returns the next message, or "" if none comes within d.
	within := func(c client, d time.Duration) string {
		select {
		case m := <-c.got:
			return m
		case <-time.After(d):
			return ""
		}
	}
	read := func(c client) string {
		t.Helper()
		m := within(c, 10*time.Second)
		if m == "" {
			t.Fatal("no message in 10 s")
		}
		return m
	}
	alice := dial(addrs[0], "lobby")
	bob := dial(addrs[1], "lobby")
	carol := dial(addrs[1], "kitchen")

	// The room's subscription reaches NATS asynchronously after Bob
	// joins: say hello until Bob hears it.
	var heard string
	for deadline := time.Now().Add(10 * time.Second); heard == "" && time.Now().Before(deadline); {
		say(alice, "hello")
		if got := read(alice); got != "hello" {
			t.Fatalf("alice got %q", got)
		}
		heard = within(bob, 100*time.Millisecond)
	}
	if heard != "hello" {
		t.Fatalf("bob, on the other node, heard %q", heard)
	}
	for within(bob, 200*time.Millisecond) != "" { // hellos still in flight
	}

	resp, err := http.Post("http://"+addrs[0]+"/publish?room=lobby", "text/plain", strings.NewReader("from the backend"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /publish: %s", resp.Status)
	}
	if got := read(bob); got != "from the backend" {
		t.Errorf("bob got %q", got)
	}
	if got := read(alice); got != "from the backend" {
		t.Errorf("alice got %q", got)
	}
	say(carol, "anyone in the kitchen?")
	if got := read(carol); got != "anyone in the kitchen?" {
		t.Errorf("carol got %q", got)
	}
	if m := within(bob, 200*time.Millisecond); m != "" {
		t.Errorf("bob got %q from another room", m)
	}

	for _, c := range []client{alice, bob, carol} {
		c.Close()
	}
	cancel()
	for range addrs {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestNodeStartsWithoutNATS starts a node while NATS is down: it serves,
// answers a publish for the other nodes with 502, and joins NATS when it
// comes, with the room its member joined meanwhile.
func TestNodeStartsWithoutNATS(t *testing.T) {
	ln0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln0.Addr().String()
	ln0.Close() // nothing listens there yet
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, "nats://"+natsAddr) }()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?room=lobby", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	post := func() int {
		resp, err := http.Post("http://"+addr+"/publish?room=lobby", "text/plain", strings.NewReader("hi"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post(); s != http.StatusBadGateway {
		t.Fatalf("POST /publish with NATS down: %d, want 502", s)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, b, err := c.ReadMessage(); err != nil || string(b) != "hi" {
		t.Fatalf("the local member got %q, %v", b, err)
	}
	ns, err := startNATS(natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	for deadline := time.Now().Add(10 * time.Second); post() != http.StatusNoContent; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node did not join NATS 10 s after it started")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
