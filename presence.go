package wshub

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Presence: who is in a channel, on this hub and on every other hub of the
// same Broker, kept in a few tens of bytes per user.
//
// A channel that Options.ChannelPresence tracks counts its connections and
// its users (Conn.SetUser's ids) as they subscribe and leave. Each hub
// tells the others through the Broker, on a topic of its own ("p:", apart
// from the channels' "c:" and the users' "u:"), with five messages:
//
//   - a delta per channel and tick (Options.PresenceInterval) that had
//     changes: its connection count and the users whose first connection
//     came or whose last one left during the tick; a user who leaves and
//     comes back within the tick is in neither list;
//   - a digest per channel every presenceDigestTicks ticks while it has
//     connections here: its connection and user counts and the XOR of its
//     users' hashes, a few tens of bytes whatever the channel's size;
//   - a request, from a hub whose view of another's share does not match
//     that share's digest (it lost a delta, or it just started);
//   - a summary, the answer: the counts and every user, in parts of at
//     most presencePartBytes, once per tick whatever the requests;
//   - a goodbye when the hub closes, which drops its share at once.
//
// A hub that stops sending about a channel, killed say, is forgotten from
// it presenceExpiryTicks ticks after its last message (15 s with the
// default tick): that is how long its members may be counted after it
// died. A restarted hub has a new id; what it held under the old one
// expires that way too. A user on several hubs is one user: each member
// records which hubs hold it, in a bit mask, so that counts are exact and
// cost O(1) to read whatever the number of hubs.

// Presence configures the presence of a channel (see Options.ChannelPresence).
// The zero Presence tracks nothing.
type Presence struct {
	// MaxMembers, if positive, tracks the channel's presence and bounds
	// the users Channel.Presence lists. Counts are exact past it: every
	// user is tracked, only the list is cut.
	MaxMembers int

	// Data, if set, returns a small piece of data to show with the user
	// of c (a display name, an avatar's id), at most 64 bytes: more is
	// left out. It is called when the user's first connection on this
	// hub joins the channel, with the hub's locks and c's held: it must
	// not call the hub, c included, but c.Data (where OnUpgrade put what
	// it knows of the user). The data goes to the other hubs with the
	// user and stays until the user leaves.
	Data func(c *Conn) []byte
}

// maxPresenceData bounds Presence.Data's bytes per user.
const maxPresenceData = 64

// PresenceInfo is who is in a channel, across the hubs of the Broker.
type PresenceInfo struct {
	// Connections counts the channel's connections; Users, the distinct
	// users among them (a connection without a user is only counted in
	// Connections).
	Connections int
	Users       int
	// Members lists users, sorted, at most Presence.MaxMembers of them.
	Members []string
	// Data holds Members' data (Presence.Data), Data[i] Members[i]'s; nil
	// when none has any.
	Data [][]byte
	// Partial is set when Members is not every user, or when the hub
	// cannot hear the other hubs (its broker is away): the counts are
	// then those it knew last, less the hubs that expired meanwhile.
	Partial bool
}

const (
	// presenceTopic is the broker topic of every presence message.
	presenceTopic = "p:"
	// presenceDigestTicks is how many ticks apart a hub sends each of its
	// channels' digests; presenceExpiryTicks, how long a hub is counted
	// after its last message about a channel: three digests missed.
	presenceDigestTicks = 5
	presenceExpiryTicks = 3 * presenceDigestTicks
	// presencePartBytes bounds the user ids in one summary message, so
	// that a channel of 100,000 users still fits in a NATS message.
	presencePartBytes = 32 << 10
	// maxPresenceNodes is how many other hubs a channel's presence tracks:
	// a member's mask has a bit for this hub and one per other hub. The
	// messages of more hubs about one channel are ignored.
	maxPresenceNodes = 63
	// maxPresenceOrigins bounds the hubs whose sequence numbers a hub
	// remembers; the silent longest are forgotten first.
	maxPresenceOrigins = 1024
	// maxPresenceUsers bounds the users a channel takes from the other
	// hubs: 1M users, about 90 MB. Each hub's own are bounded by its
	// connections; this bounds what a hub that misbehaves can make the
	// others hold. Past it the counts fall short.
	maxPresenceUsers = 1 << 20
	// maxPresenceRequests bounds the summaries a hub asks for in a tick;
	// those past it are asked at the next digest.
	maxPresenceRequests = 1024
)

// presenceRequestOf is a summary to ask for: of channel, from node.
type presenceRequestOf struct {
	channel string
	node    uint64
}

// A presence message, in a format of its own (the bridge's envelope is
// the channels'), little-endian:
//
//	version  1 byte   presenceVersion
//	kind     1 byte   presenceDelta, Digest, Request, Summary or Gone
//	node     8 bytes  the sending hub's id
//	seq      8 bytes  the sending hub's count of its presence messages
//	then, as uvarints and length-prefixed bytes:
//	delta:   channel, conns, n, n ids joined, m, m ids left
//	digest:  channel, conns, users, digest (8 bytes)
//	request: channel, the hub asked (8 bytes)
//	summary: channel, conns, gen, part, parts, n, n ids
const (
	presenceVersion    = 1
	presenceHeaderSize = 2 + 8 + 8

	presenceDelta   = 'D'
	presenceDigest  = 'H'
	presenceRequest = 'R'
	presenceSummary = 'S'
	presenceGone    = 'G'
)

// presenceHub is a hub's side of presence: the state of every tracked
// channel, the goroutine that ticks, and the broker topic.
//
// Lock order: Hub.chMu, then presenceHub.mu, then presenceState.mu;
// Conn.mu, then presenceState.mu. originsMu and requestsMu are taken
// alone. The broker's deliveries, the connections' goroutines (through
// the hooks under Conn.mu) and readers of Channel.Presence run
// concurrently; run alone sends, reports and frees.
type presenceHub struct {
	h    *Hub
	f    func(channel string) Presence
	node uint64 // this hub's id in the messages: its own are skipped
	b    Broker // nil without Options.Broker

	ticks      atomic.Int64 // ticks since the hub started
	subscribed atomic.Bool  // the topic's subscription is in place
	heardFrom  atomic.Int64 // from this tick every other hub's digest, and the summaries asked, had time to come
	closed     atomic.Bool  // deliveries after Close are ignored

	mu       sync.RWMutex // guards channels
	channels map[string]*presenceState

	originsMu sync.Mutex
	origins   map[uint64]*presenceOrigin

	requestsMu sync.Mutex          // taken alone
	requests   []presenceRequestOf // to send at the next tick, at most maxPresenceRequests

	// Owned by the goroutine that steps (run):
	seq  uint64 // the last sequence number sent
	sent bool   // a message went out, so a goodbye is due
	done chan struct{}
	once sync.Once // closes done
	wg   sync.WaitGroup
}

// presenceOrigin is what a hub remembers of another's messages.
type presenceOrigin struct {
	seq  uint64 // the newest seen: older ones are duplicates or late
	last int64  // the tick it was last heard
	gone bool   // it said goodbye: what follows is late
}

// presenceState is one channel's presence. Its mu guards every field but
// name, max and phase, which never change.
type presenceState struct {
	name   string
	max    int                // Presence.MaxMembers
	dataOf func(*Conn) []byte // Presence.Data
	phase  int64              // which tick of presenceDigestTicks sends its digest

	mu sync.Mutex
	// refs counts the live Channels of the name that point here (see
	// Channel.presence): the state stays while they may add members.
	refs  int
	conns int // connections here
	// users holds every user, here or elsewhere: which hubs hold it and
	// its connections here. The keys of users here are their user
	// channels' names, sharing their bytes.
	users       map[string]*presenceMember
	data        map[string]string // the users' data that is not empty; nil until one has some
	nodes       []*presenceNode   // the other hubs; nil slots are free
	remoteConns int

	// sent holds the local users whose presence changed since the last
	// delta, with whether the other hubs had them then; changed, the
	// users whose presence changed since the last tick, with whether they
	// were present at its start. sentConns is the count the last delta or
	// summary sent.
	sent      map[string]bool
	changed   map[string]bool
	sentConns int
	gen       uint64 // summaries sent
	here      int    // users with connections here
	digest    uint64 // the XOR of their hashes
	asked     bool   // another hub asked for a summary
}

// presenceMember is which hubs hold a user: bit 0 this one, bit i the
// hub of slot i; seen marks those a summary in progress named; conns
// counts its connections here. The users map points to it, so that a
// summary marks a known user without making the map a new key. 24 bytes.
type presenceMember struct {
	nodes, seen uint64
	conns       int32
}

// presenceNode is another hub's share of a channel.
type presenceNode struct {
	id     uint64
	conns  int
	users  int    // users whose mask has this node's bit
	digest uint64 // the XOR of their hashes
	last   int64  // the tick of its latest message about the channel
	asked  int64  // the tick this hub last asked it for a summary
	gen    uint64
	parts  int  // parts of summary gen received
	seen   bool // seen bits may be set for it
}

func newPresenceHub(h *Hub) *presenceHub {
	var id [8]byte
	rand.Read(id[:])
	ph := &presenceHub{
		h:        h,
		f:        h.opts.ChannelPresence,
		node:     binary.LittleEndian.Uint64(id[:]),
		b:        h.opts.Broker,
		channels: make(map[string]*presenceState),
		origins:  make(map[uint64]*presenceOrigin),
		done:     make(chan struct{}),
	}
	ph.wg.Add(1)
	go ph.run()
	return ph
}

// stateLocked returns the presence of the channel called name, made if
// ChannelPresence tracks it; nil if it does not. Those only other hubs
// tell of are made while the hub has fewer than Options.MaxChannels.
// ph.mu is held for writing.
func (ph *presenceHub) stateLocked(name string, remote bool) *presenceState {
	if p := ph.channels[name]; p != nil {
		return p
	}
	if remote && len(ph.channels) >= ph.h.opts.MaxChannels {
		return nil
	}
	cfg := ph.f(name)
	if cfg.MaxMembers <= 0 {
		return nil
	}
	p := newPresenceState(name, cfg.MaxMembers)
	p.dataOf = cfg.Data
	ph.channels[name] = p
	return p
}

func newPresenceState(name string, max int) *presenceState {
	return &presenceState{
		name:  name,
		max:   max,
		phase: int64(hashUser(name) % presenceDigestTicks), // spreads the channels' digests over the ticks
		users: make(map[string]*presenceMember),
	}
}

// acquire returns the presence of a channel being created, nil if it has
// none, and counts the channel's reference to it, which release gives
// back. It runs under Hub.chMu.
func (ph *presenceHub) acquire(name string, user bool) *presenceState {
	if ph == nil || user {
		return nil
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	p := ph.stateLocked(name, false)
	if p != nil {
		p.mu.Lock()
		p.refs++
		p.mu.Unlock()
	}
	return p
}

// release gives back a freed channel's reference.
func (p *presenceState) release() {
	p.mu.Lock()
	p.refs--
	p.mu.Unlock()
}

// userOf returns the user of the membership list from m: its first user
// channel's name, or "".
func userOf(m *membership) string {
	for ; m != nil; m = m.next {
		if m.ch.user {
			return m.ch.name
		}
	}
	return ""
}

// presenceLinkedLocked counts m, just linked at the head of c.subs, in
// presence: c joins m's channel, or, if m is a user channel, c's user
// becomes m's in every tracked channel it is in. c.mu is held, so that the
// user a connection is counted under is always the one its list says.
func (c *Conn) presenceLinkedLocked(m *membership) {
	if c.hub.presence == nil {
		return
	}
	if m.ch.user {
		if old := userOf(m.next); old != m.ch.name {
			c.presenceMoveLocked(old, m.ch.name)
		}
		return
	}
	if p := m.ch.presence; p != nil {
		p.mu.Lock()
		p.joinLocked(userOf(c.subs), c)
		p.mu.Unlock()
	}
}

// presenceUnlinkLocked takes m, about to be unlinked from c.subs, out of
// presence, as presenceLinkedLocked put it in. c.mu is held.
func (c *Conn) presenceUnlinkLocked(m *membership) {
	if c.hub.presence == nil {
		return
	}
	old := userOf(c.subs)
	if m.ch.user {
		// The user after the unlink: the first user channel but m.
		next := ""
		for x := c.subs; x != nil; x = x.next {
			if x != m && x.ch.user {
				next = x.ch.name
				break
			}
		}
		if next != old {
			c.presenceMoveLocked(old, next)
		}
		return
	}
	if p := m.ch.presence; p != nil {
		p.mu.Lock()
		p.leaveLocked(old)
		p.mu.Unlock()
	}
}

// presenceLeaveAllLocked takes a closing connection out of the presence
// of every channel it is in, before its list is detached. c.mu is held.
func (c *Conn) presenceLeaveAllLocked() {
	if c.hub.presence == nil {
		return
	}
	user := userOf(c.subs)
	for m := c.subs; m != nil; m = m.next {
		if p := m.ch.presence; p != nil {
			p.mu.Lock()
			p.leaveLocked(user)
			p.mu.Unlock()
		}
	}
}

// presenceMoveLocked counts c under user to instead of from in every
// tracked channel it is in. c.mu is held.
func (c *Conn) presenceMoveLocked(from, to string) {
	for m := c.subs; m != nil; m = m.next {
		if p := m.ch.presence; p != nil {
			p.mu.Lock()
			p.leaveLocked(from)
			p.joinLocked(to, c)
			p.mu.Unlock()
		}
	}
}

// joinLocked counts a local connection c of user ("" for none); c may be
// nil in tests.
func (p *presenceState) joinLocked(user string, c *Conn) {
	p.conns++
	if user == "" {
		return
	}
	m := p.users[user]
	if m == nil || m.conns == 0 {
		p.noteLocked(user, false)
		m = p.setLocked(user, 0, true)
		if p.dataOf != nil && c != nil {
			p.setDataLocked(user, p.dataOf(c))
		}
	}
	m.conns++
}

// setDataLocked keeps user's data if it is not empty and fits.
func (p *presenceState) setDataLocked(user string, data []byte) {
	if len(data) == 0 || len(data) > maxPresenceData || p.data[user] == string(data) {
		return
	}
	if p.data == nil {
		p.data = make(map[string]string)
	}
	p.data[user] = string(data)
}

// leaveLocked uncounts a local connection of user.
func (p *presenceState) leaveLocked(user string) {
	p.conns--
	if user == "" {
		return
	}
	m := p.users[user]
	if m == nil || m.conns == 0 {
		return // never counted: cannot happen
	}
	if m.conns--; m.conns > 0 {
		return
	}
	p.noteLocked(user, true)
	p.setLocked(user, 0, false)
}

// noteLocked notes that user's presence here changes, and whether the
// other hubs had it, unless a change since the last delta was noted.
func (p *presenceState) noteLocked(user string, was bool) {
	if p.sent == nil {
		p.sent = make(map[string]bool)
	}
	if _, ok := p.sent[user]; !ok {
		p.sent[user] = was
	}
}

// setLocked sets or clears the bit of slot (0 this hub, i nodes[i-1]) in
// user's mask, and notes a change of the user's presence for the tick's
// events. It returns the user's member, nil once it is nowhere.
func (p *presenceState) setLocked(user string, slot int, on bool) *presenceMember {
	bit := uint64(1) << slot
	m := p.users[user]
	if m == nil {
		if !on {
			return nil
		}
		m = &presenceMember{}
		p.users[user] = m
	}
	if (m.nodes&bit != 0) == on {
		return m
	}
	before := m.nodes != 0
	if on {
		m.nodes |= bit
	} else {
		m.nodes &^= bit
		m.seen &^= bit
	}
	h := hashUser(user)
	if slot == 0 {
		p.digest ^= h
		if on {
			p.here++
		} else {
			p.here--
		}
	} else {
		n := p.nodes[slot-1]
		n.digest ^= h
		if on {
			n.users++
		} else {
			n.users--
		}
	}
	after := m.nodes != 0
	if !after {
		delete(p.users, user)
		delete(p.data, user)
		m = nil
	}
	if after != before {
		if p.changed == nil {
			p.changed = make(map[string]bool)
		}
		if _, ok := p.changed[user]; !ok {
			p.changed[user] = before
		}
	}
	return m
}

// Presence returns who is in the channel, on this hub and, with a Broker,
// on the others, as far as this hub heard (see Options.ChannelPresence).
// The counts are exact; Members lists up to Presence.MaxMembers users.
// A channel that presence does not track, or a user's channel, returns the
// zero PresenceInfo.
func (ch *Channel) Presence() PresenceInfo {
	p := ch.presenceState()
	if p == nil {
		return PresenceInfo{}
	}
	p.mu.Lock()
	info := PresenceInfo{Connections: p.conns + p.remoteConns, Users: len(p.users)}
	info.Members = make([]string, 0, min(p.max, len(p.users)))
	for u := range p.users {
		if len(info.Members) == p.max {
			break
		}
		info.Members = append(info.Members, u)
	}
	slices.Sort(info.Members)
	if len(p.data) > 0 {
		info.Data = make([][]byte, len(info.Members))
		for i, u := range info.Members {
			if d, ok := p.data[u]; ok {
				info.Data[i] = []byte(d)
			}
		}
	}
	p.mu.Unlock()
	info.Partial = len(info.Members) < info.Users || !ch.hub.presence.hearing()
	return info
}

// PresenceCount returns the channel's connections and distinct users, as
// Presence does, without listing them: it costs two map lookups.
func (ch *Channel) PresenceCount() (connections, users int) {
	p := ch.presenceState()
	if p == nil {
		return 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns + p.remoteConns, len(p.users)
}

// presenceState returns the channel's presence, nil if it has none.
func (ch *Channel) presenceState() *presenceState {
	ph := ch.hub.presence
	if ph == nil || ch.user {
		return nil
	}
	ph.mu.RLock()
	defer ph.mu.RUnlock()
	return ph.channels[ch.name]
}

// hearing reports whether the hub hears the other hubs: it has no broker,
// or its presence subscription has been in place for a summary's period,
// time for every other hub's to come, and the broker is connected.
func (ph *presenceHub) hearing() bool {
	if ph.b == nil {
		return true
	}
	return ph.subscribed.Load() && ph.ticks.Load() >= ph.heardFrom.Load() &&
		(ph.h.bridge == nil || ph.h.bridge.up.Load())
}

// presenceEvent is one channel's joins and leaves of a tick.
type presenceEvent struct {
	channel      string
	joined, left []string
}

// run ticks until the hub closes, then says goodbye.
func (ph *presenceHub) run() {
	defer ph.wg.Done()
	t := time.NewTicker(ph.h.opts.PresenceInterval)
	defer t.Stop()
	ph.subscribe()
	for {
		select {
		case <-ph.done:
			ph.goodbye()
			return
		case <-t.C:
			ph.step()
		}
	}
}

// step is one tick: it sends the deltas and summaries, forgets the silent
// hubs, frees what is empty and reports the joins and leaves.
func (ph *presenceHub) step() {
	tick := ph.ticks.Add(1)
	if !ph.subscribed.Load() && tick%presenceDigestTicks == 0 {
		ph.subscribe()
	}
	ph.mu.RLock()
	states := make([]*presenceState, 0, len(ph.channels))
	for _, p := range ph.channels {
		states = append(states, p)
	}
	ph.mu.RUnlock()
	var msgs [][]byte
	var events []presenceEvent
	empty := 0
	for _, p := range states {
		p.mu.Lock()
		msgs = p.tickLocked(ph, tick, msgs)
		if e, ok := p.eventsLocked(); ok {
			events = append(events, e)
		}
		if p.emptyLocked() {
			states[empty] = p
			empty++
		}
		p.mu.Unlock()
	}
	ph.free(states[:empty])
	ph.requestsMu.Lock()
	for _, r := range ph.requests {
		msgs = append(msgs, ph.requestMsg(r.channel, r.node))
	}
	ph.requests = nil
	ph.requestsMu.Unlock()
	ph.send(msgs)
	ph.forgetOrigins(tick)
	if f := ph.h.opts.OnPresence; f != nil {
		for _, e := range events {
			f(e.channel, e.joined, e.left)
		}
	}
}

// free removes the channels' states that are still empty.
func (ph *presenceHub) free(states []*presenceState) {
	if len(states) == 0 {
		return
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	for _, p := range states {
		p.mu.Lock()
		if p.emptyLocked() && ph.channels[p.name] == p {
			delete(ph.channels, p.name)
		}
		p.mu.Unlock()
	}
}

// emptyLocked reports whether nothing is left to keep of the channel: no
// Channel points here, no connection here or elsewhere, nothing to send
// or report.
func (p *presenceState) emptyLocked() bool {
	return p.refs == 0 && p.conns == 0 && len(p.users) == 0 && p.remoteConns == 0 &&
		len(p.sent) == 0 && len(p.changed) == 0 && p.sentConns == 0 && !slices.ContainsFunc(p.nodes, func(n *presenceNode) bool { return n != nil })
}

// tickLocked appends the channel's delta and, when its turn comes, its
// summary to msgs, and forgets the hubs silent for presenceExpiryTicks.
func (p *presenceState) tickLocked(ph *presenceHub, tick int64, msgs [][]byte) [][]byte {
	for i, n := range p.nodes {
		if n != nil && tick-n.last > presenceExpiryTicks {
			p.dropNodeLocked(i + 1)
		}
	}
	if len(p.sent) > 0 || p.conns != p.sentConns {
		var joined, left []string
		for u, was := range p.sent {
			m := p.users[u]
			here := m != nil && m.conns > 0
			switch {
			case here && !was:
				joined = append(joined, u)
			case !here && was:
				left = append(left, u)
			}
		}
		p.sent = nil // not clear: a burst's buckets would stay
		if len(joined) > 0 || len(left) > 0 || p.conns != p.sentConns {
			p.sentConns = p.conns
			if ph.b != nil {
				msgs = append(msgs, ph.deltaMsg(p, joined, left))
			}
		}
	}
	if ph.b == nil || p.conns == 0 {
		p.asked = false
		return msgs
	}
	if p.asked {
		p.asked = false
		msgs = ph.summaryMsgs(p, msgs)
	}
	if (tick+p.phase)%presenceDigestTicks == 0 {
		msgs = append(msgs, ph.digestMsg(p))
	}
	return msgs
}

// hashUser is the 64-bit FNV-1a hash of a user id (or a channel name),
// which every hub computes alike. The digests XOR them: a difference
// between two views goes unseen only if the XOR of the hashes that differ
// is zero, about one chance in 2^64.
func hashUser(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// eventsLocked returns the users who joined and left the channel since the
// last tick, sorted, and clears them.
func (p *presenceState) eventsLocked() (presenceEvent, bool) {
	if len(p.changed) == 0 {
		return presenceEvent{}, false
	}
	e := presenceEvent{channel: p.name}
	for u, was := range p.changed {
		_, now := p.users[u]
		switch {
		case now && !was:
			e.joined = append(e.joined, u)
		case !now && was:
			e.left = append(e.left, u)
		}
	}
	p.changed = nil
	slices.Sort(e.joined)
	slices.Sort(e.left)
	return e, len(e.joined) > 0 || len(e.left) > 0
}

// dropNodeLocked forgets the hub of slot.
func (p *presenceState) dropNodeLocked(slot int) {
	n := p.nodes[slot-1]
	bit := uint64(1) << slot
	for u, m := range p.users {
		if n.users == 0 {
			break
		}
		if m.nodes&bit != 0 {
			p.setLocked(u, slot, false)
		}
	}
	p.remoteConns -= n.conns
	p.nodes[slot-1] = nil
	for len(p.nodes) > 0 && p.nodes[len(p.nodes)-1] == nil {
		p.nodes = p.nodes[:len(p.nodes)-1]
	}
}

// header starts a message of kind.
func (ph *presenceHub) header(kind byte, size int) []byte {
	ph.seq++
	b := make([]byte, presenceHeaderSize, presenceHeaderSize+size)
	b[0], b[1] = presenceVersion, kind
	binary.LittleEndian.PutUint64(b[2:], ph.node)
	binary.LittleEndian.PutUint64(b[10:], ph.seq)
	return b
}

// deltaMsg makes the channel's delta.
func (ph *presenceHub) deltaMsg(p *presenceState, joined, left []string) []byte {
	size := len(p.name) + 30
	for _, u := range joined {
		size += len(u) + len(p.data[u]) + 2*binary.MaxVarintLen32
	}
	for _, u := range left {
		size += len(u) + binary.MaxVarintLen32
	}
	b := ph.header(presenceDelta, size)
	b = appendString(b, p.name)
	b = binary.AppendUvarint(b, uint64(p.conns))
	b = p.appendMembers(b, joined)
	return appendStrings(b, left)
}

// digestMsg makes the channel's digest.
func (ph *presenceHub) digestMsg(p *presenceState) []byte {
	b := ph.header(presenceDigest, len(p.name)+40)
	b = appendString(b, p.name)
	b = binary.AppendUvarint(b, uint64(p.conns))
	b = binary.AppendUvarint(b, uint64(p.here))
	return binary.LittleEndian.AppendUint64(b, p.digest)
}

// requestMsg asks node for the channel's summary.
func (ph *presenceHub) requestMsg(channel string, node uint64) []byte {
	b := ph.header(presenceRequest, len(channel)+20)
	b = appendString(b, channel)
	return binary.LittleEndian.AppendUint64(b, node)
}

// summaryMsgs appends the channel's summary, in parts, to msgs.
func (ph *presenceHub) summaryMsgs(p *presenceState, msgs [][]byte) [][]byte {
	p.gen++
	p.sentConns = p.conns
	var parts [][]string
	var part []string
	bytes := 0
	for u, m := range p.users {
		if m.conns == 0 {
			continue
		}
		size := len(u) + len(p.data[u]) + 2
		if bytes+size > presencePartBytes && len(part) > 0 {
			parts = append(parts, part)
			part, bytes = nil, 0
		}
		part = append(part, u)
		bytes += size
	}
	parts = append(parts, part)
	for i, ids := range parts {
		b := ph.header(presenceSummary, len(p.name)+40+bytes+len(ids)*2)
		b = appendString(b, p.name)
		b = binary.AppendUvarint(b, uint64(p.conns))
		b = binary.AppendUvarint(b, p.gen)
		b = binary.AppendUvarint(b, uint64(i))
		b = binary.AppendUvarint(b, uint64(len(parts)))
		msgs = append(msgs, p.appendMembers(b, ids))
	}
	return msgs
}

// appendMembers appends the count of users, then each user and its data.
func (p *presenceState) appendMembers(b []byte, users []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(users)))
	for _, u := range users {
		b = appendString(appendString(b, u), p.data[u])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// send publishes msgs in order, within BrokerTimeout for them all. What
// fails is dropped: the next summaries repair it.
func (ph *presenceHub) send(msgs [][]byte) {
	if len(msgs) == 0 {
		return
	}
	if br := ph.h.bridge; br != nil && br.watched && !br.up.Load() {
		return // it would fail after BrokerTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), ph.h.opts.BrokerTimeout)
	defer cancel()
	for _, m := range msgs {
		if err := ph.b.Publish(ctx, presenceTopic, m); err != nil {
			return
		}
		ph.sent = true
	}
}

// subscribe subscribes to the presence topic; run retries it at each
// summary while it fails.
func (ph *presenceHub) subscribe() {
	if ph.b == nil {
		return
	}
	if ph.b.Subscribe(presenceTopic, ph.deliver) == nil {
		// Every other hub's digest, then a request and its answer.
		ph.heardFrom.Store(ph.ticks.Load() + presenceDigestTicks + 3)
		ph.subscribed.Store(true)
	}
}

// goodbye tells the other hubs to forget this one, and unsubscribes.
func (ph *presenceHub) goodbye() {
	ph.closed.Store(true)
	if ph.b == nil {
		return
	}
	if ph.sent {
		ph.send([][]byte{ph.header(presenceGone, 0)})
	}
	if ph.subscribed.Load() {
		ph.b.Unsubscribe(presenceTopic)
	}
}

// close stops the goroutine; no OnPresence call starts after it returns.
func (ph *presenceHub) close() {
	if ph == nil {
		return
	}
	ph.once.Do(func() { close(ph.done) })
	ph.wg.Wait()
}

// deliver applies another hub's presence message. The broker calls it one
// message at a time; msg is not kept.
func (ph *presenceHub) deliver(msg []byte) {
	if ph.closed.Load() {
		return
	}
	m, ok := parsePresence(msg)
	if !ok || m.node == ph.node || !ph.fresh(m.node, m.seq, m.kind == presenceGone) {
		return
	}
	if m.kind == presenceRequest {
		if m.target != ph.node {
			return
		}
		ph.mu.RLock()
		p := ph.channels[string(m.channel)]
		ph.mu.RUnlock()
		if p != nil {
			p.mu.Lock()
			p.asked = true // the next tick sends one summary, however many asked
			p.mu.Unlock()
		}
		return
	}
	if m.kind == presenceGone {
		ph.mu.RLock()
		for _, p := range ph.channels {
			p.mu.Lock()
			if slot := p.slotLocked(m.node, false); slot > 0 {
				p.dropNodeLocked(slot)
			}
			p.mu.Unlock()
		}
		ph.mu.RUnlock()
		return
	}
	ph.mu.Lock()
	p := ph.stateLocked(string(m.channel), true)
	if p != nil {
		p.mu.Lock()
	}
	ph.mu.Unlock()
	if p == nil {
		return // not tracked here
	}
	defer p.mu.Unlock()
	slot := p.slotLocked(m.node, true)
	if slot == 0 {
		return // maxPresenceNodes hubs hold it already
	}
	tick := ph.ticks.Load()
	if p.applyLocked(slot, &m, tick) {
		ph.requestsMu.Lock()
		if len(ph.requests) < maxPresenceRequests {
			ph.requests = append(ph.requests, presenceRequestOf{p.name, m.node})
		}
		ph.requestsMu.Unlock()
	}
}

// fresh reports whether seq is newer than what node sent before, and
// remembers it.
func (ph *presenceHub) fresh(node, seq uint64, gone bool) bool {
	ph.originsMu.Lock()
	defer ph.originsMu.Unlock()
	tick := ph.ticks.Load()
	o := ph.origins[node]
	if o == nil {
		if len(ph.origins) >= maxPresenceOrigins {
			var oldest uint64
			last := tick + 1
			for id, o := range ph.origins {
				if o.last < last {
					oldest, last = id, o.last
				}
			}
			delete(ph.origins, oldest)
		}
		o = &presenceOrigin{}
		ph.origins[node] = o
	}
	if o.gone || seq <= o.seq {
		return false
	}
	o.seq, o.last, o.gone = seq, tick, gone
	return true
}

// forgetOrigins forgets the hubs silent for longer than a channel's
// members are kept.
func (ph *presenceHub) forgetOrigins(tick int64) {
	if tick%presenceDigestTicks != 0 {
		return
	}
	ph.originsMu.Lock()
	defer ph.originsMu.Unlock()
	for id, o := range ph.origins {
		if tick-o.last > 2*presenceExpiryTicks {
			delete(ph.origins, id)
		}
	}
}

// slotLocked returns the slot of node in the channel, 0 if it has none;
// with add it takes a free one, if any.
func (p *presenceState) slotLocked(node uint64, add bool) int {
	free := -1
	for i, n := range p.nodes {
		switch {
		case n == nil:
			if free < 0 {
				free = i
			}
		case n.id == node:
			return i + 1
		}
	}
	if !add {
		return 0
	}
	n := &presenceNode{id: node, asked: -presenceDigestTicks}
	switch {
	case free >= 0:
		p.nodes[free] = n
		return free + 1
	case len(p.nodes) < maxPresenceNodes:
		p.nodes = append(p.nodes, n)
		return len(p.nodes)
	}
	return 0
}

// applyLocked applies a delta, digest or summary part from the hub of
// slot. It reports whether to ask that hub for its summary: its digest
// does not match what this hub holds of it, and it was not asked in the
// last presenceDigestTicks.
func (p *presenceState) applyLocked(slot int, m *presenceMsg, tick int64) (ask bool) {
	n := p.nodes[slot-1]
	n.last = tick
	p.remoteConns += m.conns - n.conns
	n.conns = m.conns
	if m.kind == presenceDigest {
		if (n.users != m.users || n.digest != m.digest) && tick-n.asked >= presenceDigestTicks {
			n.asked = tick
			return true
		}
		if n.conns == 0 && n.users == 0 {
			p.dropNodeLocked(slot)
		}
		return false
	}
	bit := uint64(1) << slot
	summary := m.kind == presenceSummary
	if summary && (m.part == 0 || m.gen != n.gen) {
		if n.seen {
			p.clearSeenLocked(slot, false)
		}
		n.gen, n.parts, n.seen = m.gen, 0, true
	}
	// A known user costs a lookup, which makes no string of b.
	eachString(m.joined, 2, func(b, data []byte) {
		if len(b) == 0 {
			return // no user: counted in conns
		}
		x := p.users[string(b)]
		if x == nil && len(p.users) >= maxPresenceUsers {
			return // see maxPresenceUsers
		}
		if x == nil || x.nodes&bit == 0 {
			x = p.setLocked(string(b), slot, true)
		}
		if summary {
			x.seen |= bit
		}
		if len(data) > 0 && p.data[string(b)] != string(data) {
			p.setDataLocked(string(b), data)
		}
	})
	eachString(m.left, 1, func(b, _ []byte) {
		if x := p.users[string(b)]; x != nil && x.nodes&bit != 0 {
			p.setLocked(string(b), slot, false)
		}
	})
	if summary {
		n.parts++
		if m.part == m.parts-1 {
			// Complete, the summary is the hub's whole share: whom it
			// did not name has left. Incomplete, it only added.
			p.clearSeenLocked(slot, n.parts == int(m.parts))
			n.seen = false
		}
	}
	if n.conns == 0 && n.users == 0 {
		p.dropNodeLocked(slot)
	}
	return false
}

// clearSeenLocked clears the seen marks of slot; with sweep it first
// takes slot's hub out of the users it did not mark.
func (p *presenceState) clearSeenLocked(slot int, sweep bool) {
	bit := uint64(1) << slot
	for u, m := range p.users {
		if sweep && m.nodes&bit != 0 && m.seen&bit == 0 {
			p.setLocked(u, slot, false)
		}
		m.seen &^= bit
	}
}

// presenceMsg is a parsed presence message; joined holds a summary's ids.
type presenceMsg struct {
	kind         byte
	node, seq    uint64
	channel      []byte
	conns, users int
	digest       uint64
	target       uint64 // a request's hub
	joined, left []byte // counted, length-prefixed ids, checked
	gen          uint64
	part, parts  uint64
}

// parsePresence parses and checks a message: bad input returns false,
// never panics, and allocates nothing.
func parsePresence(b []byte) (m presenceMsg, ok bool) {
	if len(b) < presenceHeaderSize || b[0] != presenceVersion {
		return m, false
	}
	m.kind = b[1]
	m.node = binary.LittleEndian.Uint64(b[2:])
	m.seq = binary.LittleEndian.Uint64(b[10:])
	r := presenceReader{b: b[presenceHeaderSize:]}
	switch m.kind {
	case presenceGone:
		return m, len(r.b) == 0
	case presenceDelta, presenceDigest, presenceRequest, presenceSummary:
	default:
		return m, false
	}
	m.channel = r.bytes()
	if m.kind == presenceRequest {
		m.target = r.fixed64()
		return m, !r.bad && len(r.b) == 0
	}
	m.conns = int(min(r.uvarint(), 1<<31))
	switch m.kind {
	case presenceDigest:
		m.users = int(min(r.uvarint(), 1<<31))
		m.digest = r.fixed64()
	case presenceDelta:
		m.joined = r.strings(2)
		m.left = r.strings(1)
	default:
		m.gen, m.part, m.parts = r.uvarint(), r.uvarint(), r.uvarint()
		m.joined = r.strings(2)
		if m.part >= m.parts {
			r.bad = true
		}
	}
	return m, !r.bad && len(r.b) == 0
}

// presenceReader reads uvarints and length-prefixed bytes; past the end or
// a bad varint it sets bad and returns zeros.
type presenceReader struct {
	b   []byte
	bad bool
}

func (r *presenceReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *presenceReader) fixed64() uint64 {
	if len(r.b) < 8 {
		r.bad, r.b = true, nil
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *presenceReader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad, r.b = true, nil
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// strings checks a count and as many entries of per length-prefixed
// strings (a user, or a user and its data), and returns their bytes for
// eachString.
func (r *presenceReader) strings(per int) []byte {
	start := r.b
	for n := r.uvarint(); n > 0 && !r.bad; n-- {
		for range per {
			r.bytes()
		}
	}
	if r.bad {
		return nil
	}
	return start[:len(start)-len(r.b)]
}

// eachString calls fn with each entry of what presenceReader.strings
// checked with per: its first string and, with per 2, its second.
func eachString(b []byte, per int, fn func(s, data []byte)) {
	if len(b) == 0 {
		return
	}
	r := presenceReader{b: b}
	for n := r.uvarint(); n > 0; n-- {
		s := r.bytes()
		var data []byte
		if per == 2 {
			data = r.bytes()
		}
		fn(s, data)
	}
}
