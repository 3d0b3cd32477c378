package wshub

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// memBroker is an in-process Broker for the hub's side of the contract; the
// adapters' modules test the same contract against real NATS and Redis
// servers.
type memBroker struct {
	mu   sync.Mutex
	subs map[string][]*memSub
	down bool     // Publish and Subscribe fail while set
	log  []string // "sub TOPIC" and "unsub TOPIC", in order
}

type memSub struct{ deliver func([]byte) }

func newMemBroker() *memBroker { return &memBroker{subs: make(map[string][]*memSub)} }

// view is one hub's connection to the broker.
type memView struct {
	b    *memBroker
	mine map[string]*memSub
}

func (b *memBroker) view() *memView { return &memView{b: b, mine: make(map[string]*memSub)} }

func (v *memView) Subscribe(topic string, deliver func([]byte)) error {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	if v.b.down {
		return errors.New("broker down")
	}
	s := &memSub{deliver}
	v.mine[topic] = s
	v.b.subs[topic] = append(v.b.subs[topic], s)
	v.b.log = append(v.b.log, "sub "+topic)
	return nil
}

func (v *memView) Unsubscribe(topic string) error {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	s := v.mine[topic]
	delete(v.mine, topic)
	v.b.subs[topic] = slices.DeleteFunc(v.b.subs[topic], func(x *memSub) bool { return x == s })
	v.b.log = append(v.b.log, "unsub "+topic)
	return nil
}

func (v *memView) Publish(_ context.Context, topic string, msg []byte) error {
	v.b.mu.Lock()
	if v.b.down {
		v.b.mu.Unlock()
		return errors.New("broker down")
	}
	subs := slices.Clone(v.b.subs[topic])
	v.b.mu.Unlock()
	for _, s := range subs {
		s.deliver(msg)
	}
	return nil
}

func (b *memBroker) topics() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.subs {
		n += len(s)
	}
	return n
}

func (b *memBroker) setDown(down bool) {
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
}

// clusterOf starts two hubs on one broker, each with a client subscribed to
// "room" (the hub's own listener), and waits until both subscriptions
// reached the broker.
func clusterOf(t *testing.T, b *memBroker) (hubs [2]*Hub, clients [2]*client, conns [2]*Conn) {
	for i := range hubs {
		rec := newRecorder()
		opts := rec.options(false)
		opts.Broker = b.view()
		h, addr := startHub(t, opts, doors[1])
		hubs[i] = h
		clients[i] = connect(t, addr)
		conns[i] = <-rec.opened
		if err := h.Channel("room").Subscribe(conns[i]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return b.topics() == 2 })
	return
}

func TestBrokerCarriesPublishesBetweenHubs(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	hubs, clients, _ := clusterOf(t, b)
	for i := range 20 {
		msg := fmt.Sprintf("from A %d", i)
		if n, err := hubs[0].Channel("room").Publish(Text, []byte(msg)); n != 1 || err != nil {
			t.Fatalf("Publish = %d, %v; want 1 local member, nil", n, err)
		}
		clients[0].expectMessage(opText, msg) // once: not again through the broker
		clients[1].expectMessage(opText, msg)
	}
	// Publishing to a channel with no member here still reaches the others.
	if n, err := hubs[0].Channel("nobody-here").Publish(Text, []byte("x")); n != 0 || err != nil {
		t.Fatalf("Publish to an empty channel = %d, %v", n, err)
	}
	hubs[1].Channel("room").Publish(Text, []byte("from B"))
	clients[0].expectMessage(opText, "from B")
	clients[1].expectMessage(opText, "from B")
	if _, err := clients[0].tryReadFrame(100 * time.Millisecond); err == nil {
		t.Error("a hub delivered a message twice")
	}
	st := hubs[0].Stats()
	if st.BrokerOut != 21 || st.BrokerIn != 1 || st.BrokerTopics != 1 {
		t.Errorf("hub A stats: out %d, in %d, topics %d; want 21, 1, 1", st.BrokerOut, st.BrokerIn, st.BrokerTopics)
	}
}

func TestBrokerFollowsChannelLifetime(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	hubs, _, conns := clusterOf(t, b)
	hubs[0].User("ann").Subscribe(conns[0])
	waitFor(t, func() bool { return b.topics() == 3 })
	hubs[0].Channel("room").Unsubscribe(conns[0])
	waitFor(t, func() bool { return b.topics() == 2 })
	conns[0].SetUser("")
	waitFor(t, func() bool { return b.topics() == 1 })
	hubs[1].Close() // unsubscribes what it had
	waitFor(t, func() bool { return b.topics() == 0 })
	b.mu.Lock()
	defer b.mu.Unlock()
	want := []string{"sub c:room", "sub c:room", "sub u:ann", "unsub c:room", "unsub u:ann", "unsub c:room"}
	if !slices.Equal(b.log, want) {
		t.Errorf("broker saw %q, want %q", b.log, want)
	}
}

func TestBrokerDown(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	hubs, clients, conns := clusterOf(t, b)
	b.setDown(true)
	n, err := hubs[0].Channel("room").Publish(Text, []byte("local only"))
	if n != 1 || err == nil {
		t.Fatalf("Publish with the broker down = %d, %v; want 1 and an error", n, err)
	}
	clients[0].expectMessage(opText, "local only")
	// A channel created while the broker is down is subscribed once it is
	// back.
	hubs[0].Channel("late").Subscribe(conns[0])
	hubs[1].Channel("late").Subscribe(conns[1])
	waitFor(t, func() bool { return hubs[0].Stats().BrokerErrors >= 2 })
	b.setDown(false)
	waitFor(t, func() bool { return b.topics() == 4 })
	hubs[1].Channel("late").Publish(Text, []byte("back"))
	clients[0].expectMessage(opText, "back")
	clients[1].expectMessage(opText, "back")
}

// stuckBroker accepts subscriptions and never finishes a publish before its
// context ends.
type stuckBroker struct{}

func (stuckBroker) Subscribe(string, func([]byte)) error { return nil }
func (stuckBroker) Unsubscribe(string) error             { return nil }
func (stuckBroker) Publish(ctx context.Context, _ string, _ []byte) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestPublishContextEndsTheBrokersWait(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.Broker = stuckBroker{}
	h, addr := startHub(t, opts, doors[0])
	c := connect(t, addr)
	h.Channel("room").Subscribe(<-rec.opened)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n, err := h.Channel("room").PublishContext(ctx, Text, []byte("local first"), PublishOptions{})
	if n != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %d, %v; want 1 and the context's error", n, err)
	}
	c.expectMessage(opText, "local first")
}

// envelope builds a message through the broker as hub node would send its
// publish number seq, sent at sent.
func envelope(node, seq uint64, sent time.Time, payload string) []byte {
	msg := make([]byte, brokerHeaderSize, brokerHeaderSize+len(payload))
	msg[0], msg[1] = brokerMsgVersion, byte(Text)
	binary.LittleEndian.PutUint64(msg[2:], node)
	binary.LittleEndian.PutUint64(msg[10:], seq)
	binary.LittleEndian.PutUint64(msg[18:], uint64(sent.UnixNano()))
	return append(msg, payload...)
}

func TestBrokerDropsDuplicatesAndLateMessages(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	rec := newRecorder()
	hubs, clients, _ := clusterOf(t, b)
	_ = rec
	br := hubs[1].bridge
	now := time.Now()
	const other = 42 // a third hub's id
	v1 := func(payload string) []byte {
		return append([]byte{1, byte(Text), 7, 0, 0, 0, 0, 0, 0, 0}, payload...)
	}
	cases := []struct {
		name    string
		msg     []byte
		payload string
		wanted  bool
	}{
		{"first", envelope(other, 10, now, "ten"), "ten", true},
		{"its copy", envelope(other, 10, now, "ten again"), "", false},
		{"an earlier one, overtaken", envelope(other, 9, now, "nine"), "nine", true},
		{"a later one", envelope(other, 11, now, "eleven"), "eleven", true},
		{"far ahead", envelope(other, 10+3*dedupWindow, now, "far"), "far", true},
		{"a copy of the one far ahead", envelope(other, 10+3*dedupWindow, now, "far again"), "", false},
		{"too far behind to tell", envelope(other, 10+2*dedupWindow, now, "behind"), "", false},
		{"just within the window", envelope(other, 11+2*dedupWindow, now, "within"), "within", true},
		{"late", envelope(other, 20+3*dedupWindow, now.Add(-6*time.Second), "late"), "", false},
		{"another hub, same number", envelope(other+1, 10, now, "other hub"), "other hub", true},
		{"from an older hub (version 1)", v1("old"), "old", true},
		{"again: version 1 has no number to tell", v1("old"), "old", true},
		{"a foreign message", []byte("junk"), "", false},
	}
	for _, tc := range cases {
		br.deliver("room", false, tc.msg)
		if tc.wanted {
			clients[1].expectMessage(opText, tc.payload)
		} else if f, err := clients[1].tryReadFrame(50 * time.Millisecond); err == nil {
			t.Errorf("%s: delivered %q", tc.name, f.payload)
		}
	}
	st := hubs[1].Stats()
	if st.BrokerDuplicates != 3 || st.BrokerLate != 1 || st.BrokerErrors != 1 {
		t.Errorf("duplicates %d, late %d, errors %d; want 3, 1, 1", st.BrokerDuplicates, st.BrokerLate, st.BrokerErrors)
	}
}

func TestBrokerForgetsSilentOrigins(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	hubs, _, _ := clusterOf(t, b)
	br := hubs[1].bridge
	now := time.Now()
	for node := range uint64(maxOrigins + 10) {
		br.first(node+100, 1, now.UnixNano()+int64(node))
	}
	br.originsMu.Lock()
	n := len(br.origins)
	br.originsMu.Unlock()
	if n > maxOrigins {
		t.Errorf("%d origins remembered; want at most %d", n, maxOrigins)
	}
	if !br.first(maxOrigins+109, 2, now.UnixNano()) || br.first(maxOrigins+109, 1, now.UnixNano()) {
		t.Error("the newest origin was forgotten")
	}
}

// watchedBroker is a memView that reports its state to the hub.
type watchedBroker struct {
	*memView
	mu sync.Mutex
	up func(bool)
}

func (w *watchedBroker) Watch(up func(bool)) func() {
	w.mu.Lock()
	w.up = up
	w.mu.Unlock()
	up(!w.b.isDown())
	return func() {
		w.mu.Lock()
		w.up = nil
		w.mu.Unlock()
	}
}

func (w *watchedBroker) set(up bool) {
	w.b.setDown(!up)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.up != nil {
		w.up(up)
	}
}

func (b *memBroker) isDown() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down
}

func TestBrokerWatcher(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	b.setDown(true) // the node starts without its broker
	var events []string
	var mu sync.Mutex
	rec := newRecorder()
	opts := rec.options(false)
	wb := &watchedBroker{memView: b.view()}
	opts.Broker = wb
	opts.OnEvent = func(e Event) {
		mu.Lock()
		events = append(events, e.Kind.String())
		mu.Unlock()
	}
	h, addr := startHub(t, opts, doors[1])
	c := connect(t, addr)
	conn := <-rec.opened
	h.Channel("room").Subscribe(conn)
	waitFor(t, func() bool { return h.Stats().BrokerPending == 1 })
	st := h.Stats()
	if st.BrokerConnected || st.BrokerErrors != 0 {
		t.Errorf("connected %v, errors %d: the hub tried the broker while it was away", st.BrokerConnected, st.BrokerErrors)
	}
	n, err := h.Channel("room").Publish(Text, []byte("local"))
	if n != 1 || !errors.Is(err, ErrBrokerDown) {
		t.Errorf("Publish while away = %d, %v; want 1, ErrBrokerDown", n, err)
	}
	c.expectMessage(opText, "local")
	back := time.Now()
	wb.set(true)
	waitFor(t, func() bool { return b.topics() == 1 })
	if d := time.Since(back); d > time.Second {
		t.Errorf("subscribed %v after the broker's return", d)
	}
	st = h.Stats()
	if !st.BrokerConnected || st.BrokerReconnects != 1 || st.BrokerPending != 0 || st.BrokerRefused != 1 {
		t.Errorf("stats after the return: %+v", st)
	}
	wb.set(false)
	wb.set(false) // a repeated state is reported once
	wb.set(true)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"broker-down", "broker-up", "broker-down", "broker-up"}
	if !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
}

func TestBrokerTimeoutBoundsAPublish(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.Broker = stuckBroker{}
	opts.BrokerTimeout = 50 * time.Millisecond
	h, addr := startHub(t, opts, doors[0])
	connect(t, addr)
	h.Channel("room").Subscribe(<-rec.opened)
	start := time.Now()
	_, err := h.Channel("room").Publish(Text, []byte("x"))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("Publish to a stuck broker = %v after %v; want the deadline's error after BrokerTimeout", err, time.Since(start))
	}
}
