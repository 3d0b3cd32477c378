package brokertest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub"
)

// presenceTick is the hubs' Options.PresenceInterval in the presence
// checks; a hub silent for 15 of them is forgotten.
const presenceTick = 50 * time.Millisecond

// RunPresence checks presence (Options.ChannelPresence) across hubs on the
// adapter's real server: counts and members agree on three hubs, a user on
// two hubs is one user, joins and leaves reach every hub's OnPresence; a
// hub that stops sending without a goodbye, as a killed process does, is
// forgotten within 15 ticks, and one restarted leaves no ghost; a hub that
// closes is forgotten at once; connections joining and leaving from many
// goroutines leave every count at zero. The checks share the server, so
// they run in sequence.
func RunPresence(t *testing.T, h Harness) {
	t.Run("ThreeHubs", func(t *testing.T) { testPresenceThreeHubs(t, h) })
	t.Run("KilledAndRestarted", func(t *testing.T) { testPresenceKilled(t, h) })
	t.Run("ClosedHubLeavesAtOnce", func(t *testing.T) { testPresenceClosed(t, h) })
	t.Run("Churn", func(t *testing.T) { testPresenceChurn(t, h) })
}

// presenceNode is a hub that tracks the presence of every channel, with
// the joins and leaves OnPresence reported.
type presenceNode struct {
	hub    *wshub.Hub
	addr   string
	opened chan *wshub.Conn
	mu     sync.Mutex
	events []string // "channel +joined... -left..."
}

// startPresenceNode starts a hub with presence on b.
func startPresenceNode(t *testing.T, b wshub.Broker) *presenceNode {
	n := &presenceNode{opened: make(chan *wshub.Conn, 64)}
	n.hub, n.addr = serve(t, &wshub.Options{
		Broker:           b,
		PresenceInterval: presenceTick,
		ChannelPresence:  func(string) wshub.Presence { return wshub.Presence{MaxMembers: 100} },
		OnPresence: func(channel string, joined, left []string) {
			var e strings.Builder
			e.WriteString(channel)
			for _, u := range joined {
				e.WriteString(" +" + u)
			}
			for _, u := range left {
				e.WriteString(" -" + u)
			}
			n.mu.Lock()
			n.events = append(n.events, e.String())
			n.mu.Unlock()
		},
		OnOpen: func(c *wshub.Conn) { n.opened <- c },
	})
	return n
}

// join connects a client as user ("" for none) to channel and returns it;
// closing it makes the connection leave.
func (n *presenceNode) join(t *testing.T, channel, user string) net.Conn {
	t.Helper()
	nc, _, _, err := ws.Dial(context.Background(), "ws://"+n.addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := <-n.opened
	if user != "" {
		if err := c.SetUser(user); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.hub.Channel(channel).Subscribe(c); err != nil {
		t.Fatal(err)
	}
	return nc
}

func (n *presenceNode) takeEvents() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.events
	n.events = nil
	return e
}

// waitPresence waits until every node counts conns connections and users
// users in channel, and lists members if not nil.
func waitPresence(t *testing.T, channel string, conns, users int, members []string, nodes ...*presenceNode) {
	t.Helper()
	for _, n := range nodes {
		var info wshub.PresenceInfo
		waitFor(t, fmt.Sprintf("%d connections and %d users in %q", conns, users, channel), func() bool {
			info = n.hub.Channel(channel).Presence()
			return info.Connections == conns && info.Users == users &&
				(members == nil || slices.Equal(info.Members, members))
		})
	}
}

func testPresenceThreeHubs(t *testing.T, h Harness) {
	var nodes [3]*presenceNode
	for i := range nodes {
		nodes[i] = startPresenceNode(t, h.NewBroker(t))
	}
	nodes[0].join(t, "lobby", "ann")
	nodes[0].join(t, "lobby", "ann") // two tabs
	nodes[1].join(t, "lobby", "ann") // and a phone on another hub
	bob := nodes[1].join(t, "lobby", "bob")
	nodes[2].join(t, "lobby", "")
	waitPresence(t, "lobby", 5, 2, []string{"ann", "bob"}, nodes[:]...)
	for _, n := range nodes {
		waitFor(t, "a complete view", func() bool { return !n.hub.Channel("lobby").Presence().Partial })
	}
	bob.Close()
	waitPresence(t, "lobby", 4, 1, []string{"ann"}, nodes[:]...)
	// Hub 2 has no user of its own: it heard of both through the others.
	var events []string
	waitFor(t, "bob's join and leave on hub 2", func() bool {
		events = append(events, nodes[2].takeEvents()...)
		return slices.ContainsFunc(events, func(e string) bool { return strings.Contains(e, "+bob") }) &&
			slices.ContainsFunc(events, func(e string) bool { return strings.Contains(e, "-bob") })
	})
	if slices.ContainsFunc(events, func(e string) bool { return strings.Contains(e, "-ann") }) {
		t.Errorf("ann, still in, left: %q", events)
	}
}

// cutBroker is a hub's broker that the check can cut, as a killed process
// is: nothing it publishes goes out, no goodbye either, and nothing
// reaches it.
type cutBroker struct {
	wshub.Broker
	cut atomic.Bool
}

func (b *cutBroker) Subscribe(topic string, deliver func([]byte)) error {
	return b.Broker.Subscribe(topic, func(msg []byte) {
		if !b.cut.Load() {
			deliver(msg)
		}
	})
}

func (b *cutBroker) Publish(ctx context.Context, topic string, msg []byte) error {
	if b.cut.Load() {
		return nil
	}
	return b.Broker.Publish(ctx, topic, msg)
}

func testPresenceKilled(t *testing.T, h Harness) {
	cut := &cutBroker{Broker: h.NewBroker(t)}
	doomed := startPresenceNode(t, cut)
	other := startPresenceNode(t, h.NewBroker(t))
	doomed.join(t, "kill", "ann")
	doomed.join(t, "kill", "bob")
	other.join(t, "kill", "cat")
	waitPresence(t, "kill", 3, 3, []string{"ann", "bob", "cat"}, doomed, other)
	cut.cut.Store(true)
	start := time.Now()
	waitPresence(t, "kill", 1, 1, []string{"cat"}, other)
	// 15 ticks after its last message, which may be a tick before the cut;
	// the ticks of the two hubs are not aligned.
	if took, most := time.Since(start), 17*presenceTick; took > most+time.Second {
		t.Errorf("the killed hub was forgotten after %v, documented 15 ticks (%v)", took, 15*presenceTick)
	}
	// Back under a new id, with the same users: no ghost of the old one.
	restarted := startPresenceNode(t, h.NewBroker(t))
	restarted.join(t, "kill", "ann")
	restarted.join(t, "kill", "bob")
	waitPresence(t, "kill", 3, 3, []string{"ann", "bob", "cat"}, other, restarted)
	time.Sleep(30 * presenceTick)
	waitPresence(t, "kill", 3, 3, []string{"ann", "bob", "cat"}, other, restarted)
}

func testPresenceClosed(t *testing.T, h Harness) {
	leaving := startPresenceNode(t, h.NewBroker(t))
	other := startPresenceNode(t, h.NewBroker(t))
	leaving.join(t, "close", "ann")
	other.join(t, "close", "bob")
	waitPresence(t, "close", 2, 2, nil, leaving, other)
	start := time.Now()
	leaving.hub.Close()
	waitPresence(t, "close", 1, 1, []string{"bob"}, other)
	if took := time.Since(start); took >= 15*presenceTick {
		t.Errorf("the closed hub went after %v: expired, not said goodbye", took)
	}
}

func testPresenceChurn(t *testing.T, h Harness) {
	var nodes [3]*presenceNode
	for i := range nodes {
		nodes[i] = startPresenceNode(t, h.NewBroker(t))
	}
	var wg sync.WaitGroup
	for g := range 6 {
		n := nodes[g%3]
		wg.Go(func() {
			for i := range 15 {
				nc, _, _, err := ws.Dial(context.Background(), "ws://"+n.addr+"/")
				if err != nil {
					t.Error(err)
					return
				}
				c := <-n.opened
				ch := n.hub.Channel(fmt.Sprint("churn", i%2))
				ch.Subscribe(c)
				c.SetUser(fmt.Sprint("u", (g+i)%5))
				if i%3 == 0 {
					c.SetUser(fmt.Sprint("v", i%4))
				}
				ch.Presence()
				nc.Close()
			}
		})
	}
	wg.Wait()
	for i := range 2 {
		waitPresence(t, fmt.Sprint("churn", i), 0, 0, nil, nodes[:]...)
	}
}
