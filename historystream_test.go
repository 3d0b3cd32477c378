package wshub

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStreams is an in-process HistoryBroker's streams, shared by the views
// of one memBroker.
type memStreams struct {
	mu      sync.Mutex
	streams map[string]*memStream
	epochs  int
}

type memStream struct {
	epoch string
	msgs  [][]byte // offset i+1 at i
}

// streamView is one hub's connection to a memBroker with streams: it may
// drop the notices it publishes (dropNotice decides, by offset), and be
// deaf, hearing nothing, as a hub whose connection is lost.
type streamView struct {
	*memView
	s          *memStreams
	dropNotice func(offset uint64) bool
	deaf       atomic.Bool

	mu sync.Mutex
	up func(bool)

	unsubDelay atomic.Int64 // nanoseconds each Unsubscribe takes
}

func (v *streamView) Unsubscribe(topic string) error {
	time.Sleep(time.Duration(v.unsubDelay.Load()))
	return v.memView.Unsubscribe(topic)
}

func (v *streamView) Subscribe(topic string, deliver func([]byte)) error {
	return v.memView.Subscribe(topic, func(msg []byte) {
		if !v.deaf.Load() {
			deliver(msg)
		}
	})
}

func (v *streamView) Publish(ctx context.Context, topic string, msg []byte) error {
	if pos, _, _, ok := parsePositioned(msg); ok && v.dropNotice != nil && v.dropNotice(pos.Offset) {
		return nil // lost on the way
	}
	return v.memView.Publish(ctx, topic, msg)
}

func (v *streamView) Append(_ context.Context, topic string, msg []byte, _ History) (Position, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	st := v.s.streams[topic]
	if st == nil {
		v.s.epochs++
		st = &memStream{epoch: "e" + strconv.Itoa(v.s.epochs)}
		v.s.streams[topic] = st
	}
	st.msgs = append(st.msgs, append([]byte(nil), msg...))
	return Position{Offset: uint64(len(st.msgs)), Epoch: st.epoch}, nil
}

func (v *streamView) Range(_ context.Context, topic string, after uint64, max int, each func(uint64, []byte)) (Position, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	st := v.s.streams[topic]
	if st == nil {
		return Position{}, nil
	}
	for i := after; i < uint64(len(st.msgs)) && i < after+uint64(max); i++ {
		each(i+1, st.msgs[i])
	}
	return Position{Offset: uint64(len(st.msgs)), Epoch: st.epoch}, nil
}

func (v *streamView) Watch(up func(bool)) func() {
	v.mu.Lock()
	v.up = up
	v.mu.Unlock()
	up(true)
	return func() {
		v.mu.Lock()
		v.up = nil
		v.mu.Unlock()
	}
}

// set reports the view's connection lost (deaf) or back.
func (v *streamView) set(up bool) {
	v.deaf.Store(!up)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.up != nil {
		v.up(up)
	}
}

// streamCluster starts two hubs whose "room" keeps 100 messages stamped
// "OFFSET EPOCH text" in the streams of one memBroker, each with a member.
func streamCluster(t *testing.T) (views [2]*streamView, hubs [2]*Hub, clients [2]*client) {
	b := newMemBroker()
	s := &memStreams{streams: make(map[string]*memStream)}
	for i := range hubs {
		rec := newRecorder()
		opts := rec.options(false)
		views[i] = &streamView{memView: b.view(), s: s}
		opts.Broker = views[i]
		opts.ChannelHistory = func(string) History {
			return History{Messages: 100, Stamp: new(stampLog).stamp}
		}
		h, addr := startHub(t, opts, doors[1])
		hubs[i] = h
		clients[i] = connect(t, addr)
		if err := h.Channel("room").Subscribe(<-rec.opened); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return b.topics() == 2 })
	return
}

// roomEpoch is the epoch of h's room.
func roomEpoch(t *testing.T, h *Hub) string {
	pos, err := h.Channel("room").Position()
	if err != nil {
		t.Fatal(err)
	}
	return pos.Epoch
}

// expectOffsets reads messages from..to, stamped, in order.
func (c *client) expectOffsets(t *testing.T, from, to uint64) {
	t.Helper()
	for want := from; want <= to; want++ {
		f := c.readFrame()
		off, _, _ := strings.Cut(string(f.payload), " ")
		if n, _ := strconv.ParseUint(off, 10, 64); n != want {
			t.Fatalf("got %q, want offset %d", f.payload, want)
		}
	}
}

func TestStreamHistoryFillsGaps(t *testing.T) {
	t.Parallel()
	views, hubs, clients := streamCluster(t)
	// Hub 0's notices of odd offsets are lost: hub 1 reads them from the
	// stream when the next one comes.
	views[0].dropNotice = func(offset uint64) bool { return offset%2 == 1 }
	for i := range 20 {
		if _, err := hubs[0].Channel("room").Publish(Text, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	clients[0].expectOffsets(t, 1, 20)
	clients[1].expectOffsets(t, 1, 20)
	if st := hubs[1].Stats(); st.HistoryGaps != 0 {
		t.Errorf("%d messages missed", st.HistoryGaps)
	}
	// Notices the stream never had, ahead of it or of another epoch, are
	// dropped: they do not move the history.
	views[0].dropNotice = nil
	epoch := roomEpoch(t, hubs[0])
	for _, bogus := range []Position{{Offset: 1000, Epoch: epoch}, {Offset: 21, Epoch: "stale"}} {
		views[0].memView.Publish(context.Background(), "c:room", hubs[0].bridge.envelope(Text, []byte("bogus"), &bogus))
	}
	hubs[0].Channel("room").Publish(Text, []byte("m20"))
	clients[1].expectOffsets(t, 21, 21)
	if pos, err := hubs[1].Channel("room").Position(); pos.Offset != 21 || pos.Epoch != epoch || err != nil {
		t.Errorf("Position = %v, %v after bogus notices", pos, err)
	}
}

func TestStreamHistoryCatchesUpWhenTheBrokerIsBack(t *testing.T) {
	t.Parallel()
	views, hubs, clients := streamCluster(t)
	hubs[0].Channel("room").Publish(Text, []byte("first"))
	clients[1].expectOffsets(t, 1, 1)
	views[1].set(false) // hub 1 hears nothing: five messages pass it by
	for range 5 {
		if _, err := hubs[0].Channel("room").Publish(Text, []byte("while away")); err != nil {
			t.Fatal(err)
		}
	}
	views[1].set(true) // back: it catches up from the stream
	clients[1].expectOffsets(t, 2, 6)
	hubs[0].Channel("room").Publish(Text, []byte("live"))
	clients[1].expectOffsets(t, 7, 7)
}

// memberOf returns h's first connection, the member streamCluster made.
func memberOf(h *Hub) *Conn {
	var conn *Conn
	h.p.each(func(c *Conn) {
		if conn == nil && c.hub == h {
			conn = c
		}
	})
	return conn
}

// TestStreamHistorySkipKeepsNoHole: messages skipped (a gap the stream
// could not fill) leave no hole in what a hub keeps, so a recovery from
// either side of the gap sends the right messages, and never panics.
func TestStreamHistorySkipKeepsNoHole(t *testing.T) {
	t.Parallel()
	_, hubs, clients := streamCluster(t)
	hubs[0].Channel("room").Publish(Text, []byte("m"))
	clients[1].expectOffsets(t, 1, 1)
	epoch := roomEpoch(t, hubs[1])
	for _, o := range []uint64{3, 5, 6} { // 2 and 4 skipped, as after fills that failed
		hs := hubs[1].lockedHistory("room")
		hs.acceptLocked(hubs[1].lookup("room", false), Position{Offset: o, Epoch: epoch}, Text, []byte("x"), PublishOptions{}, false)
		hs.mu.Unlock()
		clients[1].expectOffsets(t, o, o)
	}
	conn := memberOf(hubs[1])
	hubs[1].Channel("room").Unsubscribe(conn)
	if _, err := hubs[1].Channel("room").Recover(conn, Position{Offset: 4, Epoch: epoch}, 100); err != nil {
		t.Fatal(err)
	}
	clients[1].expectOffsets(t, 5, 6)
	hubs[1].Channel("room").Unsubscribe(conn)
	if _, err := hubs[1].Channel("room").Recover(conn, Position{Offset: 2, Epoch: epoch}, 100); err == nil {
		t.Error("recovered across a gap")
	}
}

// TestStreamHistoryForgetRacesRecover: the last member leaves and comes
// back with Recover while the hub unsubscribes: the history is kept, and
// what is published meanwhile reaches the member.
func TestStreamHistoryForgetRacesRecover(t *testing.T) {
	t.Parallel()
	views, hubs, clients := streamCluster(t)
	hubs[0].Channel("room").Publish(Text, []byte("m"))
	clients[1].expectOffsets(t, 1, 1)
	epoch := roomEpoch(t, hubs[1])
	views[1].unsubDelay.Store(int64(100 * time.Millisecond))
	conn := memberOf(hubs[1])
	hubs[1].Channel("room").Unsubscribe(conn)
	time.Sleep(20 * time.Millisecond) // the bridge is in Unsubscribe
	if _, err := hubs[1].Channel("room").Recover(conn, Position{Offset: 1, Epoch: epoch}, 100); err != nil {
		t.Fatal(err)
	}
	hubs[0].Channel("room").Publish(Text, []byte("two")) // while hub 1 is not subscribed
	time.Sleep(300 * time.Millisecond)
	hubs[0].Channel("room").Publish(Text, []byte("three"))
	clients[1].expectOffsets(t, 2, 3)
}

// TestStreamHistoryBudgetFull: a hub whose MaxHistoryBytes is spent still
// delivers a stream channel's messages: the budget bounds what it keeps.
func TestStreamHistoryBudgetFull(t *testing.T) {
	t.Parallel()
	_, hubs, clients := streamCluster(t)
	hubs[0].Channel("room").Publish(Text, []byte("m"))
	clients[1].expectOffsets(t, 1, 1)
	fill := func() {
		hubs[1].histMu.Lock()
		hubs[1].historyBytes = hubs[1].opts.MaxHistoryBytes
		hubs[1].histMu.Unlock()
	}
	fill()
	hubs[1].forgetHistory("room") // kept: its channel has a member
	fill()
	if n, err := hubs[1].Channel("room").Publish(Text, []byte("local")); n != 1 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	clients[0].expectOffsets(t, 1, 2)
	clients[1].expectOffsets(t, 2, 2)
}
