package wshub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The bounds of presence: what one busy channel, a reconnect storm, a
// broker that comes back or a channel that shrinks costs the rest.

// TestPresenceBusyChannelHoldsUpNoOther: while one channel's presence is
// locked (a large summary being made, a hub's goodbye going through a
// million users), another hub's news of other channels is applied, and
// channels are created: nothing waits behind the busy one but itself.
func TestPresenceBusyChannelHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	n := startPresenceHub(t, newMemBroker().view(), 10, time.Hour)
	n.join(t, "roomA", "ann")
	busy := presenceTestState(n.h, "roomA")
	delta := func(node uint64, channel, user string) []byte {
		p := newPresenceState(channel, 10)
		p.joinLocked(user, nil)
		return (&presenceHub{node: node}).deltaMsgs(p, []string{user}, nil, nil)[0]
	}
	gone := (&presenceHub{node: 99, seq: 1}).header(presenceGone, 0)

	busy.mu.Lock()
	var wg sync.WaitGroup
	wg.Go(func() { n.h.presence.deliver(delta(98, "roomA", "yan")) }) // waits for roomA
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.h.presence.deliver(delta(99, "roomB", "zed"))
		n.h.Channel("roomC").Len()
		// The goodbye visits every channel, roomA too: it waits for it,
		// but not with the hub's presence lock held.
		wg.Go(func() { n.h.presence.deliver(gone) })
		time.Sleep(50 * time.Millisecond)
		n.h.Channel("roomD").Len()
	}()
	var stuck bool
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		stuck = true
	}
	busy.mu.Unlock()
	wg.Wait()
	if stuck {
		t.Fatal("the hub's presence stood still behind one busy channel")
	}
	if c, u := n.h.Channel("roomB").PresenceCount(); c != 0 || u != 0 {
		t.Fatalf("roomB after the goodbye: %d connections, %d users; want none", c, u)
	}
	expectPresence(t, n.h.Channel("roomA"), 2, 2, "ann", "yan")
}

// TestPresenceDeltaInParts: a tick's delta whose ids pass a broker
// message's size (a reconnect storm) goes in parts, each a delta of its
// own, and another hub applies them all; a publish that fails does not
// keep the rest of the tick's messages from going.
func TestPresenceDeltaInParts(t *testing.T) {
	t.Parallel()
	const users = 20_000
	ph := &presenceHub{node: 5, b: newMemBroker().view()}
	p := newPresenceState("room", 10)
	for i := range users {
		p.joinLocked(fmt.Sprintf("%064d", i), nil) // 64-byte ids: 1.3 MB of them
	}
	msgs := p.tickLocked(ph, 1, nil)
	if len(msgs) < 2 {
		t.Fatalf("%d message(s) for %d joins of 64 bytes; want parts", len(msgs), users)
	}
	other := newPresenceState("room", 10)
	for _, msg := range msgs {
		if len(msg) > presencePartBytes+256 {
			t.Fatalf("a delta of %d bytes; want at most about %d", len(msg), presencePartBytes)
		}
		m, ok := parsePresence(msg)
		if !ok || m.kind != presenceDelta {
			t.Fatalf("a part does not parse as a delta")
		}
		other.applyLocked(other.slotLocked(5, true), &m, 1)
	}
	if other.remoteConns != users || len(other.users) != users {
		t.Fatalf("the other hub has %d connections, %d users; want %d", other.remoteConns, len(other.users), users)
	}

	// The same users leave: parts again, and the other hub is empty.
	for i := range users {
		p.leaveLocked(fmt.Sprintf("%064d", i))
	}
	for _, msg := range p.tickLocked(ph, 2, nil) {
		m, _ := parsePresence(msg)
		other.applyLocked(other.slotLocked(5, true), &m, 2)
	}
	if len(other.users) != 0 || other.remoteConns != 0 {
		t.Fatalf("after the leaves the other hub has %d users, %d connections", len(other.users), other.remoteConns)
	}

	// send goes on after a failed publish.
	h := &Hub{}
	h.opts.BrokerTimeout = time.Second
	fb := &failFirstBroker{memView: newMemBroker().view()}
	(&presenceHub{h: h, b: fb}).send([][]byte{{1}, {2}, {3}})
	if got := fb.published(); !slices.Equal(got, []byte{2, 3}) {
		t.Fatalf("published %v after the first failed; want [2 3]", got)
	}
}

// failFirstBroker fails its first Publish and records the first byte of
// the others.
type failFirstBroker struct {
	*memView
	mu   sync.Mutex
	n    int
	sent []byte
}

func (f *failFirstBroker) Publish(ctx context.Context, topic string, msg []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n++; f.n == 1 {
		return errors.New("refused")
	}
	f.sent = append(f.sent, msg[0])
	return nil
}

func (f *failFirstBroker) published() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// TestPresenceMembersStable: past MaxMembers the list is the first users
// in order, the same from one call to the next.
func TestPresenceMembersStable(t *testing.T) {
	t.Parallel()
	n := startPresenceHub(t, nil, 3, time.Hour)
	for _, u := range []string{"eve", "bob", "dan", "ann", "fay", "cat"} {
		n.join(t, "room", u)
	}
	for range 20 {
		info := n.h.Channel("room").Presence()
		if !slices.Equal(info.Members, []string{"ann", "bob", "cat"}) || !info.Partial {
			t.Fatalf("Presence = %+v; want the first three, partial", info)
		}
	}
	// And smallestUsers against sorting them all.
	users := make(map[string]*presenceMember)
	var all []string
	for i := range 1000 {
		u := fmt.Sprint(rand.IntN(1 << 20))
		if users[u] == nil {
			users[u] = &presenceMember{}
			all = append(all, u)
		}
		_ = i
	}
	slices.Sort(all)
	for _, k := range []int{0, 1, 2, 7, 100, len(all), len(all) + 5} {
		if got := smallestUsers(users, k); !slices.Equal(got, all[:min(k, len(all))]) {
			t.Fatalf("smallestUsers(%d) = %d users, not the first %d", k, len(got), k)
		}
	}
}

// TestPresencePartialAfterBrokerReturns: while the broker is away the
// other hubs expire; once it is back, the list says partial until their
// digests and summaries had time to come, then it is whole again.
func TestPresencePartialAfterBrokerReturns(t *testing.T) {
	t.Parallel()
	b := newMemBroker()
	w := &watchedBroker{memView: b.view()}
	a := startPresenceHub(t, w, 10, time.Hour)
	other := startPresenceHub(t, b.view(), 10, time.Hour)
	a.join(t, "room", "ann")
	other.join(t, "room", "bob")
	room := a.h.Channel("room")
	step := func(ticks int) {
		for range ticks {
			a.h.presence.step()
			other.h.presence.step()
		}
	}
	step(2 * (presenceDigestTicks + 3))
	if info := room.Presence(); info.Users != 2 || info.Partial {
		t.Fatalf("before the outage: %+v; want ann and bob, whole", info)
	}
	w.set(false)
	step(presenceExpiryTicks + 1)
	if info := room.Presence(); info.Users != 1 || !info.Partial {
		t.Fatalf("during the outage: %+v; want bob expired, partial", info)
	}
	w.set(true)
	step(1)
	if info := room.Presence(); !info.Partial {
		t.Fatalf("just after the outage: %+v; want partial, bob not heard of yet", info)
	}
	step(2 * (presenceDigestTicks + 3))
	if info := room.Presence(); info.Users != 2 || info.Partial {
		t.Fatalf("after the outage: %+v; want ann and bob, whole", info)
	}
}

// TestPresenceShrinks: a channel that had many users and now has a few
// lets their map's memory go at the next tick.
func TestPresenceShrinks(t *testing.T) {
	const users = 200_000
	ph := &presenceHub{node: 5}
	p := newPresenceState("room", 10)
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%07d", i)
		p.joinLocked(ids[i], nil)
	}
	p.tickLocked(ph, 1, nil)
	p.eventsLocked()
	for _, u := range ids[10:] {
		p.leaveLocked(u)
	}
	p.eventsLocked()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	p.tickLocked(ph, 2, nil)
	after := heap()
	runtime.KeepAlive(ids)
	if len(p.users) != 10 || p.peak != 10 {
		t.Fatalf("%d users, peak %d after the tick; want 10, 10", len(p.users), p.peak)
	}
	// The map of 200,000 users holds megabytes of buckets.
	if before < after+2<<20 {
		t.Fatalf("heap %d B before the tick, %d B after: the map of %d users was kept", before, after, users)
	}
	if got := strings.Join(smallestUsers(p.users, 3), ","); got != "u0000000,u0000001,u0000002" {
		t.Fatalf("users after the shrink: %s", got)
	}
}
