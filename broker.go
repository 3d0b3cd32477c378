package wshub

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
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
// Redis pub/sub, so a message in flight when the broker dies can be lost.
// What the hub adds: a publish that the broker refuses, or does not take
// within Options.BrokerTimeout, returns its error (local members still get
// the message); a message is delivered at most once even if the broker or
// its client library hands it over twice; a message older than
// BrokerTimeout when it arrives, held up by a hung broker, is dropped and
// counted rather than delivered late; and with a BrokerWatcher, the hub
// knows when the broker is away, reports it, and subscribes what is
// missing as soon as the broker is back.
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

// A BrokerWatcher is a Broker that tells when its connection to the broker
// is lost and when it is back. Both adapters are. With it the hub reports
// the broker's health (Stats.BrokerConnected, EventBrokerDown and
// EventBrokerUp), refuses cross-node publishes at once while the broker is
// away, and subscribes the topics it could not subscribe meanwhile as soon
// as the broker is back, rather than on a retry timer.
type BrokerWatcher interface {
	Broker

	// Watch has the broker call up(false) when its connection is lost or
	// stops answering, and up(true) when it is connected again with its
	// subscriptions restored; once at first, at once, with the current
	// state. The calls come one at a time, must not block, and may repeat
	// a state. The hub calls Watch once, before any other method, and stop
	// when it closes; no call of up may start after stop returns.
	Watch(up func(connected bool)) (stop func())
}

// ErrBrokerDown is returned, wrapped, by a publish to the other hubs while
// the hub's BrokerWatcher reports the broker away.
var ErrBrokerDown = errors.New("wshub: broker not connected")

// The envelope of a message through the broker:
//
//	version  1 byte   brokerMsgVersion
//	type     1 byte   the MessageType
//	node     8 bytes  the publishing hub's id: its own messages are skipped
//	seq      8 bytes  the publishing hub's count of its publishes: duplicates are dropped
//	sent     8 bytes  the publish time, Unix nanoseconds: late messages are dropped
//	payload
//
// Version 1, without seq and sent, is still accepted from older hubs.
const (
	brokerMsgVersion   = 2
	brokerHeaderSize   = 2 + 8 + 8 + 8
	brokerHeaderSizeV1 = 2 + 8
)

// dedupWindow is how many of a publishing hub's latest sequence numbers a
// hub remembers, per publishing hub: a message further behind the newest
// one seen cannot be told from a duplicate, and is dropped as one.
// Messages from one hub arrive out of their order only by the publishes
// in flight at once, so this is far more than they ever are.
const dedupWindow = 1024

// maxOrigins bounds the publishing hubs whose sequence numbers a hub
// remembers. Past it, those silent for longest are forgotten first: a
// restarted hub has a new id and never sends under its old one again.
const maxOrigins = 4096

// bridge is a hub's side of its Broker: it keeps the broker's subscriptions
// equal to the hub's channels, in a goroutine of its own so that channel
// changes never wait for the network.
type bridge struct {
	h       *Hub
	b       Broker
	node    uint64 // this hub's id in the envelope: its own messages are skipped
	seq     atomic.Uint64
	watched bool          // b is a BrokerWatcher
	unwatch func()        // ends the watch
	streams HistoryBroker // b, if it keeps the channels' histories

	mu    sync.Mutex
	dirty map[string]struct{} // topics whose subscription may be wrong
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	// up is the broker's state as the watcher last reported it, or, without
	// one, as the last publish or subscription found it. since is when it
	// last changed, in Unix nanoseconds.
	up      atomic.Bool
	since   atomic.Int64
	stateMu sync.Mutex  // orders the reports of state changes
	resync  atomic.Bool // the broker is back: catch the histories up

	originsMu sync.Mutex
	origins   map[uint64]*origin

	lateReported atomic.Int64 // Unix second of the last EventBrokerLate

	subscribed map[string]*atomic.Bool // owned by run; false once unsubscribed
}

// An origin is what a hub remembers of another one's sequence numbers: the
// newest it saw and which of the dedupWindow before it.
type origin struct {
	newest uint64
	seen   [dedupWindow / 64]uint64 // bit s%dedupWindow for sequence number s
	last   int64                    // Unix nanoseconds of its latest message
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
		origins:    make(map[uint64]*origin),
		subscribed: make(map[string]*atomic.Bool),
	}
	br.up.Store(true) // until a watcher or a failure says otherwise
	br.since.Store(time.Now().UnixNano())
	if hb, ok := b.(HistoryBroker); ok {
		br.streams = hb
	}
	if w, ok := b.(BrokerWatcher); ok {
		br.watched = true
		br.unwatch = w.Watch(br.setUp)
	}
	br.wg.Add(1)
	go br.run()
	return br
}

// setUp records the broker's state. A change is counted, reported once as
// an event, and a return wakes the bridge to subscribe what is missing.
func (br *bridge) setUp(up bool) {
	if br.up.Load() == up {
		return // the usual case, without the lock
	}
	br.stateMu.Lock()
	defer br.stateMu.Unlock()
	if br.up.Load() == up {
		return
	}
	br.up.Store(up)
	br.since.Store(time.Now().UnixNano())
	if !up {
		if br.streams != nil {
			br.h.unsyncHistories()
		}
		br.h.event(EventBrokerDown, nil, "broker connection lost")
		return
	}
	br.h.stats.brokerReconnects.Add(1)
	br.h.event(EventBrokerUp, nil, "broker connected")
	br.resync.Store(br.streams != nil)
	br.poke()
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
	br.poke()
}

// poke wakes the bridge's goroutine.
func (br *bridge) poke() {
	select {
	case br.wake <- struct{}{}:
	default:
	}
}

// run subscribes to the topics of the hub's channels and unsubscribes from
// those of freed ones. While the broker fails it retries with back-off;
// with a BrokerWatcher it waits while the broker is away, and goes on as
// soon as it is back.
func (br *bridge) run() {
	defer br.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-br.done:
			if br.unwatch != nil {
				br.unwatch()
			}
			for t, active := range br.subscribed {
				active.Store(false)
				br.b.Unsubscribe(t)
			}
			return
		case <-br.wake:
		case <-retry.C:
		}
		if br.watched && !br.up.Load() {
			br.mu.Lock()
			br.h.stats.brokerPending.Store(int64(len(br.dirty)))
			br.mu.Unlock()
			backoff = 50 * time.Millisecond
			continue // the return pokes
		}
		br.mu.Lock()
		topics := make([]string, 0, len(br.dirty))
		for t := range br.dirty {
			topics = append(topics, t)
		}
		clear(br.dirty)
		br.mu.Unlock()
		failed := 0
		for i, t := range topics {
			if err := br.reconcile(t); err != nil {
				br.h.stats.brokerErrors.Add(1)
				br.mu.Lock()
				for _, t := range topics[i:] {
					br.dirty[t] = struct{}{}
				}
				br.mu.Unlock()
				failed = len(topics) - i
				break // the broker is failing: the rest waits too
			}
		}
		br.h.stats.brokerPending.Store(int64(failed))
		if failed == 0 && br.resync.Swap(false) {
			for t := range br.subscribed {
				if t[0] == 'c' {
					br.h.syncHistory(t[2:])
				}
			}
		}
		if failed > 0 {
			if !br.watched {
				br.setUp(false)
			}
			retry.Reset(backoff)
			backoff = min(2*backoff, 5*time.Second)
		} else {
			backoff = 50 * time.Millisecond
			if !br.watched && len(topics) > 0 {
				br.setUp(true)
			}
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
	case !want && !have && br.streams != nil && !user:
		// Never subscribed (the broker failed meanwhile): a history
		// made for a recovery meanwhile goes with the channel.
		br.h.forgetHistory(name)
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
		if br.streams != nil && !user {
			br.h.syncHistory(name)
		}
	case !want && have:
		if br.streams != nil && !user {
			br.h.unsyncHistory(name) // its notices stop here
		}
		active.Store(false)
		if err := br.b.Unsubscribe(t); err != nil {
			active.Store(true)
			return err
		}
		delete(br.subscribed, t)
		if br.streams != nil && !user {
			br.h.forgetHistory(name)
		}
	}
	br.h.stats.brokerTopics.Store(int64(len(br.subscribed)))
	return nil
}

// publish sends a message published on this hub to the others, within
// Options.BrokerTimeout at most.
func (br *bridge) publish(ctx context.Context, t string, typ MessageType, data []byte) error {
	if br.watched && !br.up.Load() {
		br.h.stats.brokerRefused.Add(1)
		return ErrBrokerDown
	}
	ctx, cancel := context.WithTimeout(ctx, br.h.opts.BrokerTimeout)
	defer cancel()
	if err := br.b.Publish(ctx, t, br.envelope(typ, data, nil)); err != nil {
		br.h.stats.brokerErrors.Add(1)
		br.h.stats.brokerRefused.Add(1)
		if !br.watched {
			br.setUp(false)
		}
		return fmt.Errorf("wshub: broker publish: %w", err)
	}
	if !br.watched {
		br.setUp(true)
	}
	br.h.stats.brokerOut.Add(1)
	return nil
}

// envelope wraps data for the broker; with pos, as a stream message's
// notice (see brokerMsgPositioned).
func (br *bridge) envelope(typ MessageType, data []byte, pos *Position) []byte {
	n := brokerHeaderSize
	if pos != nil {
		n += 8 + 1 + len(pos.Epoch)
	}
	msg := make([]byte, n+len(data))
	msg[0], msg[1] = brokerMsgVersion, byte(typ)
	binary.LittleEndian.PutUint64(msg[2:], br.node)
	binary.LittleEndian.PutUint64(msg[10:], br.seq.Add(1))
	binary.LittleEndian.PutUint64(msg[18:], uint64(time.Now().UnixNano()))
	if pos != nil {
		msg[0] = brokerMsgPositioned
		binary.LittleEndian.PutUint64(msg[brokerHeaderSize:], pos.Offset)
		msg[brokerHeaderSize+8] = byte(len(pos.Epoch))
		copy(msg[brokerHeaderSize+9:], pos.Epoch)
	}
	copy(msg[n:], data)
	return msg
}

// parseEnvelope returns the type and payload of a message of the broker,
// of version 2 or 1.
func parseEnvelope(msg []byte) (MessageType, []byte, bool) {
	switch {
	case len(msg) >= brokerHeaderSize && msg[0] == brokerMsgVersion:
		return MessageType(msg[1]), msg[brokerHeaderSize:], true
	case len(msg) >= brokerHeaderSizeV1 && msg[0] == 1:
		return MessageType(msg[1]), msg[brokerHeaderSizeV1:], true
	}
	return 0, nil, false
}

// deliver fans a message from the broker out to the local members, unless
// this hub published it (its members had it when it was published), it was
// delivered already, or it is older than Options.BrokerTimeout.
func (br *bridge) deliver(name string, user bool, msg []byte) {
	if len(msg) >= 10 && binary.LittleEndian.Uint64(msg[2:]) == br.node {
		return
	}
	if len(msg) > 0 && msg[0] == brokerMsgPositioned && !user {
		// In the stream's order, however late: the offset tells what
		// was delivered already.
		br.deliverPositioned(name, msg)
		return
	}
	typ, payload, ok := parseEnvelope(msg)
	if !ok {
		br.h.stats.brokerErrors.Add(1) // from a newer or foreign publisher
		return
	}
	node := binary.LittleEndian.Uint64(msg[2:])
	if msg[0] == brokerMsgVersion {
		now := time.Now().UnixNano()
		sent := int64(binary.LittleEndian.Uint64(msg[18:]))
		if age := time.Duration(now - sent); age > br.h.opts.BrokerTimeout {
			br.late(age)
			return
		}
		if !br.first(node, binary.LittleEndian.Uint64(msg[10:]), now) {
			br.h.stats.brokerDuplicates.Add(1)
			return
		}
	}
	br.h.stats.brokerIn.Add(1)
	ch := br.h.lookup(name, user)
	ch.publishLocal(typ, payload, PublishOptions{})
}

// first reports whether seq is the first message with that sequence number
// from node, and remembers it.
func (br *bridge) first(node, seq uint64, now int64) bool {
	br.originsMu.Lock()
	defer br.originsMu.Unlock()
	o := br.origins[node]
	if o == nil {
		if len(br.origins) >= maxOrigins {
			br.forgetOldest()
		}
		o = &origin{newest: seq}
		br.origins[node] = o
	}
	o.last = now
	switch {
	case seq > o.newest:
		// The window moves up to seq: the bits it takes in are those of
		// numbers not seen yet.
		from := o.newest + 1
		if seq-from >= dedupWindow {
			from = seq - dedupWindow + 1
		}
		for s := from; s <= seq; s++ {
			o.seen[s%dedupWindow/64] &^= 1 << (s % 64)
		}
		o.newest = seq
	case o.newest-seq >= dedupWindow:
		return false // too far behind to tell
	}
	word, bit := &o.seen[seq%dedupWindow/64], uint64(1)<<(seq%64)
	if *word&bit != 0 {
		return false
	}
	*word |= bit
	return true
}

// forgetOldest forgets the eighth of the origins silent for longest.
func (br *bridge) forgetOldest() {
	var cut int64
	for _, o := range br.origins {
		cut = max(cut, o.last)
	}
	// The oldest by a linear pass: forgetting is rare (a new hub id past
	// maxOrigins), and the map is bounded.
	for range maxOrigins / 8 {
		var oldest uint64
		t := cut
		for id, o := range br.origins {
			if o.last <= t {
				oldest, t = id, o.last
			}
		}
		delete(br.origins, oldest)
	}
}

// late counts a message dropped because it arrived age after its publish,
// and reports it at most once a second.
func (br *bridge) late(age time.Duration) {
	br.h.stats.brokerLate.Add(1)
	sec := time.Now().Unix()
	if last := br.lateReported.Load(); last != sec && br.lateReported.CompareAndSwap(last, sec) {
		br.h.event(EventBrokerLate, nil, "message from the broker "+strconv.FormatInt(age.Milliseconds(), 10)+" ms after its publish")
	}
}

// close stops the bridge and unsubscribes from every topic.
func (br *bridge) close() {
	br.once.Do(func() { close(br.done) })
	br.wg.Wait()
}
