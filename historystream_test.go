package wshub

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
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
