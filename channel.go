package wshub

import (
	"context"
	"iter"
	"net"
	"sync"

	"github.com/gobwas/pool/pbytes"
)

// A Channel is a named group of connections, a room, that messages are
// published to. Channels are created when their first member subscribes and
// freed when their last one leaves; a connection leaves all its channels
// when it closes.
//
// A *Channel is a handle on the name: one obtained before the channel was
// freed still works, and acts on the channel of the same name that exists
// now, if any.
//
// A Channel is safe for concurrent use; its methods may be called from any
// goroutine, callbacks included. Messages published to one channel reach
// each member in publish order.
type Channel struct {
	hub  *Hub
	name string
	user bool // one user's connections, in Hub.users (see Conn.SetUser)

	// policy is the channel's slow-consumer policy, chosen by
	// Options.ChannelPolicy when the channel is created.
	policy SlowPolicy

	// presence is the channel's presence (see Options.ChannelPresence),
	// set when the channel is created and never changed; nil when not
	// tracked. The members' Conn.mu guards the counting (see presence.go).
	presence *presenceState

	// mu guards members and detached. Lock order: Hub.chMu, then
	// Channel.mu, then Conn.mu.
	mu       sync.Mutex
	members  []*membership
	detached bool // not (or no longer) in the hub's map: act on the live one
}

// membership is one connection in one channel. The connection links its
// memberships through next, under its mu; idx, the position in the
// channel's members, is guarded by the channel's mu.
type membership struct {
	c    *Conn
	ch   *Channel
	next *membership
	idx  int32
}

// Channel returns the channel called name. It creates nothing: the channel
// comes to exist when a connection subscribes, so publishing to a name
// nobody joined costs no memory. Channel names and user ids (Hub.User) are
// separate name spaces: Channel("ann") and User("ann") are different
// groups.
func (h *Hub) Channel(name string) *Channel {
	return h.lookup(name, false)
}

// User returns the channel of the connections whose user is id (see
// Conn.SetUser): publishing to it reaches every connection of that user,
// and All visits them, to close them for example. User ids are a name
// space of their own, apart from channel names.
func (h *Hub) User(id string) *Channel {
	return h.lookup(id, true)
}

// Broadcast sends a message to every open connection of the hub, framed
// once, and returns how many it was queued for. Like Publish it never
// blocks on a slow connection; those are treated as Options.SlowConsumer
// says. It reaches this hub's connections only, even with a Broker.
func (h *Hub) Broadcast(typ MessageType, data []byte) (int, error) {
	m, err := h.newMessage(typ, data)
	if err != nil {
		return 0, err
	}
	defer m.release()
	mp := &m
	b := h.p.newFlushBatch()
	h.p.each(func(c *Conn) {
		if c.hub == h {
			c.publish(mp, b, h.opts.SlowConsumer, false)
		}
	})
	b.submit(h.opts.FlushDelay)
	m.sent(h)
	return int(m.nPlain + m.nPacked), nil
}

func (h *Hub) lookup(name string, user bool) *Channel {
	h.chMu.RLock()
	ch := h.channelMap(user)[name]
	h.chMu.RUnlock()
	if ch == nil {
		ch = &Channel{hub: h, name: name, user: user, detached: true}
	}
	return ch
}

// resolve returns the live channel called like ch with its mu held. With
// create it creates the channel if there is none, and the held lock keeps
// it from being freed before the caller adds its member; without, it
// returns nil if there is none. It returns nil with create too when the hub
// has Options.MaxChannels channels.
func (ch *Channel) resolve(create bool) *Channel {
	ch.mu.Lock()
	for ch.detached {
		ch.mu.Unlock()
		h := ch.hub
		h.chMu.Lock()
		m := h.channelMap(ch.user)
		live := m[ch.name]
		if live == nil && create && (ch.user || len(m) < h.opts.MaxChannels) {
			live = &Channel{hub: h, name: ch.name, user: ch.user, policy: h.opts.SlowConsumer}
			if f := h.opts.ChannelPolicy; f != nil && !ch.user {
				if p := f(ch.name); p != SlowDefault && p <= SlowConflate {
					live.policy = p
				}
			}
			live.presence = h.presence.acquire(ch.name, ch.user)
			m[ch.name] = live
			if h.bridge != nil {
				h.bridge.changed(topic(ch.name, ch.user))
			}
		}
		h.chMu.Unlock()
		if live == nil || live == ch {
			return nil
		}
		ch = live
		ch.mu.Lock()
	}
	return ch
}

// Name returns the channel's name (the user id for a user's channel).
func (ch *Channel) Name() string { return ch.name }

// Subscribe adds c to the channel. Subscribing twice is a no-op. It returns
// net.ErrClosed if c is closing, ErrTooManySubscriptions if c belongs to
// Options.MaxSubscriptions channels already (user channels do not count),
// and ErrTooManyChannels if the channel does not exist and the hub has
// Options.MaxChannels channels.
func (ch *Channel) Subscribe(c *Conn) error {
	if c.hub != ch.hub {
		return ErrOtherHub
	}
	if ch = ch.resolve(true); ch == nil {
		c.hub.stats.chRefused.Add(1)
		return ErrTooManyChannels
	}
	err := ch.subscribeLocked(c)
	empty := len(ch.members) == 0
	ch.mu.Unlock()
	if empty {
		ch.free() // resolve created it for a member that was refused
	}
	return err
}

func (ch *Channel) subscribeLocked(c *Conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != connOpen {
		return net.ErrClosed
	}
	n := 0
	for m := c.subs; m != nil; m = m.next {
		if m.ch == ch {
			return nil
		}
		if !m.ch.user {
			n++
		}
	}
	if !ch.user && n >= c.hub.opts.MaxSubscriptions {
		return ErrTooManySubscriptions
	}
	m := &membership{c: c, ch: ch, next: c.subs, idx: int32(len(ch.members))}
	c.subs = m
	c.presenceLinkedLocked(m)
	ch.members = append(ch.members, m)
	c.hub.stats.subscriptions.Add(1)
	return nil
}

// Unsubscribe removes c from the channel and reports whether it was a
// member. Nothing published after Unsubscribe returns reaches c.
func (ch *Channel) Unsubscribe(c *Conn) bool {
	ch = ch.resolve(false)
	if ch == nil {
		return false
	}
	c.mu.Lock()
	var found *membership
	for p := &c.subs; *p != nil; p = &(*p).next {
		if (*p).ch == ch {
			found = *p
			c.presenceUnlinkLocked(found)
			*p = found.next
			break
		}
	}
	c.mu.Unlock()
	if found == nil {
		ch.mu.Unlock()
		return false
	}
	empty := ch.removeLocked(found)
	ch.mu.Unlock()
	if empty {
		ch.free()
	}
	return true
}

// remove takes a closed connection's membership out of the channel.
func (ch *Channel) remove(m *membership) {
	ch.mu.Lock()
	empty := ch.removeLocked(m)
	ch.mu.Unlock()
	if empty {
		ch.free()
	}
}

// removeLocked swaps m out of members and reports whether the channel is
// now empty.
func (ch *Channel) removeLocked(m *membership) bool {
	i := int(m.idx)
	if i < len(ch.members) && ch.members[i] == m {
		last := len(ch.members) - 1
		moved := ch.members[last]
		ch.members[i] = moved
		moved.idx = int32(i)
		ch.members[last] = nil
		ch.members = ch.members[:last]
		m.idx = -1
		ch.hub.stats.subscriptions.Add(-1)
	}
	return len(ch.members) == 0
}

// free removes an empty channel from the hub's map, unless a member joined
// meanwhile.
func (ch *Channel) free() {
	h := ch.hub
	h.chMu.Lock()
	ch.mu.Lock()
	if len(ch.members) == 0 && !ch.detached {
		ch.detached = true
		m := h.channelMap(ch.user)
		if m[ch.name] == ch {
			delete(m, ch.name)
			if h.bridge != nil {
				h.bridge.changed(topic(ch.name, ch.user))
			}
		}
		ch.members = nil
		if ch.presence != nil {
			ch.presence.release()
		}
	}
	ch.mu.Unlock()
	h.chMu.Unlock()
}

// Len returns the number of members.
func (ch *Channel) Len() int {
	ch = ch.resolve(false)
	if ch == nil {
		return 0
	}
	defer ch.mu.Unlock()
	return len(ch.members)
}

// All returns an iterator over the members. It visits a snapshot taken when
// the loop starts, without holding any lock, so the loop body may
// subscribe, unsubscribe, write or close.
//
//	for c := range hub.User(id).All() {
//		c.Close(wshub.ClosePolicyViolation, "kicked")
//	}
func (ch *Channel) All() iter.Seq[*Conn] {
	return func(yield func(*Conn) bool) {
		ch := ch.resolve(false)
		if ch == nil {
			return
		}
		conns := make([]*Conn, len(ch.members))
		for i, m := range ch.members {
			conns[i] = m.c
		}
		ch.mu.Unlock()
		for _, c := range conns {
			if !yield(c) {
				return
			}
		}
	}
}

// Each calls fn for each member until fn returns false, as a range over All
// does.
func (ch *Channel) Each(fn func(c *Conn) bool) { ch.All()(fn) }

// Channels returns an iterator over the hub's channels with members, user
// channels not included, in no particular order. It visits a snapshot taken
// when the loop starts.
func (h *Hub) Channels() iter.Seq[*Channel] {
	return func(yield func(*Channel) bool) {
		h.chMu.RLock()
		chs := make([]*Channel, 0, len(h.channels))
		for _, ch := range h.channels {
			chs = append(chs, ch)
		}
		h.chMu.RUnlock()
		for _, ch := range chs {
			if !yield(ch) {
				return
			}
		}
	}
}

// Subscriptions returns an iterator over the channels c belongs to, its user
// channel not included, newest first. It visits a snapshot.
func (c *Conn) Subscriptions() iter.Seq[*Channel] {
	return func(yield func(*Channel) bool) {
		var chs []*Channel
		c.mu.Lock()
		for m := c.subs; m != nil; m = m.next {
			if !m.ch.user {
				chs = append(chs, m.ch)
			}
		}
		c.mu.Unlock()
		for _, ch := range chs {
			if !yield(ch) {
				return
			}
		}
	}
}

// Publish sends a message to every member and returns how many it was
// queued for. The payload is framed once; each member's queue takes a
// reference to the same bytes, and the event loops write them out, several
// queued messages to a connection in one writev. Publish never blocks on a
// member: one whose queue would pass Options.MaxQueuedBytes is treated as
// the channel's slow-consumer policy says (see Options.SlowConsumer and
// Options.ChannelPolicy). data may be reused when Publish returns.
func (ch *Channel) Publish(typ MessageType, data []byte) (int, error) {
	return ch.PublishWith(typ, data, PublishOptions{})
}

// PublishExcept is Publish to every member but except, typically the sender.
func (ch *Channel) PublishExcept(typ MessageType, data []byte, except *Conn) (int, error) {
	return ch.PublishWith(typ, data, PublishOptions{Except: except})
}

// PublishOptions tunes one publish.
type PublishOptions struct {
	// Except is a connection not to send to, typically the sender.
	Except *Conn
	// Policy overrides the channel's slow-consumer policy for this
	// message; SlowDefault keeps it. Latest-value feeds (prices,
	// positions) often prefer SlowDropOldest; chat prefers SlowClose.
	Policy SlowPolicy
}

// PublishWith is Publish with options.
//
// With Options.Broker, the message also goes to the channel's members on
// the other hubs, whether or not it has members here. The count is of local
// members only. If the broker refuses the message, the local members still
// get it and the error is returned with their count.
//
// With a HistoryBroker, a channel with a history (Options.ChannelHistory)
// publishes to the broker's stream first, and its members everywhere get
// the message at the position the stream gave it: if the stream does not
// take the message, no one gets it, and the error is returned.
func (ch *Channel) PublishWith(typ MessageType, data []byte, o PublishOptions) (int, error) {
	return ch.PublishContext(context.Background(), typ, data, o)
}

// PublishContext is PublishWith whose hand-over to Options.Broker ends with
// ctx: a broker that cannot take the message before ctx ends returns its
// error. Local members get the message at once either way.
func (ch *Channel) PublishContext(ctx context.Context, typ MessageType, data []byte, o PublishOptions) (int, error) {
	if o.Policy > SlowConflate {
		return 0, ErrSlowPolicy
	}
	if limits, ok := ch.streamLimits(); ok {
		msgs := [1][]byte{data}
		return ch.hub.bridge.publishStream(ctx, ch, typ, msgs[:], limits, o)
	}
	n, err := ch.publishLocal(typ, data, o)
	if br := ch.hub.bridge; br != nil && err == nil {
		err = br.publish(ctx, topic(ch.name, ch.user), typ, data)
	}
	return n, err
}

// PublishBatch publishes several messages of type typ to the channel's
// members as one publish: each member's queue takes all of them, in
// order and with no other publish in between, before the event loops are
// asked to write, so that a member gets the batch in one writev when its
// socket has room. Each message is framed (and compressed) once, as by
// Publish. A feed that has several updates at once sends them this way at
// the cost of one system call per member instead of one per message.
//
// It returns how many members took at least one of the messages: the
// channel's slow-consumer policy (or o.Policy) decides message by message.
// With Options.Broker each message also goes to the broker, as by
// PublishWith. msgs and their bytes may be reused when PublishBatch
// returns.
func (ch *Channel) PublishBatch(typ MessageType, msgs [][]byte, o PublishOptions) (int, error) {
	if o.Policy > SlowConflate {
		return 0, ErrSlowPolicy
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if limits, ok := ch.streamLimits(); ok {
		// Each message gets its position on its own, then all are
		// delivered: a batch is a publish per message here.
		return ch.hub.bridge.publishStream(context.Background(), ch, typ, msgs, limits, o)
	}
	ms := make([]published, len(msgs))
	n, err := ch.publishAll(typ, msgs, ms, o)
	if br := ch.hub.bridge; br != nil && err == nil {
		t := topic(ch.name, ch.user)
		for _, data := range msgs {
			if err = br.publish(context.Background(), t, typ, data); err != nil {
				break
			}
		}
	}
	return n, err
}

// publishLocal delivers a message to the channel's members on this hub.
func (ch *Channel) publishLocal(typ MessageType, data []byte, o PublishOptions) (int, error) {
	msgs := [1][]byte{data}
	var ms [1]published
	return ch.publishAll(typ, msgs[:], ms[:], o)
}

// publishAll delivers messages to the channel's members on this hub, in
// order, each member taking all of them before the next member; ms is
// where it frames them, one per message. A channel with a history numbers
// and keeps them on the way (see history.publish).
func (ch *Channel) publishAll(typ MessageType, msgs [][]byte, ms []published, o PublishOptions) (int, error) {
	if !ch.user {
		if hs := ch.hub.lockedHistory(ch.name); hs != nil {
			defer hs.mu.Unlock()
			if !hs.stream { // a stream's take their positions from it (publishStream)
				return hs.publishLocked(ch, typ, msgs, ms, o)
			}
		}
	}
	if err := ch.hub.frameAll(typ, msgs, ms, nil); err != nil {
		return 0, err
	}
	defer releaseAll(ms)
	return ch.fanOut(ms, o), nil
}

// frameAll frames msgs into ms, one per message, each payload made by wrap
// from its index and bytes if wrap is set. On an error it releases what
// it framed.
func (h *Hub) frameAll(typ MessageType, msgs [][]byte, ms []published, wrap func(i int, data []byte) []byte) error {
	for i, data := range msgs {
		if wrap != nil {
			data = wrap(i, data)
		}
		m, err := h.newMessage(typ, data)
		if err != nil {
			releaseAll(ms[:i])
			return err
		}
		ms[i] = m
	}
	return nil
}

// releaseAll drops the publisher's references to the frames of ms.
func releaseAll(ms []published) {
	for i := range ms {
		ms[i].release()
	}
}

// fanOut queues the framed messages ms for the channel's members on this
// hub and returns how many members took at least one. The caller keeps its
// references to the frames.
func (ch *Channel) fanOut(ms []published, o PublishOptions) int {
	ch = ch.resolve(false)
	if ch == nil {
		return 0
	}
	// The channel's lock is held for the whole pass, which only queues, so
	// that concurrent publishes reach every member in the same order. The
	// pass takes all its references to each frame with one atomic add and
	// hands each loop its connections to flush in one batch at the end:
	// per member it touches nothing shared with the loops but the member.
	policy := o.Policy
	if policy == SlowDefault {
		policy = ch.policy
	}
	reserved := int32(len(ch.members))
	for i := range ms {
		ms[i].reserve(reserved)
		ms[i].plain.ch = ch // for SlowConflate
		if ms[i].packed != nil {
			ms[i].packed.ch = ch
		}
	}
	b := ch.hub.p.newFlushBatch()
	reached := 0 // members that took at least one message
	for _, mb := range ch.members {
		if mb.c == o.Except {
			continue
		}
		took := false
		for i := range ms {
			took = mb.c.publish(&ms[i], b, policy, true) || took
		}
		if took {
			reached++
		}
	}
	ch.mu.Unlock()
	for i := range ms {
		ms[i].unreserve(reserved) // the publisher's own references remain
	}
	b.submit(ch.hub.opts.FlushDelay)
	for i := range ms {
		ms[i].sent(ch.hub)
	}
	return reached
}

// newMessageFrame frames a data message once for many connections.
func newMessageFrame(typ MessageType, data []byte) (*frame, error) {
	if typ != Text && typ != Binary {
		return nil, ErrMessageType
	}
	var hdr [maxHeaderSize]byte
	hn := putHeader(hdr[:], byte(typ), len(data))
	return newFrame(hdr[:hn], data, 0), nil
}

// published is one published message: its frame, and the frame compressed
// once for the members that negotiated permessage-deflate, if any may
// want it.
type published struct {
	plain, packed *frame // packed may be nil
	// The members that took each frame (see Conn.publish).
	nPlain, nPacked int32
}

// newMessage frames data for a publish. A frame larger than MaxQueuedBytes
// could reach no member whole (see ErrMessageTooBig).
func (h *Hub) newMessage(typ MessageType, data []byte) (published, error) {
	if (typ == Text || typ == Binary) && frameSize(len(data)) > h.opts.MaxQueuedBytes {
		return published{}, ErrMessageTooBig
	}
	f, err := newMessageFrame(typ, data)
	if err != nil {
		return published{}, err
	}
	m := published{plain: f}
	if z := h.opts.Compression; z != nil && len(data) >= z.Threshold && h.stats.deflating.Load() > 0 {
		if p := deflate(data, z.Level); p != nil {
			var hdr [maxHeaderSize]byte
			hn := putHeader(hdr[:], byte(typ)|rsv1, len(p))
			m.packed = newFrame(hdr[:hn], p, 0)
			pbytes.Put(p)
			h.stats.compressed.Add(1)
		}
	}
	return m, nil
}

// reserve takes n references to each frame at once, for the members.
func (m *published) reserve(n int32) {
	m.plain.refs.Add(n)
	if m.packed != nil {
		m.packed.refs.Add(n)
	}
}

// unreserve gives back what the members did not take of the n references
// reserve took.
func (m *published) unreserve(n int32) {
	m.plain.refs.Add(m.nPlain - n)
	if m.packed != nil {
		m.packed.refs.Add(m.nPacked - n)
	}
}

// release drops the publisher's references.
func (m *published) release() {
	m.plain.release()
	if m.packed != nil {
		m.packed.release()
	}
}

// sent counts what the members took.
func (m *published) sent(h *Hub) {
	n, bytes := int(m.nPlain), int(m.nPlain)*len(m.plain.b)
	if m.packed != nil {
		n += int(m.nPacked)
		bytes += int(m.nPacked) * len(m.packed.b)
	}
	h.stats.sent(n, bytes)
}

// behindLocked reports whether c's member cannot keep up with what is
// queued for it: its socket did not take the backlog (netpoll), or a
// write of it has blocked for portableStallTime (portable, whose writes
// block and so never come back short).
func (c *Conn) behindLocked() bool {
	q := c.out
	return q != nil && q.len() > 0 && (q.stalled || c.writeBlockedLocked(q))
}

// publish queues one of m's shared frames for c, the compressed one if c
// negotiated permessage-deflate, counts it in m and adds c to the batch its
// loop will flush. With reserved the caller took a reference to each frame
// for c already; else publish takes one for the frame it queues. It reports
// false if c is closing or policy dropped the message for it (a reserved
// reference is then the caller's again).
func (c *Conn) publish(m *published, b *flushBatch, policy SlowPolicy, reserved bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, n := m.plain, &m.nPlain
	if m.packed != nil && c.flags&flagDeflate != 0 {
		f, n = m.packed, &m.nPacked
	}
	if c.state.Load() != connOpen {
		return false
	}
	if policy == SlowConflate {
		// A member whose socket has a backlog it did not take gets the
		// channel's newest message in the place of the one still
		// waiting; one that keeps up, every message, even those that
		// wait a moment for its loop's flush; past the bound with
		// nothing to replace, or a newer message too large to take the
		// older's place within the bound, none.
		if q := c.out; f.ch != nil && c.behindLocked() {
			if !reserved {
				f.refs.Add(1)
			}
			if q.replace(f, c.keptLocked(), c.hub.opts.MaxQueuedBytes-c.queuedLocked()) {
				c.hub.stats.conflated.Add(1)
				*n++
				return true
			}
			if !reserved {
				f.refs.Add(-1) // the publisher still holds one: never the last
			}
		}
		policy = SlowDropNewest
	}
	if !c.makeRoomLocked(len(f.b), policy) {
		return false
	}
	if !reserved {
		f.refs.Add(1) // before the queue has it: a loop may flush it at once
	}
	c.queueLocked(f)
	*n++ // the publisher's goroutine alone counts
	if c.transport() != viaNetConn {
		b.queued(c)
	}
	return true
}

// SetUser files c under the user id, so that Hub.User(id) reaches it; a
// user may have many connections. An empty id removes c from its user.
// It returns net.ErrClosed if c is closing.
func (c *Conn) SetUser(id string) error {
	if old := c.User(); old != "" {
		if old == id {
			return nil
		}
		c.hub.User(old).Unsubscribe(c)
	}
	if id == "" {
		return nil
	}
	return c.hub.User(id).Subscribe(c)
}

// User returns the id set with SetUser, or "".
func (c *Conn) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for m := c.subs; m != nil; m = m.next {
		if m.ch.user {
			return m.ch.name
		}
	}
	return ""
}
