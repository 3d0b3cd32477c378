package brokertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub"
)

// The history checks, for a wshub.HistoryBroker: positions agree across
// hubs, a client recovers on the other hub what it missed, with nothing
// missing or twice while publishes race the recovery, and a history that
// is lost, too short or too far behind is reported as not recovered.

// runHistory runs the history checks if the harness's brokers keep
// histories.
func runHistory(t *testing.T, h Harness) {
	if _, ok := h.NewBroker(t).(wshub.HistoryBroker); !ok {
		return
	}
	t.Run("HistoryRecoverOnOtherHub", func(t *testing.T) { testRecoverOtherHub(t, h) })
	t.Run("HistoryRecoverRacesPublishes", func(t *testing.T) { testRecoverRaces(t, h) })
	t.Run("HistoryRefused", func(t *testing.T) { testHistoryRefused(t, h) })
}

// stamped is the History of the checks: members get "OFFSET EPOCH text".
func stamped(messages int) *wshub.Options {
	return &wshub.Options{ChannelHistory: func(string) wshub.History {
		return wshub.History{Messages: messages, Stamp: func(p wshub.Position, data []byte) []byte {
			return fmt.Appendf(nil, "%d %s %s", p.Offset, p.Epoch, data)
		}}
	}}
}

// historyNode starts a hub on a broker of the harness's, keeping messages
// per channel, without clients.
func historyNode(t *testing.T, h Harness, messages int) *node {
	o := stamped(messages)
	opened := make(chan *wshub.Conn, 64)
	o.Broker = h.NewBroker(t)
	o.OnOpen = func(c *wshub.Conn) { opened <- c }
	hub, addr := serve(t, o)
	return &node{hub: hub, addr: addr, opened: opened}
}

// dial connects a client to n without subscribing it.
func (n *node) dial(t *testing.T) (net.Conn, *wshub.Conn) {
	t.Helper()
	nc, _, _, err := ws.Dial(context.Background(), "ws://"+n.addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc, <-n.opened
}

// readStamped reads a stamped message.
func readStamped(t *testing.T, nc net.Conn) (wshub.Position, string) {
	t.Helper()
	got, err := read(nc, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.SplitN(got, " ", 3)
	off, _ := strconv.ParseUint(f[0], 10, 64)
	if len(f) != 3 || off == 0 {
		t.Fatalf("got %q, not stamped", got)
	}
	return wshub.Position{Offset: off, Epoch: f[1]}, f[2]
}

func expectStamped(t *testing.T, nc net.Conn, offset uint64, epoch, text string) {
	t.Helper()
	pos, got := readStamped(t, nc)
	if pos.Offset != offset || pos.Epoch != epoch || got != text {
		t.Fatalf("got %d %s %q; want %d %s %q", pos.Offset, pos.Epoch, got, offset, epoch, text)
	}
}

func testRecoverOtherHub(t *testing.T, h Harness) {
	room := fmt.Sprint("recover-", time.Now().UnixNano())
	a, b := historyNode(t, h, 100), historyNode(t, h, 100)
	ca, conn := a.dial(t)
	if err := a.hub.Channel(room).Subscribe(conn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hub a's subscription", func() bool { return a.hub.Stats().BrokerTopics == 1 })
	var last wshub.Position
	for i := range 3 {
		if _, err := a.hub.Channel(room).Publish(wshub.Text, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
		var text string
		last, text = readStamped(t, ca)
		if last.Offset != uint64(i+1) || text != fmt.Sprint("m", i) {
			t.Fatalf("message %d at %v: %q", i, last, text)
		}
	}
	ca.Close() // the client goes; two messages are published meanwhile, on the other hub
	for i := 3; i < 5; i++ {
		if _, err := b.hub.Channel(room).Publish(wshub.Text, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// It comes back on hub b, which has no member of the room: the
	// history comes from the broker.
	cb, conn := b.dial(t)
	latest, err := b.hub.Channel(room).Recover(conn, last, 100)
	if err != nil || latest.Offset != 5 || latest.Epoch != last.Epoch {
		t.Fatalf("Recover = %v, %v; want offset 5 of epoch %s", latest, err, last.Epoch)
	}
	expectStamped(t, cb, 4, last.Epoch, "m3")
	expectStamped(t, cb, 5, last.Epoch, "m4")
	waitFor(t, "hub b's subscription", func() bool { return b.hub.Stats().BrokerTopics == 1 })
	if _, err := a.hub.Channel(room).Publish(wshub.Text, []byte("live")); err != nil {
		t.Fatal(err)
	}
	expectStamped(t, cb, 6, last.Epoch, "live")
	expectNothing(t, cb)
	// Another comes back on hub b, now following the room: from its tail
	// and the broker.
	cb2, conn2 := b.dial(t)
	if _, err := b.hub.Channel(room).Recover(conn2, last, 100); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{"m3", "m4", "live"} {
		expectStamped(t, cb2, uint64(4+i), last.Epoch, text)
	}
	// Every hub tells the latest position, one that follows the room or
	// not.
	want := wshub.Position{Offset: 6, Epoch: last.Epoch}
	for _, n := range []*node{a, b, historyNode(t, h, 100)} {
		if pos, err := n.hub.Channel(room).Position(); pos != want || err != nil {
			t.Errorf("Position = %v, %v; want %v", pos, err, want)
		}
	}
	// Once its members are gone, a hub keeps nothing of the room: the
	// stream has it all.
	cb.Close()
	cb2.Close()
	waitFor(t, "hub b to let the room's history go", func() bool {
		st := b.hub.Stats()
		return st.Histories == 0 && st.HistoryBytes == 0
	})
}

// testRecoverRaces has both hubs publish without pause while clients come
// back on either, from a position a little behind: each must get every
// offset after its position once, in order, across the switch to live.
func testRecoverRaces(t *testing.T, h Harness) {
	room := fmt.Sprint("race-", time.Now().UnixNano())
	nodes := [2]*node{historyNode(t, h, 1000), historyNode(t, h, 1000)}
	// A member on each hub, so that both follow the room.
	var watchers [2]net.Conn
	for i, n := range nodes {
		nc, c := n.dial(t)
		if err := n.hub.Channel(room).Subscribe(c); err != nil {
			t.Fatal(err)
		}
		watchers[i] = nc
		waitFor(t, "the subscription", func() bool { return n.hub.Stats().BrokerTopics == 1 })
	}
	if _, err := nodes[0].hub.Channel(room).Publish(wshub.Text, []byte("start")); err != nil {
		t.Fatal(err)
	}
	start, _ := readStamped(t, watchers[0])
	readStamped(t, watchers[1])
	var published atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := n.hub.Channel(room).Publish(wshub.Text, fmt.Appendf(nil, "%d:%d", i, k)); err != nil {
					t.Error(err)
					return
				}
				published.Add(1)
				time.Sleep(time.Millisecond)
			}
		})
	}
	for r := range 10 {
		since := wshub.Position{Offset: start.Offset + uint64(published.Load()/2), Epoch: start.Epoch}
		n := nodes[r%2]
		nc, c := n.dial(t)
		latest, err := n.hub.Channel(room).Recover(c, since, 1000)
		if err != nil {
			t.Fatalf("recovery %d from %v: %v", r, since, err)
		}
		// Up to a little past latest: the history, then live.
		for want := since.Offset + 1; want <= latest.Offset+20; want++ {
			pos, _ := readStamped(t, nc)
			if pos.Offset != want || pos.Epoch != start.Epoch {
				t.Fatalf("recovery %d from %d (latest %d): got %v, want offset %d", r, since.Offset, latest.Offset, pos, want)
			}
		}
		nc.Close()
	}
	close(stop)
	wg.Wait()
	for i, nc := range watchers {
		// Each hub's member saw every offset, in order, once.
		next := start.Offset + 1
		for {
			got, err := read(nc, 500*time.Millisecond)
			if err != nil {
				break
			}
			off, _ := strconv.ParseUint(strings.SplitN(got, " ", 2)[0], 10, 64)
			if off != next {
				t.Fatalf("hub %d's member got offset %d, want %d", i, off, next)
			}
			next++
		}
		if got := int64(next - start.Offset - 1); got != published.Load() {
			t.Errorf("hub %d's member got %d messages of %d", i, got, published.Load())
		}
	}
}

// testHistoryRefused: a position older than the history, further behind
// than the limit, of an epoch before the stream was deleted, or ahead.
func testHistoryRefused(t *testing.T, h Harness) {
	room := fmt.Sprint("refused-", time.Now().UnixNano())
	a := historyNode(t, h, 5)
	for i := range 10 {
		if _, err := a.hub.Channel(room).Publish(wshub.Text, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	b := historyNode(t, h, 5)
	_, conn := b.dial(t)
	latest, err := b.hub.Channel(room).Recover(conn, wshub.Position{Offset: 10}, 10)
	if !errors.Is(err, wshub.ErrNotRecovered) || latest.Offset != 10 || latest.Epoch == "" {
		t.Fatalf("Recover with no epoch = %v, %v", latest, err)
	}
	epoch := latest.Epoch
	for _, tc := range []struct {
		name  string
		since wshub.Position
		limit int
		ok    bool
	}{
		{"older than the history", wshub.Position{Offset: 2, Epoch: epoch}, 100, false},
		{"further behind than the limit", wshub.Position{Offset: 6, Epoch: epoch}, 3, false},
		{"ahead", wshub.Position{Offset: 11, Epoch: epoch}, 100, false},
		{"within", wshub.Position{Offset: 6, Epoch: epoch}, 4, true},
	} {
		_, c := b.dial(t)
		_, err := b.hub.Channel(room).Recover(c, tc.since, tc.limit)
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if h.DeleteHistory == nil {
		return
	}
	h.DeleteHistory(t, room)
	if _, err := a.hub.Channel(room).Publish(wshub.Text, []byte("anew")); err != nil {
		t.Fatal(err)
	}
	c := historyNode(t, h, 5)
	_, conn = c.dial(t)
	latest, err = c.hub.Channel(room).Recover(conn, wshub.Position{Offset: 10, Epoch: epoch}, 100)
	if !errors.Is(err, wshub.ErrNotRecovered) || latest.Epoch == epoch || latest.Offset != 1 {
		t.Fatalf("after the stream was deleted: Recover = %v, %v; want offset 1 of a new epoch", latest, err)
	}
}
