package wshub

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A Broker carries publishes between hub processes, so that a message
// published to a channel on one reaches the channel's members connected to
// the others. Adapters for NATS (github.com/wshub/wshub/broker/nats) and
// Redis (github.com/wshub/wshub/broker/redis) live in their own modules;
// anything with publish/subscribe on named topics can be one.
//
// Topics are opaque strings of any bytes, one per channel and one per user
// (Hub.User), made by the hub; an adapter maps them to its own subjects.
// Messages are opaque bytes made by the hub: an adapter carries them
// unchanged. The hub calls Subscribe when a channel gets its first local
// member and Unsubscribe when the last one leaves, from one goroutine per
// hub, never two calls for a topic at once. Publish is called by whatever
// goroutine publishes, concurrently.
//
// Delivery is as reliable as the broker: at most once with NATS core and
// Redis pub/sub. What the hub adds: a publish that the broker refuses
// returns its error (local members still get the message), a hub never
// delivers its own publish twice, and subscriptions the broker lost are
// restored by the adapter when it reconnects.
type Broker interface {
	// Subscribe starts handing every message published to topic, by any
	// hub, to deliver, one at a time, in the order the broker received
	// them from each publisher. deliver does not keep msg. Calls already
	// under way when Unsubscribe returns are ignored by the hub.
	Subscribe(topic string, deliver func(msg []byte)) error

	// Unsubscribe stops the deliveries of topic.
	Unsubscribe(topic string) error

	// Publish sends msg to the hubs subscribed to topic, this one
	// included. It returns an error when the message could not be handed
	// to the broker before ctx ended, for instance while it is
	// unreachable. It does not keep msg.
	Publish(ctx context.Context, topic string, msg []byte) error
}

// brokerMsgVersion is the first byte of a message through the broker; the
// envelope is: version, message type, the publishing hub's id (8 bytes),
// the payload.
const (
	brokerMsgVersion = 1
	brokerHeaderSize = 2 + 8
)

// bridge is a hub's side of its Broker: it keeps the broker's subscriptions
// equal to the hub's channels, in a goroutine of its own so that channel
// changes never wait for the network.
type bridge struct {
	h    *Hub
	b    Broker
	node uint64 // this hub's id in the envelope: its own messages are skipped

	mu    sync.Mutex
	dirty map[string]struct{} // topics whose subscription may be wrong
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	subscribed map[string]*atomic.Bool // owned by run; false once unsubscribed
}

func newBridge(h *Hub, b Broker) *bridge {
	var id [8]byte
	rand.Read(id[:])
	br := &bridge{
		h:          h,
		b:          b,
		node:       binary.LittleEndian.Uint64(id[:]),
		dirty:      make(map[string]struct{}),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		subscribed: make(map[string]*atomic.Bool),
	}
	br.wg.Add(1)
	go br.run()
	return br
}

// topic names the broker topic of a channel or of a user.
func topic(name string, user bool) string {
	if user {
		return "u:" + name
	}
	return "c:" + name
}

// changed notes that the channel behind topic was created or freed. It
// never blocks: the bridge's goroutine reconciles.
func (br *bridge) changed(t string) {
	br.mu.Lock()
	br.dirty[t] = struct{}{}
	br.mu.Unlock()
	select {
	case br.wake <- struct{}{}:
	default:
	}
}

// run subscribes to the topics of the hub's channels and unsubscribes from
// those of freed ones, retrying with back-off while the broker fails.
func (br *bridge) run() {
	defer br.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-br.done:
			for t, active := range br.subscribed {
				active.Store(false)
				br.b.Unsubscribe(t)
			}
			return
		case <-br.wake:
		case <-retry.C:
		}
		br.mu.Lock()
		topics := make([]string, 0, len(br.dirty))
		for t := range br.dirty {
			topics = append(topics, t)
		}
		clear(br.dirty)
		br.mu.Unlock()
		failed := false
		for _, t := range topics {
			if err := br.reconcile(t); err != nil {
				br.h.stats.brokerErrors.Add(1)
				br.mu.Lock()
				br.dirty[t] = struct{}{}
				br.mu.Unlock()
				failed = true
			}
		}
		if failed {
			retry.Reset(backoff)
			backoff = min(2*backoff, 5*time.Second)
		} else {
			backoff = 50 * time.Millisecond
		}
	}
}

// reconcile subscribes to t if its channel exists and unsubscribes if not.
func (br *bridge) reconcile(t string) error {
	user, name := t[0] == 'u', t[2:]
	br.h.chMu.RLock()
	_, want := br.h.channelMap(user)[name]
	br.h.chMu.RUnlock()
	active, have := br.subscribed[t]
	switch {
	case want && !have:
		// A late delivery for an old subscription must not double one
		// of this one's: each subscription checks its own flag.
		active = new(atomic.Bool)
		active.Store(true)
		deliver := func(msg []byte) {
			if active.Load() {
				br.deliver(name, user, msg)
			}
		}
		if err := br.b.Subscribe(t, deliver); err != nil {
			return err
		}
		br.subscribed[t] = active
	case !want && have:
		active.Store(false)
		if err := br.b.Unsubscribe(t); err != nil {
			active.Store(true)
			return err
		}
		delete(br.subscribed, t)
	}
	br.h.stats.brokerTopics.Store(int64(len(br.subscribed)))
	return nil
}

// publish sends a message published on this hub to the others.
func (br *bridge) publish(ctx context.Context, t string, typ MessageType, data []byte) error {
	msg := make([]byte, brokerHeaderSize+len(data))
	msg[0], msg[1] = brokerMsgVersion, byte(typ)
	binary.LittleEndian.PutUint64(msg[2:], br.node)
	copy(msg[brokerHeaderSize:], data)
	if err := br.b.Publish(ctx, t, msg); err != nil {
		br.h.stats.brokerErrors.Add(1)
		return fmt.Errorf("wshub: broker publish: %w", err)
	}
	br.h.stats.brokerOut.Add(1)
	return nil
}

// deliver fans a message from the broker out to the local members, unless
// this hub published it: its members had it when it was published.
func (br *bridge) deliver(name string, user bool, msg []byte) {
	if len(msg) < brokerHeaderSize || msg[0] != brokerMsgVersion {
		br.h.stats.brokerErrors.Add(1) // from a newer or foreign publisher
		return
	}
	if binary.LittleEndian.Uint64(msg[2:]) == br.node {
		return
	}
	br.h.stats.brokerIn.Add(1)
	ch := br.h.lookup(name, user)
	ch.publishLocal(MessageType(msg[1]), msg[brokerHeaderSize:], PublishOptions{})
}

// close stops the bridge and unsubscribes from every topic.
func (br *bridge) close() {
	br.once.Do(func() { close(br.done) })
	br.wg.Wait()
}
