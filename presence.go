package wshub

import (
	"crypto/rand"
	"encoding/binary"
	"maps"
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
	// presenceShrinkPeak is the fewest users at its peak for which a
	// channel's users map is remade once it fell under a quarter.
	presenceShrinkPeak = 1024
	// maxPresenceRequests bounds the summaries a hub asks for in a tick;
	// those past it are asked at the next digest.
	maxPresenceRequests = 1024
)

// presenceRequestOf is a summary to ask for: of channel, from node.
type presenceRequestOf struct {
	channel string
	node    uint64
}

// presenceHub is a hub's side of presence: the state of every tracked
// channel, the goroutine that ticks, and the broker topic.
//
// Lock order: Hub.chMu, then presenceHub.mu, then presenceState.mu;
// Conn.mu, then presenceState.mu. originsMu and requestsMu are taken
// alone. Only free waits for a presenceState.mu with presenceHub.mu held,
// for states it found empty: whoever else wants a state's lock takes it
// after letting go of presenceHub.mu (see lock), so that a channel busy
// with a large summary or a hub's goodbye holds up no other, and no
// Hub.chMu waiting behind presenceHub.mu. The broker's deliveries, the
// connections' goroutines (through the hooks under Conn.mu) and readers
// of Channel.Presence run concurrently; run alone sends, reports and
// frees.
type presenceHub struct {
	h    *Hub
	f    func(channel string) Presence
	node uint64 // this hub's id in the messages: its own are skipped
	b    Broker // nil without Options.Broker

	ticks      atomic.Int64 // ticks since the hub started
	subscribed atomic.Bool  // the topic's subscription is in place
	heardFrom  atomic.Int64 // from this tick every other hub's digest, and the summaries asked, had time to come
	closed     atomic.Bool  // deliveries after Close are ignored; set under mu
	refusedAt  atomic.Int64 // the last tick another hub's news of a channel was refused (MaxChannels); 0 never

	mu       sync.RWMutex // guards channels, and closed's change
	channels map[string]*presenceState

	originsMu sync.Mutex
	origins   map[uint64]*presenceOrigin

	requestsMu sync.Mutex          // taken alone
	requests   []presenceRequestOf // to send at the next tick, at most maxPresenceRequests

	// Owned by the goroutine that steps (run):
	seq  uint64 // the last sequence number sent
	sent bool   // a message went out, so a goodbye is due
	// lastSince is the bridge's since at the last tick: a change means
	// the broker went or came back.
	lastSince int64
	done      chan struct{}
	once      sync.Once // closes done
	wg        sync.WaitGroup
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
	freed bool // out of presenceHub.channels: whoever locked it late looks again
	conns int  // connections here
	// peak is the most users since the users map was last made: Go's
	// maps keep their buckets, so tickLocked remakes one that shrank.
	peak int
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
	// partialUntil is the tick before which its view of the other hubs
	// may lack some: it was made after the hub had refused another
	// hub's news of a channel (Options.MaxChannels).
	partialUntil int64
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
	if h.bridge != nil {
		ph.lastSince = h.bridge.since.Load()
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
	tick := ph.ticks.Load()
	if remote && len(ph.channels) >= ph.h.opts.MaxChannels {
		ph.refusedAt.Store(tick)
		return nil
	}
	cfg := ph.f(name)
	if cfg.MaxMembers <= 0 {
		return nil
	}
	p := newPresenceState(name, cfg.MaxMembers)
	p.dataOf = cfg.Data
	if r := ph.refusedAt.Load(); r > 0 && tick-r <= presenceExpiryTicks {
		// What other hubs told of this channel may have been refused,
		// and their members not expired yet: it takes their digests
		// and summaries to know.
		p.partialUntil = tick + presenceDigestTicks + 3
	}
	ph.channels[name] = p
	return p
}

// lock returns the presence of the channel called name, made if
// ChannelPresence tracks it (see stateLocked), with its lock held; nil if
// it has none, or the hub closed. It waits for the state's lock without
// holding ph.mu.
func (ph *presenceHub) lock(name string, remote bool) *presenceState {
	for {
		ph.mu.RLock()
		p := ph.channels[name]
		ph.mu.RUnlock()
		if p == nil {
			ph.mu.Lock()
			if !ph.closed.Load() { // no ChannelPresence call after Close
				p = ph.stateLocked(name, remote)
			}
			ph.mu.Unlock()
			if p == nil {
				return nil
			}
		}
		p.mu.Lock()
		if !p.freed {
			return p
		}
		p.mu.Unlock() // freed meanwhile: look again
	}
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
	p := ph.lock(name, false)
	if p != nil {
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
		p.peak = max(p.peak, len(p.users))
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
	info.Members = smallestUsers(p.users, p.max)
	if len(p.data) > 0 {
		info.Data = make([][]byte, len(info.Members))
		for i, u := range info.Members {
			if d, ok := p.data[u]; ok {
				info.Data[i] = []byte(d)
			}
		}
	}
	partial := ch.hub.presence.ticks.Load() < p.partialUntil
	p.mu.Unlock()
	info.Partial = partial || len(info.Members) < info.Users || !ch.hub.presence.hearing()
	return info
}

// smallestUsers returns the n smallest of the users, sorted: the same
// list from one call to the next, whatever the map's order, in
// O(len(users) log n) and n strings. It keeps them in a max-heap, whose
// root is the one to replace.
func smallestUsers(users map[string]*presenceMember, n int) []string {
	out := make([]string, 0, max(0, min(n, len(users))))
	if n <= 0 {
		return out
	}
	for u := range users {
		switch {
		case len(out) < n:
			out = append(out, u)
			if len(out) == n {
				for i := n/2 - 1; i >= 0; i-- {
					siftDown(out, i)
				}
			}
		case u < out[0]:
			out[0] = u
			siftDown(out, 0)
		}
	}
	slices.Sort(out)
	return out
}

// siftDown moves h[i] down the max-heap h to its place.
func siftDown(h []string, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c+1] > h[c] {
			c++
		}
		if h[i] >= h[c] {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
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
	if br := ph.h.bridge; br != nil && br.watched {
		if since := br.since.Load(); since != ph.lastSince {
			// The broker went or came back since the last tick: what
			// the other hubs sent meanwhile is lost, and those that
			// expired come back with their digests and summaries.
			ph.lastSince = since
			ph.heardFrom.Store(tick + presenceDigestTicks + 3)
		}
	}
	states := ph.states()
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

// states returns the tracked channels' states, to be locked one by one
// with ph.mu let go.
func (ph *presenceHub) states() []*presenceState {
	ph.mu.RLock()
	defer ph.mu.RUnlock()
	return slices.Collect(maps.Values(ph.channels))
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
			p.freed = true
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
				msgs = ph.deltaMsgs(p, joined, left, msgs)
			}
		}
	}
	if p.peak >= presenceShrinkPeak && len(p.users) < p.peak/4 {
		p.shrinkLocked()
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

// shrinkLocked remakes the users map, and the data map, at their size:
// a channel that had a million users and now has a few no longer holds
// the buckets of a million. The keys keep their bytes.
func (p *presenceState) shrinkLocked() {
	users := make(map[string]*presenceMember, len(p.users))
	for u, m := range p.users {
		users[u] = m
	}
	p.users, p.peak = users, len(users)
	if p.data != nil {
		data := make(map[string]string, len(p.data))
		for u, d := range p.data {
			data[u] = d
		}
		p.data = data
	}
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
