package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
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
	dial := func(addr, room string) net.Conn {
		t.Helper()
		var nc net.Conn
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if nc, _, _, err = ws.Dial(context.Background(), "ws://"+addr+"/ws?room="+room); err == nil {
				t.Cleanup(func() { nc.Close() })
				return nc
			}
		}
		t.Fatal(err)
		return nil
	}
	read := func(nc net.Conn) string {
		t.Helper()
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := wsutil.ReadServerText(nc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	alice := dial(addrs[0], "lobby")
	bob := dial(addrs[1], "lobby")
	carol := dial(addrs[1], "kitchen")

	// The room's subscription reaches NATS asynchronously after Bob
	// joins: say hello until Bob hears it.
	var heard string
	for deadline := time.Now().Add(10 * time.Second); heard == "" && time.Now().Before(deadline); {
		wsutil.WriteClientText(alice, []byte("hello"))
		if got := read(alice); got != "hello" {
			t.Fatalf("alice got %q", got)
		}
		bob.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if b, err := wsutil.ReadServerText(bob); err == nil {
			heard = string(b)
		}
	}
	if heard != "hello" {
		t.Fatalf("bob, on the other node, heard %q", heard)
	}
	for { // hellos still in flight
		bob.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := wsutil.ReadServerText(bob); err != nil {
			break
		}
	}

	resp, err := http.Post("http://"+addrs[0]+"/publish?room=lobby", "text/plain", strings.NewReader("from the backend"))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /publish: %v %v", resp.Status, err)
	}
	if got := read(bob); got != "from the backend" {
		t.Errorf("bob got %q", got)
	}
	if got := read(alice); got != "from the backend" {
		t.Errorf("alice got %q", got)
	}
	wsutil.WriteClientText(carol, []byte("anyone in the kitchen?"))
	if got := read(carol); got != "anyone in the kitchen?" {
		t.Errorf("carol got %q", got)
	}
	bob.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if b, err := wsutil.ReadServerText(bob); err == nil {
		t.Errorf("bob got %q from another room", b)
	}

	for _, c := range []net.Conn{alice, bob, carol} {
		c.Close()
	}
	cancel()
	for range addrs {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
