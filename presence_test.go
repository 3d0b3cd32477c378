package wshub

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// presenceEvents records OnPresence's calls.
type presenceEvents struct {
	mu    sync.Mutex
	calls []string // "channel +joined... -left..."
}

func (e *presenceEvents) record(channel string, joined, left []string) {
	var b strings.Builder
	b.WriteString(channel)
	for _, u := range joined {
		b.WriteString(" +" + u)
	}
	for _, u := range left {
		b.WriteString(" -" + u)
	}
	e.mu.Lock()
	e.calls = append(e.calls, b.String())
	e.mu.Unlock()
}

func (e *presenceEvents) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls
	e.calls = nil
	return c
}

// presenceHubT is one hub of a presence test, with the recorder of its
// connections and of its presence events.
type presenceHubT struct {
	h      *Hub
	addr   string
	rec    *recorder
	events *presenceEvents
}

// startPresenceHub starts a hub that tracks the presence of channels named
// "room…", listing up to max users, on broker b (nil for none). A tick of
// an hour makes the test step it (presenceHub.step).
func startPresenceHub(t *testing.T, b Broker, max int, tick time.Duration) *presenceHubT {
	t.Helper()
	n := &presenceHubT{rec: newRecorder(), events: &presenceEvents{}}
	opts := n.rec.options(false)
	if b != nil {
		opts.Broker = b
	}
	opts.PresenceInterval = tick
	opts.ChannelPresence = func(ch string) Presence {
		if strings.HasPrefix(ch, "room") {
			return Presence{MaxMembers: max}
		}
		return Presence{}
	}
	opts.OnPresence = n.events.record
	n.h, n.addr = startHub(t, opts, doors[1])
	return n
}

// join connects a client, sets its user (none if "") and subscribes it to
// channel.
func (n *presenceHubT) join(t *testing.T, channel, user string) (*client, *Conn) {
	t.Helper()
	cl := connect(t, n.addr)
	c := <-n.rec.opened
	if user != "" {
		if err := c.SetUser(user); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.h.Channel(channel).Subscribe(c); err != nil {
		t.Fatal(err)
	}
	return cl, c
}

// leave closes the client and waits until the hub closed its connection.
func (n *presenceHubT) leave(t *testing.T, cl *client) {
	t.Helper()
	cl.nc.Close()
	n.rec.waitClosed(t)
}

func expectPresence(t *testing.T, ch *Channel, conns, users int, members ...string) {
	t.Helper()
	got := ch.Presence()
	if got.Connections != conns || got.Users != users || (members != nil && !slices.Equal(got.Members, members)) {
		t.Fatalf("Presence = %+v; want %d connections, %d users, members %q", got, conns, users, members)
	}
	if c, u := ch.PresenceCount(); c != conns || u != users {
		t.Fatalf("PresenceCount = %d, %d; want %d, %d", c, u, conns, users)
	}
}

// waitPresence waits until the channel's counts are conns and users.
func waitPresence(t *testing.T, ch *Channel, conns, users int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, u := ch.PresenceCount()
		if c == conns && u == users {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PresenceCount = %d, %d after 10 s; want %d, %d", c, u, conns, users)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPresenceOff(t *testing.T) {
	t.Parallel()
	if got := unsafe.Sizeof(Channel{}); got > 80 {
		t.Errorf("Channel is %d bytes, budget 80 (its size class)", got)
	}
	rec := newRecorder()
	h, addr := startHub(t, rec.options(false), doors[1])
	connect(t, addr)
	c := <-rec.opened
	c.SetUser("ann")
	h.Channel("room").Subscribe(c)
	if h.presence != nil {
		t.Fatal("presence runs without ChannelPresence")
	}
	if got := h.Channel("room").Presence(); got.Connections != 0 || got.Members != nil {
		t.Fatalf("Presence = %+v without ChannelPresence", got)
	}
}

// TestPresenceCounts: connections and users on one hub, with tabs, a
// connection without a user, a user set after the subscription and one
// that changes.
func TestPresenceCounts(t *testing.T) {
	t.Parallel()
	n := startPresenceHub(t, nil, 10, time.Hour)
	room := n.h.Channel("room")
	a1, _ := n.join(t, "room", "ann")
	a2, _ := n.join(t, "room", "ann") // a second tab
	_, b := n.join(t, "room", "bob")
	_, anon := n.join(t, "room", "")
	n.join(t, "other", "eve") // not tracked
	expectPresence(t, room, 4, 2, "ann", "bob")
	if got := n.h.Channel("other").Presence(); got.Connections != 0 {
		t.Fatalf("untracked channel: %+v", got)
	}
	if err := anon.SetUser("cat"); err != nil { // after the subscription
		t.Fatal(err)
	}
	expectPresence(t, room, 4, 3, "ann", "bob", "cat")
	b.SetUser("dan") // a change
	expectPresence(t, room, 4, 3, "ann", "cat", "dan")
	b.SetUser("") // no user: a connection only
	expectPresence(t, room, 4, 2, "ann", "cat")
	n.leave(t, a1)
	expectPresence(t, room, 3, 2, "ann", "cat")
	n.leave(t, a2)
	expectPresence(t, room, 2, 1, "cat")
	room.Unsubscribe(anon)
	expectPresence(t, room, 1, 0, []string{}...)
	if info := n.h.User("cat").Presence(); info.Connections != 0 {
		t.Fatalf("a user's channel has presence: %+v", info)
	}
}

// TestPresenceEventsBatched: joins and leaves come once per tick, and a
// user who leaves and comes back within it is in neither list.
func TestPresenceEventsBatched(t *testing.T) {
	t.Parallel()
	n := startPresenceHub(t, nil, 10, time.Hour)
	a, _ := n.join(t, "room", "ann")
	n.join(t, "room", "bob")
	n.join(t, "room2", "ann")
	n.h.presence.step()
	got := n.events.take()
	slices.Sort(got)
	if want := []string{"room +ann +bob", "room2 +ann"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	// ann reconnects within the tick; bob leaves.
	n.leave(t, a)
	n.join(t, "room", "ann")
	n.h.Channel("room").Each(func(c *Conn) bool {
		if c.User() == "bob" {
			n.h.Channel("room").Unsubscribe(c)
		}
		return true
	})
	n.h.presence.step()
	if got, want := n.events.take(), []string{"room -bob"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	n.h.presence.step()
	if got := n.events.take(); len(got) != 0 {
		t.Fatalf("events %q on a quiet tick", got)
	}
}

// TestPresenceCap: past MaxMembers the counts stay exact and the list is
// partial.
func TestPresenceCap(t *testing.T) {
	t.Parallel()
	n := startPresenceHub(t, nil, 2, time.Hour)
	for _, u := range []string{"ann", "bob", "cat"} {
		n.join(t, "room", u)
	}
	info := n.h.Channel("room").Presence()
	if info.Connections != 3 || info.Users != 3 || len(info.Members) != 2 || !info.Partial {
		t.Fatalf("Presence = %+v; want 3, 3, two members, partial", info)
	}
}

// TestPresenceFreesEmptyChannel: once its last member left, a channel's
// presence is gone after a tick.
func TestPresenceFreesEmptyChannel(t *testing.T) {
	t.Parallel()
	n := startPresenceHub(t, nil, 10, time.Hour)
	a, _ := n.join(t, "room", "ann")
	b, _ := n.join(t, "room", "")
	n.h.presence.step()
	n.leave(t, a)
	n.leave(t, b)
	n.h.presence.step()
	n.h.presence.mu.RLock()
	left := len(n.h.presence.channels)
	n.h.presence.mu.RUnlock()
	if left != 0 {
		t.Fatalf("%d channel states left after the channel emptied", left)
	}
}

// killableBroker is one hub's view of a memBroker that the test can cut,
// as if its process were killed: nothing it publishes goes out (no
// goodbye either) and nothing reaches it.
type killableBroker struct {
	*memView
	dead atomic.Bool
}

func (k *killableBroker) Subscribe(topic string, deliver func([]byte)) error {
	return k.memView.Subscribe(topic, func(msg []byte) {
		if !k.dead.Load() {
			deliver(msg)
		}
	})
}

func (k *killableBroker) Publish(ctx context.Context, topic string, msg []byte) error {
	if k.dead.Load() {
		return nil
	}
	return k.memView.Publish(ctx, topic, msg)
}

// TestPresenceAcrossHubs: three hubs count and list the channel's users
// alike, a user on two hubs once, and a join on one is an event on the
// others.
func TestPresenceAcrossHubs(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	var nodes [3]*presenceHubT
	for i := range nodes {
		nodes[i] = startPresenceHub(t, b.view(), 10, 20*time.Millisecond)
	}
	nodes[0].join(t, "room", "ann")
	nodes[0].join(t, "room", "ann")
	nodes[1].join(t, "room", "ann") // on two hubs: one user
	nodes[1].join(t, "room", "bob")
	cl, _ := nodes[2].join(t, "room", "")
	for _, n := range nodes {
		waitPresence(t, n.h.Channel("room"), 5, 2)
		expectPresence(t, n.h.Channel("room"), 5, 2, "ann", "bob")
		// Partial until every other hub's summary could have come.
		waitFor(t, func() bool { return !n.h.Channel("room").Presence().Partial })
	}
	nodes[2].leave(t, cl)
	for _, n := range nodes {
		waitPresence(t, n.h.Channel("room"), 4, 2)
	}
	// The events on the third hub, which has no member left.
	var joined []string
	waitFor(t, func() bool {
		for _, e := range nodes[2].events.take() {
			joined = append(joined, e)
		}
		return slices.Contains(joined, "room +ann +bob") ||
			slices.Contains(joined, "room +ann") && slices.Contains(joined, "room +bob")
	})
}

// TestPresenceKilledHub: the members of a hub that stops sending, without
// a goodbye, are forgotten within the documented 15 ticks; a hub that
// comes back under a new id leaves no ghost.
func TestPresenceKilledHub(t *testing.T) {
	t.Parallel()
	const tick = 20 * time.Millisecond
	b := newMemBroker()
	killed := &killableBroker{memView: b.view()}
	a := startPresenceHub(t, killed, 10, tick)
	other := startPresenceHub(t, b.view(), 10, tick)
	for _, u := range []string{"ann", "bob"} {
		a.join(t, "room", u)
	}
	other.join(t, "room", "cat")
	room := other.h.Channel("room")
	waitPresence(t, room, 3, 3)
	killed.dead.Store(true)
	start := time.Now()
	waitPresence(t, room, 1, 1)
	if took, most := time.Since(start), (presenceExpiryTicks+3)*tick; took > most+200*time.Millisecond {
		t.Errorf("the killed hub's members went after %v, documented %v", took, presenceExpiryTicks*tick)
	}
	if got := other.events.take(); !slices.Contains(got, "room -ann -bob") {
		t.Errorf("events %q, want the killed hub's users to leave", got)
	}
	// Restarted: a new hub, the same users.
	restarted := startPresenceHub(t, b.view(), 10, tick)
	restarted.join(t, "room", "ann")
	restarted.join(t, "room", "bob")
	waitPresence(t, room, 3, 3)
	waitPresence(t, restarted.h.Channel("room"), 3, 3)
	time.Sleep(2 * presenceExpiryTicks * tick) // long past any ghost's expiry
	expectPresence(t, room, 3, 3, "ann", "bob", "cat")
}

// TestPresenceGoodbye: a hub that closes is dropped by the others at once,
// long before it would expire.
func TestPresenceGoodbye(t *testing.T) {
	t.Parallel()
	const tick = 200 * time.Millisecond // expiry: 3 s
	b := newMemBroker()
	a := startPresenceHub(t, b.view(), 10, tick)
	other := startPresenceHub(t, b.view(), 10, tick)
	a.join(t, "room", "ann")
	other.join(t, "room", "bob")
	room := other.h.Channel("room")
	waitPresence(t, room, 2, 2)
	// Close a's connections' server side first? No: Close does it all.
	start := time.Now()
	a.h.Close()
	waitPresence(t, room, 1, 1)
	if took := time.Since(start); took > presenceExpiryTicks*tick/2 {
		t.Errorf("the closed hub went after %v, which is its expiry, not its goodbye", took)
	}
}

// TestPresenceSummaryRepairs: a delta lost on the way is repaired by the
// next summary: a hub that missed a leave forgets the user.
func TestPresenceSummaryRepairs(t *testing.T) {
	t.Parallel()
	n := startPresenceHub(t, nil, 10, time.Hour)
	p := presenceTestState(n.h, "room")
	remote := uint64(42)
	apply := func(msg []byte) {
		t.Helper()
		m, ok := parsePresence(msg)
		if !ok {
			t.Fatalf("message %x does not parse", msg)
		}
		p.mu.Lock()
		p.applyLocked(p.slotLocked(remote, true), &m, 0)
		p.mu.Unlock()
	}
	apply(testSummary(remote, 1, "room", 3, 1, 0, 1, "ann", "bob", "cat"))
	expectPresence(t, n.h.Channel("room"), 3, 3, "ann", "bob", "cat")
	// The delta that took bob away was lost; the next summary, in two
	// parts, tells.
	apply(testSummary(remote, 3, "room", 2, 2, 0, 2, "ann"))
	apply(testSummary(remote, 4, "room", 2, 2, 1, 2, "cat"))
	expectPresence(t, n.h.Channel("room"), 2, 2, "ann", "cat")
	// An incomplete summary (part 0 of 2 missing) adds, never removes.
	apply(testSummary(remote, 6, "room", 2, 3, 1, 2, "dan"))
	expectPresence(t, n.h.Channel("room"), 2, 3, "ann", "cat", "dan")
}

// lossyBroker is a hub's view of a memBroker that drops the deltas it
// publishes while drop is set.
type lossyBroker struct {
	*memView
	drop atomic.Bool
}

func (l *lossyBroker) Publish(ctx context.Context, topic string, msg []byte) error {
	if l.drop.Load() && len(msg) > 1 && msg[1] == presenceDelta {
		return nil
	}
	return l.memView.Publish(ctx, topic, msg)
}

// TestPresenceLostDeltaRepaired: a hub that missed a delta sees that the
// sender's digest does not match, asks for its summary, and is right
// again; a hub that starts late learns the same way.
func TestPresenceLostDeltaRepaired(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	lossy := &lossyBroker{memView: b.view()}
	a := startPresenceHub(t, lossy, 10, 20*time.Millisecond)
	other := startPresenceHub(t, b.view(), 10, 20*time.Millisecond)
	a.join(t, "room", "ann")
	waitPresence(t, other.h.Channel("room"), 1, 1)
	lossy.drop.Store(true)
	a.join(t, "room", "bob") // its delta is lost
	waitPresence(t, other.h.Channel("room"), 2, 2)
	expectPresence(t, other.h.Channel("room"), 2, 2, "ann", "bob")
	lossy.drop.Store(false)
	late := startPresenceHub(t, b.view(), 10, 20*time.Millisecond)
	waitPresence(t, late.h.Channel("room"), 2, 2)
	expectPresence(t, late.h.Channel("room"), 2, 2, "ann", "bob")
}

// presenceTestState returns the presence of a channel of h, made if need be.
func presenceTestState(h *Hub, name string) *presenceState {
	h.presence.mu.Lock()
	defer h.presence.mu.Unlock()
	return h.presence.stateLocked(name, true)
}

// testSummary is a summary message from node.
func testSummary(node, seq uint64, channel string, conns int, gen, part, parts uint64, users ...string) []byte {
	ph := &presenceHub{node: node, seq: seq - 1}
	p := newPresenceState(channel, 10)
	p.conns, p.gen = conns, gen-1
	for _, u := range users {
		p.users[u] = &presenceMember{nodes: 1, conns: 1}
	}
	msgs := ph.summaryMsgs(p, nil)
	m := msgs[0]
	// Rewrite part and parts, which summaryMsgs counts itself.
	r := presenceReader{b: m[presenceHeaderSize:]}
	r.bytes()
	r.uvarint()
	r.uvarint()
	at := len(m) - len(r.b)
	rest := r.b[2:] // part and parts, one byte each here
	out := append([]byte(nil), m[:at]...)
	out = append(out, byte(part), byte(parts))
	return append(out, rest...)
}

// TestPresenceRace has connections join, change users and leave on two
// hubs from many goroutines; at the end every count is zero and every
// state freed.
func TestPresenceRace(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	nodes := [2]*presenceHubT{
		startPresenceHub(t, b.view(), 5, 5*time.Millisecond),
		startPresenceHub(t, b.view(), 5, 5*time.Millisecond),
	}
	var wg sync.WaitGroup
	for g := range 8 {
		n := nodes[g%2]
		wg.Go(func() {
			for i := range 20 {
				cl := connect(t, n.addr)
				c := <-n.rec.opened
				room := n.h.Channel(fmt.Sprint("room", i%3))
				if i%2 == 0 {
					c.SetUser(fmt.Sprint("u", g%3))
				}
				room.Subscribe(c)
				c.SetUser(fmt.Sprint("v", i%4))
				if i%3 == 0 {
					room.Unsubscribe(c)
					room.Subscribe(c)
				}
				room.Presence()
				cl.nc.Close()
			}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		for i := range 3 {
			waitPresence(t, n.h.Channel(fmt.Sprint("room", i)), 0, 0)
		}
		waitFor(t, func() bool {
			n.h.presence.mu.RLock()
			defer n.h.presence.mu.RUnlock()
			return len(n.h.presence.channels) == 0
		})
	}
}

// FuzzPresenceMessage: no message from the broker panics, hangs, or makes
// state of what it does not carry.
func FuzzPresenceMessage(f *testing.F) {
	f.Add(testSummary(7, 1, "room", 2, 1, 0, 1, "ann", "bob"))
	ph := &presenceHub{node: 7}
	p := newPresenceState("room", 3)
	p.joinLocked("ann", nil)
	f.Add(ph.deltaMsgs(p, []string{"ann"}, []string{"bob"}, nil)[0])
	f.Add(ph.header(presenceGone, 0))
	f.Add(ph.digestMsg(p))
	f.Add(ph.requestMsg("room", 8))
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, ok := parsePresence(msg)
		if !ok || m.kind == presenceGone || m.kind == presenceRequest {
			return
		}
		p := newPresenceState("room", 3)
		p.applyLocked(p.slotLocked(m.node, true), &m, 0)
		if p.remoteConns < 0 || len(p.users) > len(msg) {
			t.Fatalf("state %d conns, %d users from %d bytes", p.remoteConns, len(p.users), len(msg))
		}
	})
}

// BenchmarkPresenceMemory reports the heap bytes per tracked member of a
// 10,000-user channel: on the hub that holds them (bytes/member-local,
// their user ids not counted: the user channels hold them anyway) and on
// another hub (bytes/member-remote, ids included).
func BenchmarkPresenceMemory(b *testing.B) {
	const users = 10_000
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%06d", i)
	}
	newState := func() *presenceState {
		return newPresenceState("room", 100)
	}
	measure := func(fill func(p *presenceState)) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		p := newState()
		fill(p)
		p.sent, p.changed = map[string]bool{}, nil // what a tick leaves
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(p)
		return float64(after.HeapAlloc-before.HeapAlloc) / users
	}
	ph := &presenceHub{node: 9}
	src := newState()
	for _, u := range ids {
		src.joinLocked(u, nil)
	}
	summary := ph.summaryMsgs(src, nil)
	for range b.N {
		local := measure(func(p *presenceState) {
			for _, u := range ids {
				p.joinLocked(u, nil)
			}
		})
		remote := measure(func(p *presenceState) {
			slot := p.slotLocked(9, true)
			for _, msg := range summary {
				m, _ := parsePresence(msg)
				p.applyLocked(slot, &m, 0)
			}
		})
		b.ReportMetric(local, "bytes/member-local")
		b.ReportMetric(remote, "bytes/member-remote")
	}
	bytes := 0
	for _, m := range summary {
		bytes += len(m)
	}
	b.ReportMetric(float64(bytes), "summary-bytes")
}

// BenchmarkPresenceChurn measures what one join and one leave cost in a
// channel of 10,000 users: on the hub where they happen (the counting,
// and a tick's delta for every 100 of them) and on another hub (parsing
// and applying the delta). ns/op is per join and leave together.
func BenchmarkPresenceChurn(b *testing.B) {
	const users = 10_000
	ids := make([]string, users+b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%07d", i)
	}
	ph := &presenceHub{node: 9, b: &memView{}}
	here, there := newPresenceState("room", 100), newPresenceState("room", 100)
	slot := there.slotLocked(9, true)
	for _, u := range ids[:users] {
		here.joinLocked(u, nil)
	}
	for _, m := range ph.summaryMsgs(here, nil) {
		pm, _ := parsePresence(m)
		there.applyLocked(slot, &pm, 0)
	}
	here.sent, here.changed, there.changed = nil, nil, nil
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		here.leaveLocked(ids[i])
		here.joinLocked(ids[users+i], nil)
		if i%100 == 99 || i == b.N-1 {
			for _, m := range here.tickLocked(ph, 1, nil) {
				pm, _ := parsePresence(m)
				there.applyLocked(slot, &pm, 1)
			}
			here.eventsLocked()
			there.eventsLocked()
		}
	}
	b.StopTimer()
	if len(there.users) != users || there.remoteConns != users {
		b.Fatalf("the other hub holds %d users, %d connections; want %d", len(there.users), there.remoteConns, users)
	}
}

// TestPresenceData: the data Presence.Data gives a user goes with it to
// the other hubs, and goes when it leaves; data past 64 bytes is left out.
func TestPresenceData(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	var nodes [2]*presenceHubT
	for i := range nodes {
		n := &presenceHubT{rec: newRecorder(), events: &presenceEvents{}}
		opts := n.rec.options(false)
		opts.Broker = b.view()
		opts.PresenceInterval = 20 * time.Millisecond
		opts.OnUpgrade = func(r *http.Request) (any, error) { return r.Header.Get("X-Name"), nil }
		opts.ChannelPresence = func(string) Presence {
			return Presence{MaxMembers: 10, Data: func(c *Conn) []byte { return []byte(c.Data().(string)) }}
		}
		n.h, n.addr = startHub(t, opts, doors[1])
		nodes[i] = n
	}
	join := func(n *presenceHubT, user, name string) *client {
		cl := dial(t, n.addr)
		cl.write([]byte(upgradeRequest(n.addr, "X-Name: "+name)))
		if status := cl.readResponse(); status != 101 {
			t.Fatalf("upgrade status %d", status)
		}
		c := <-n.rec.opened
		c.SetUser(user)
		n.h.Channel("room").Subscribe(c)
		return cl
	}
	join(nodes[0], "ann", "Ann Smith")
	bob := join(nodes[1], "bob", "Bob")
	join(nodes[1], "cat", strings.Repeat("x", maxPresenceData+1))
	want := [][]byte{[]byte("Ann Smith"), []byte("Bob"), nil}
	for _, n := range nodes {
		waitPresence(t, n.h.Channel("room"), 3, 3)
		if got := n.h.Channel("room").Presence(); !slices.EqualFunc(got.Data, want, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Fatalf("Data = %q for %q, want %q", got.Data, got.Members, want)
		}
	}
	bob.nc.Close()
	want = [][]byte{[]byte("Ann Smith"), nil}
	for _, n := range nodes {
		waitPresence(t, n.h.Channel("room"), 2, 2)
		if got := n.h.Channel("room").Presence(); !slices.EqualFunc(got.Data, want, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Fatalf("Data = %q for %q, want %q", got.Data, got.Members, want)
		}
	}
}
