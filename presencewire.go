package wshub

import (
	"context"
	"encoding/binary"
)

// The presence messages between hubs: made and sent by the ticks, read and
// applied by deliver. See presence.go for what they carry and why.

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

// header starts a message of kind.
func (ph *presenceHub) header(kind byte, size int) []byte {
	ph.seq++
	b := make([]byte, presenceHeaderSize, presenceHeaderSize+size)
	b[0], b[1] = presenceVersion, kind
	binary.LittleEndian.PutUint64(b[2:], ph.node)
	binary.LittleEndian.PutUint64(b[10:], ph.seq)
	return b
}

// deltaMsgs appends the channel's delta to msgs: one message, or, when
// its ids pass presencePartBytes (a reconnect storm's joins), several,
// each a delta of its own with the channel's count, so that each fits in
// a broker's message.
func (ph *presenceHub) deltaMsgs(p *presenceState, joined, left []string, msgs [][]byte) [][]byte {
	for {
		nj, nl, size := 0, 0, 0
		for ; nj < len(joined); nj++ {
			n := len(joined[nj]) + len(p.data[joined[nj]]) + 2*binary.MaxVarintLen32
			if size+n > presencePartBytes && nj > 0 {
				break
			}
			size += n
		}
		for ; nj == len(joined) && nl < len(left); nl++ {
			n := len(left[nl]) + binary.MaxVarintLen32
			if size+n > presencePartBytes && nj+nl > 0 {
				break
			}
			size += n
		}
		b := ph.header(presenceDelta, len(p.name)+30+size)
		b = appendString(b, p.name)
		b = binary.AppendUvarint(b, uint64(p.conns))
		b = p.appendMembers(b, joined[:nj])
		msgs = append(msgs, appendStrings(b, left[:nl]))
		joined, left = joined[nj:], left[nl:]
		if len(joined) == 0 && len(left) == 0 {
			return msgs
		}
	}
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
	var sizes []int // each part's bytes of ids and data
	var part []string
	bytes := 0
	for u, m := range p.users {
		if m.conns == 0 {
			continue
		}
		size := len(u) + len(p.data[u]) + 2
		if bytes+size > presencePartBytes && len(part) > 0 {
			parts, sizes = append(parts, part), append(sizes, bytes)
			part, bytes = nil, 0
		}
		part = append(part, u)
		bytes += size
	}
	parts, sizes = append(parts, part), append(sizes, bytes)
	for i, ids := range parts {
		b := ph.header(presenceSummary, len(p.name)+40+sizes[i]+len(ids)*2)
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
// fails is dropped, and the rest still go: the next summaries repair it.
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
		if ph.b.Publish(ctx, presenceTopic, m) == nil {
			ph.sent = true
		}
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
	ph.mu.Lock() // see lock: no ChannelPresence call after this
	ph.closed.Store(true)
	ph.mu.Unlock()
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
		// Each channel is locked in turn, with ph.mu let go (see lock):
		// one of a million users takes a while.
		for _, p := range ph.states() {
			p.mu.Lock()
			if slot := p.slotLocked(m.node, false); slot > 0 {
				p.dropNodeLocked(slot)
			}
			p.mu.Unlock()
		}
		return
	}
	p := ph.lock(string(m.channel), true)
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
