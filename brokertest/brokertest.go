// Package brokertest checks a wshub.Broker adapter against what the hub
// relies on, with two hubs, real WebSocket clients and the adapter's real
// server: a publish reaches the members of both hubs, each publisher's
// order is kept, nothing is delivered twice, a publish while the server is
// down returns an error while local members still get it, and after a
// restart the subscriptions come back and delivery resumes; hubs start
// while the server is down and join it when it comes; and with the server
// killed and frozen under a stream of publishes (Faults), nothing is
// delivered twice or out of order or later than BrokerTimeout, publishes
// return within it, and every outage is reported.
//
// The NATS and Redis adapters' tests call Run; so can any other adapter's.
package brokertest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wshub/wshub"
)

// Harness is what Run needs of an adapter and its server.
type Harness struct {
	// NewBroker returns a broker on a new connection to the server: Run
	// gives one to each hub. The connection must reconnect on its own.
	NewBroker func(t *testing.T) wshub.Broker
	// Stop stops the server, at once, as SIGKILL does; Start starts it
	// again at the same address.
	Stop, Start func(t *testing.T)
	// Freeze stops the server's process without ending it (SIGSTOP), so
	// that its connections stay open and nothing answers; Thaw resumes it
	// (SIGCONT). Nil leaves the freezes out.
	Freeze, Thaw func(t *testing.T)
	// DeleteHistory deletes the stream of channel's history, for a
	// HistoryBroker. Nil leaves that check out.
	DeleteHistory func(t *testing.T, channel string)
}

// Run runs the checks as subtests. They share the server, so they run in
// sequence.
func Run(t *testing.T, h Harness) {
	t.Run("PublishReachesBothHubs", func(t *testing.T) { testReach(t, h) })
	t.Run("OrderPerPublisherNoDuplicates", func(t *testing.T) { testOrder(t, h) })
	t.Run("ServerRestart", func(t *testing.T) { testRestart(t, h) })
	t.Run("StartWithoutServer", func(t *testing.T) { testStartWithoutServer(t, h) })
	t.Run("Faults", func(t *testing.T) { testFaults(t, h) })
	runHistory(t, h)
}

// node is one hub with a client subscribed to a channel.
type node struct {
	hub    *wshub.Hub
	addr   string
	opened chan *wshub.Conn
	client net.Conn
	conn   *wshub.Conn
}

// twoNodes starts two hubs on the harness's brokers, each with a client in
// channel, and waits until each hub's broker subscription is active.
func twoNodes(t *testing.T, h Harness, channel string) [2]*node {
	var nodes [2]*node
	for i := range nodes {
		nodes[i] = newNode(t, h, nil, channel)
	}
	for _, n := range nodes {
		waitFor(t, "the broker subscription", func() bool { return n.hub.Stats().BrokerTopics == 1 })
	}
	return nodes
}

// newNode starts a hub with opts (nil for the defaults) on a broker of the
// harness's, and a client subscribed to channel.
func newNode(t *testing.T, h Harness, opts *wshub.Options, channel string) *node {
	var o wshub.Options
	if opts != nil {
		o = *opts
	}
	opened := make(chan *wshub.Conn, 16)
	o.Broker = h.NewBroker(t)
	o.OnOpen = func(c *wshub.Conn) { opened <- c }
	hub, addr := serve(t, &o)
	n := &node{hub: hub, addr: addr, opened: opened}
	n.client, n.conn = n.join(t, channel)
	return n
}

// serve starts a hub with o on a listener of its own, closed when the
// test ends, and returns it and its address.
func serve(t *testing.T, o *wshub.Options) (*wshub.Hub, string) {
	hub, err := wshub.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hub.Serve(ln)
	t.Cleanup(func() { hub.Close() })
	return hub, ln.Addr().String()
}

// join connects a new client to n and subscribes it to channel.
func (n *node) join(t *testing.T, channel string) (net.Conn, *wshub.Conn) {
	t.Helper()
	nc, br, _, err := ws.Dial(context.Background(), "ws://"+n.addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	if br != nil {
		t.Fatal("the hub sent data before the client subscribed")
	}
	t.Cleanup(func() { nc.Close() })
	c := <-n.opened
	if err := n.hub.Channel(channel).Subscribe(c); err != nil {
		t.Fatal(err)
	}
	return nc, c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// read reads one text message, or returns an error after d.
func read(nc net.Conn, d time.Duration) (string, error) {
	nc.SetReadDeadline(time.Now().Add(d))
	b, err := wsutil.ReadServerText(nc)
	return string(b), err
}

func expect(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	got, err := read(nc, 10*time.Second)
	if err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

// expectNothing checks that no message follows.
func expectNothing(t *testing.T, nc net.Conn) {
	t.Helper()
	if got, err := read(nc, 200*time.Millisecond); err == nil {
		t.Fatalf("unexpected message %q: delivered twice?", got)
	}
}

func testReach(t *testing.T, h Harness) {
	nodes := twoNodes(t, h, "reach")
	for i, n := range nodes {
		msg := fmt.Sprintf("from hub %d", i)
		if local, err := n.hub.Channel("reach").Publish(wshub.Text, []byte(msg)); local != 1 || err != nil {
			t.Fatalf("Publish = %d, %v; want 1 local member and no error", local, err)
		}
		expect(t, nodes[0].client, msg)
		expect(t, nodes[1].client, msg)
	}
	expectNothing(t, nodes[0].client)
	expectNothing(t, nodes[1].client)
}

// testOrder has both hubs publish 500 numbered messages at once and checks
// that every client gets all 1,000, each hub's in order, none twice.
func testOrder(t *testing.T, h Harness) {
	const count = 500
	nodes := twoNodes(t, h, "order")
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for k := range count {
				if _, err := n.hub.Channel("order").Publish(wshub.Text, fmt.Appendf(nil, "%d:%d", i, k)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for _, n := range nodes {
		next := [2]int{}
		for range 2 * count {
			got, err := read(n.client, 10*time.Second)
			if err != nil {
				t.Fatalf("after %v: %v", next, err)
			}
			from, k, _ := strings.Cut(got, ":")
			i, _ := strconv.Atoi(from)
			seq, _ := strconv.Atoi(k)
			if seq != next[i] {
				t.Fatalf("from hub %d got %d, want %d (order or duplicate)", i, seq, next[i])
			}
			next[i]++
		}
		expectNothing(t, n.client)
	}
	wg.Wait()
}

// testRestart stops the server: publishes fail with an error while local
// members still get them; after a restart the subscriptions are restored
// and delivery between hubs resumes.
func testRestart(t *testing.T, h Harness) {
	nodes := twoNodes(t, h, "restart")
	a, b := nodes[0], nodes[1]
	h.Stop(t)
	var err error
	for i := 0; err == nil; i++ {
		if i == 200 {
			t.Fatal("publishes still succeed 20 s after the server stopped")
		}
		msg := fmt.Sprintf("down %d", i)
		var local int
		local, err = a.hub.Channel("restart").Publish(wshub.Text, []byte(msg))
		if local != 1 {
			t.Fatalf("local delivery stopped with the broker: %d", local)
		}
		expect(t, a.client, msg)
		if err == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !strings.Contains(err.Error(), "broker") {
		t.Errorf("publish error %q does not say it is the broker's", err)
	}
	if a.hub.Stats().BrokerRefused == 0 {
		t.Error("Stats.BrokerRefused did not count the failure")
	}
	// Drain what reached hub b before the server stopped.
	for {
		if _, err := read(b.client, 300*time.Millisecond); err != nil {
			break
		}
	}
	b.client.SetReadDeadline(time.Time{})

	h.Start(t)
	// Publish a probe every 100 ms until one crosses: the connection has
	// come back and the subscription with it.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("no delivery between the hubs 30 s after the restart")
		}
		msg := fmt.Sprintf("probe %d", i)
		a.hub.Channel("restart").Publish(wshub.Text, []byte(msg))
		expect(t, a.client, msg)
		if got, err := read(b.client, 100*time.Millisecond); err == nil {
			if strings.HasPrefix(got, "down ") {
				// Accepted by the client library before it saw the
				// outage, and sent once it reconnected: late, not lost.
				continue
			}
			if !strings.HasPrefix(got, "probe ") {
				t.Fatalf("got %q", got)
			}
			break
		}
	}
	// Drain the probes still in flight, then check both ways once more.
	for {
		if _, err := read(b.client, 300*time.Millisecond); err != nil {
			break
		}
	}
	for i, n := range nodes {
		msg := fmt.Sprintf("after restart from %d", i)
		if _, err := n.hub.Channel("restart").Publish(wshub.Text, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		expect(t, a.client, msg)
		expect(t, b.client, msg)
	}
}
