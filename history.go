package wshub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Channels that remember: a channel configured by Options.ChannelHistory
// keeps its latest messages, each with a Position, so that a member that
// comes back after a reconnect gets what it missed (Channel.Recover).
//
// The history keeps the frames the members' queues hold, with one
// reference each, not copies. Without a HistoryBroker it is the only copy
// and lives in this process's memory, apart from the channel's members (a
// channel whose only member is between connections has no members, and its
// history must go on): its epoch changes when the process restarts, and
// with a plain Broker each hub numbers what it delivers on its own, so
// that a client recovers on the hub it left only. With a HistoryBroker the
// history is the broker's stream and the positions are the stream's, alike
// on every hub; what a hub keeps is a tail of it for its members, while
// the channel has some (see historystream.go).

// History bounds what a channel keeps of its messages for members that
// come back (see Channel.Recover). The zero History keeps nothing.
type History struct {
	// Messages is how many of the latest messages are kept.
	Messages int
	// MaxAge, if positive, drops messages older than that.
	MaxAge time.Duration
	// MaxBytes, if positive, bounds the bytes of the kept frames.
	MaxBytes int

	// Stamp, if set, makes what the members get from a message's position
	// and its payload, so that the application carries the position in
	// its own format (say {"offset":N,"epoch":"E","data":...}). It is
	// called once per message on each hub, under the history's lock, and
	// what it returns is framed (and compressed) once for every member,
	// and kept. Nil sends the payload as it is.
	Stamp func(pos Position, data []byte) []byte
}

// A Position is where a message stands in its channel's history: Offset
// grows by one per message published to the channel, and Epoch names the
// history, which a restart or a history emptied and made anew replaces. A
// client keeps the position of the last message it got and hands it to
// Channel.Recover when it comes back.
type Position struct {
	Offset uint64
	Epoch  string
}

// ErrNotRecovered is returned by Channel.Recover when it cannot send what a
// client missed: its position is of another epoch, is ahead of the
// history, lies before what the history still keeps, or is further behind
// than the limit. The client should reload what it shows.
var ErrNotRecovered = errors.New("wshub: not recovered: the history does not reach back to that position")

// ErrNoHistory is returned by Channel.Position for a channel that keeps no
// history (see Options.ChannelHistory).
var ErrNoHistory = errors.New("wshub: the channel keeps no history")

// historyOverhead is what the hub counts for a history besides its frames,
// and keptOverhead what it counts for each kept message besides its bytes
// (the capacity of their pooled buffers): its kept entry with the slack of
// the slice that holds it, and the frame's struct. BenchmarkHistoryMemory
// measures what they hold.
const (
	historyOverhead = 160
	keptOverhead    = 96
)

// history is what a channel keeps of its messages. Its mu is held across
// a publish's whole pass (the offset, the framing, the keeping and the
// fan-out) and across a recovery, so that a recovering member gets the
// kept messages and the live ones with nothing between them and nothing
// twice. Lock order: history.mu, then Hub.histMu, Hub.chMu, Channel.mu,
// Conn.mu.
type history struct {
	h      *Hub
	name   string
	limits History
	stream bool // the positions come from the HistoryBroker's stream

	mu    sync.Mutex
	epoch string // "" for a stream's history not synced yet
	next  uint64 // the offset of the next message; 0 while it is unknown
	kept  []kept // oldest first, from head
	head  int
	bytes int   // of the kept frames and their overhead
	last  int64 // Unix nanoseconds of the latest message kept

	// synced: a stream's tail is current, since the hub's subscription to
	// the channel's topic is live and the tail was caught up after it.
	// Set under mu; cleared without it too (the broker's watcher must not
	// wait for a history's round trip).
	synced atomic.Bool
	// gone: forgotten by the hub (a stream's, once the channel has no
	// members here); whoever holds it looks it up again.
	gone bool
}

// kept is one message of a history: its frames, with a reference each.
type kept struct {
	offset uint64
	at     int64 // Unix nanoseconds of the publish
	m      published
}

// cost is what k counts against the budgets.
func (k *kept) cost() int {
	n := keptOverhead + cap(k.m.plain.b)
	if k.m.packed != nil {
		n += keptOverhead/2 + cap(k.m.packed.b) // its frame's struct
	}
	return n
}

// historyOf returns the history of the channel called name, made on demand
// if Options.ChannelHistory keeps one for it and the hub's MaxHistoryBytes
// has room; nil otherwise. Every publish asks, so the lookup takes the lock
// for reading only, and ChannelHistory runs outside it.
func (h *Hub) historyOf(name string) *history {
	f := h.opts.ChannelHistory
	if f == nil {
		return nil
	}
	h.histMu.RLock()
	hs := h.histories[name]
	h.histMu.RUnlock()
	if hs != nil {
		return hs
	}
	limits := f(name)
	if limits.Messages <= 0 {
		return nil
	}
	h.histMu.Lock()
	defer h.histMu.Unlock()
	if hs := h.histories[name]; hs != nil { // made meanwhile
		return hs
	}
	stream := h.bridge != nil && h.bridge.streams != nil
	if h.historyBytes+historyOverhead > h.opts.MaxHistoryBytes && !stream {
		return nil
	}
	hs = &history{h: h, name: name, limits: limits, bytes: historyOverhead}
	if stream {
		// The epoch and offsets come with the first sync. It is made
		// whatever the budget, which only bounds what it keeps: its
		// members get the channel's messages through it.
		hs.stream = true
	} else {
		var e [8]byte
		rand.Read(e[:])
		hs.epoch, hs.next = hex.EncodeToString(e[:]), 1
	}
	h.historyBytes += historyOverhead
	if h.histories == nil {
		h.histories = make(map[string]*history)
	}
	h.histories[name] = hs
	return hs
}

// lockedHistory returns historyOf(name) with its mu held, or nil.
func (h *Hub) lockedHistory(name string) *history {
	for {
		hs := h.historyOf(name)
		if hs == nil {
			return nil
		}
		hs.mu.Lock()
		if !hs.gone {
			return hs
		}
		hs.mu.Unlock()
	}
}

// publishLocked publishes msgs to ch, each numbered in the history and
// kept, and fans them out.
func (hs *history) publishLocked(ch *Channel, typ MessageType, msgs [][]byte, ms []published, o PublishOptions) (int, error) {
	var wrap func(int, []byte) []byte
	if stamp := hs.limits.Stamp; stamp != nil {
		wrap = func(i int, data []byte) []byte {
			return stamp(Position{Offset: hs.next + uint64(i), Epoch: hs.epoch}, data)
		}
	}
	if err := hs.h.frameAll(typ, msgs, ms, wrap); err != nil {
		return 0, err
	}
	defer releaseAll(ms)
	now := time.Now().UnixNano()
	for i := range ms {
		hs.keepLocked(kept{offset: hs.next, at: now, m: ms[i]}, now)
		hs.next++
	}
	return ch.fanOut(ms, o), nil
}

// keepLocked keeps k, taking a reference to its frames, and drops the
// oldest messages past the bounds.
func (hs *history) keepLocked(k kept, now int64) {
	cost := k.cost()
	h := hs.h
	h.histMu.Lock()
	// The hub's budget first: this history gives up its oldest for it.
	for h.historyBytes+cost > h.opts.MaxHistoryBytes && hs.head < len(hs.kept) {
		h.historyBytes -= hs.dropOldestLocked()
	}
	fits := h.historyBytes+cost <= h.opts.MaxHistoryBytes
	if fits {
		h.historyBytes += cost
	}
	h.histMu.Unlock()
	if !fits {
		hs.dropKeptLocked() // larger than the budget: the history now starts after it
		return
	}
	k.m.plain.refs.Add(1)
	if k.m.packed != nil {
		k.m.packed.refs.Add(1)
	}
	hs.kept = append(hs.kept, k)
	hs.bytes += cost
	hs.last = k.at
	hs.trimLocked(now)
}

// trimLocked drops the oldest messages past the history's bounds.
func (hs *history) trimLocked(now int64) {
	l := hs.limits
	freed := 0
	for hs.head < len(hs.kept) {
		oldest := &hs.kept[hs.head]
		if len(hs.kept)-hs.head <= l.Messages &&
			(l.MaxBytes <= 0 || hs.bytes-historyOverhead <= l.MaxBytes) &&
			(l.MaxAge <= 0 || time.Duration(now-oldest.at) <= l.MaxAge) {
			break
		}
		freed += hs.dropOldestLocked()
	}
	if freed > 0 {
		hs.h.histMu.Lock()
		hs.h.historyBytes -= freed
		hs.h.histMu.Unlock()
	}
}

// dropOldestLocked drops the oldest kept message and returns its cost, to
// be taken off the hub's count by the caller. The array is compacted once
// half of it is dropped, so that dropping costs O(1) amortized.
func (hs *history) dropOldestLocked() int {
	k := &hs.kept[hs.head]
	cost := k.cost()
	k.m.release()
	*k = kept{}
	hs.head++
	hs.bytes -= cost
	if hs.head >= len(hs.kept)/2 {
		n := copy(hs.kept, hs.kept[hs.head:])
		clear(hs.kept[n:])
		hs.kept, hs.head = hs.kept[:n], 0
	}
	return cost
}

// dropKeptLocked drops every kept message. What is kept runs without a
// hole up to next-1, which Recover counts on: a message not kept (skipped,
// or too big) drops those before it.
func (hs *history) dropKeptLocked() {
	freed := 0
	for hs.head < len(hs.kept) {
		freed += hs.dropOldestLocked()
	}
	if freed > 0 {
		hs.h.histMu.Lock()
		hs.h.historyBytes -= freed
		hs.h.histMu.Unlock()
	}
}

// firstOffset returns the offset of the oldest message a recovery can
// still send: the oldest kept, or the next if none is.
func (hs *history) firstOffset() uint64 {
	if hs.head < len(hs.kept) {
		return hs.kept[hs.head].offset
	}
	return hs.next
}

// Recover subscribes c to the channel and sends it the messages published
// after since, from the channel's history, in order, followed by the live
// ones: none twice and none missing across the switch, since no message
// of the channel is delivered meanwhile. It returns the position of the
// channel's latest message.
//
// It returns ErrNotRecovered, having subscribed c and sent it nothing of
// the history, when since is of another epoch, ahead of the history, older
// than what it keeps, or more than limit messages behind, or when what it
// would send does not fit in c's queue (Options.MaxQueuedBytes): the
// client should reload. It also returns ErrNotRecovered if c's queue
// filled meanwhile (a publish of another channel) or c closed, when part
// of what it missed went. A channel without history (see
// Options.ChannelHistory) recovers nothing: ErrNotRecovered, c subscribed.
// Subscribe's errors are returned as they are, nothing sent.
//
// With a HistoryBroker the history is the broker's stream, and c recovers
// whichever hub it was connected to before. A hub whose members follow
// the channel serves a recent position from what it keeps, without a
// round trip; otherwise it reads the stream, within Options.BrokerTimeout,
// and returns the broker's error, c subscribed, if it fails, or
// ErrBrokerDown at once while its BrokerWatcher reports the broker away.
//
// What it sends counts against c's queue like any publish; with deflate
// negotiated it goes compressed if it was published compressed.
func (ch *Channel) Recover(c *Conn, since Position, limit int) (Position, error) {
	return ch.RecoverWith(c, since, RecoverOptions{Limit: limit})
}

// RecoverOptions tunes a recovery.
type RecoverOptions struct {
	// Limit is how many messages a recovery may send at most; a client
	// further behind is not recovered.
	Limit int

	// Then, if set, makes a text message that c gets right after what it
	// missed and before any live message, from Recover's results, also
	// when it is not recovered: a marker that tells the client where
	// the history ends (say {"recovered":true}). Nil sends none.
	Then func(latest Position, err error) []byte
}

// RecoverWith is Recover with options.
func (ch *Channel) RecoverWith(c *Conn, since Position, o RecoverOptions) (Position, error) {
	var hs *history
	if !ch.user { // a user's channel keeps none, whatever its name
		hs = ch.hub.lockedHistory(ch.name)
	}
	if hs == nil {
		if err := ch.Subscribe(c); err != nil {
			return Position{}, err
		}
		// Without a history, a live message may come before the marker:
		// there is no lock that orders them, and nothing to recover.
		return Position{}, o.then(c, Position{}, ErrNotRecovered)
	}
	defer hs.mu.Unlock()
	if err := ch.Subscribe(c); err != nil {
		if hs.stream && !ch.hub.hasChannel(ch.name) {
			hs.forgetLocked() // made for the channel here, which is not
		}
		return Position{}, err
	}
	latest, err := hs.recoverLocked(ch, c, since, max(o.Limit, 0))
	return latest, o.then(c, latest, err)
}

// then sends c the marker of Then, if set, and returns err.
func (o *RecoverOptions) then(c *Conn, latest Position, err error) error {
	if o.Then != nil {
		c.WriteMessage(Text, o.Then(latest, err))
	}
	return err
}

// recoverLocked sends c, subscribed, what it missed since.
func (hs *history) recoverLocked(ch *Channel, c *Conn, since Position, limit int) (Position, error) {
	if hs.stream {
		if br := ch.hub.bridge; br.watched && !br.up.Load() {
			// Not caught up, and no way to: at once, not after a
			// round trip per client.
			return Position{}, ErrBrokerDown
		}
		if !hs.synced.Load() {
			if err := hs.syncLocked(ch); err != nil {
				return Position{}, err
			}
		}
	} else {
		hs.trimLocked(time.Now().UnixNano())
	}
	latest := Position{Offset: hs.next - 1, Epoch: hs.epoch}
	if since.Epoch != hs.epoch || since.Offset > latest.Offset ||
		latest.Offset-since.Offset > uint64(min(limit, max(hs.limits.Messages, 0))) {
		// Further back than the limit, or than the history keeps.
		return latest, ErrNotRecovered
	}
	// What c missed: older, read from the stream, then the kept tail.
	var older []published
	first := hs.firstOffset()
	if since.Offset+1 < first {
		ok := false
		if hs.stream {
			older, ok = hs.olderLocked(since.Offset, first)
		}
		if !ok {
			return latest, ErrNotRecovered
		}
		defer releaseAll(older)
	}
	// The tail starts at first, or at since+1 if that is further; older
	// ones may have been put before it meanwhile.
	from := hs.head + int(max(since.Offset+1, first)-hs.firstOffset())
	if from < hs.head || from > len(hs.kept) {
		return latest, ErrNotRecovered // cannot be: what is kept has no hole
	}
	tail := hs.kept[from:]
	size := 0
	for i := range older {
		size += len(older[i].plain.b)
	}
	for i := range tail {
		size += len(tail[i].m.plain.b)
	}
	c.mu.Lock()
	room := c.hub.opts.MaxQueuedBytes - c.queuedLocked()
	c.mu.Unlock()
	if size > room {
		return latest, ErrNotRecovered
	}
	ch.hub.stats.recovered.Add(uint64(len(older) + len(tail)))
	b := ch.hub.p.newFlushBatch()
	sent := true
	for i := 0; i < len(older) && sent; i++ {
		sent = c.publish(&older[i], b, SlowDropNewest, false)
	}
	for i := 0; i < len(tail) && sent; i++ {
		sent = c.publish(&tail[i].m, b, SlowDropNewest, false)
	}
	b.submit(0)
	if !sent { // closed, or its queue filled by another channel meanwhile: part of it went
		return latest, ErrNotRecovered
	}
	return latest, nil
}

// Position returns the position of the channel's latest message, from its
// history, so that an application can hand a client the position of the
// state it loads elsewhere, for the client to recover from when it
// connects. With a HistoryBroker, a hub that does not follow the channel
// asks the broker, within Options.BrokerTimeout. It returns ErrNoHistory
// for a channel without history.
func (ch *Channel) Position() (Position, error) {
	h := ch.hub
	if _, ok := ch.streamLimits(); ok {
		// A stream's history is made for the channel's members here
		// only: without them, or before they are caught up, ask.
		h.histMu.RLock()
		hs := h.histories[ch.name]
		h.histMu.RUnlock()
		if hs != nil {
			hs.mu.Lock()
			pos, current := Position{Offset: hs.next - 1, Epoch: hs.epoch}, hs.synced.Load() && !hs.gone
			hs.mu.Unlock()
			if current {
				return pos, nil
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
		defer cancel()
		latest, err := h.bridge.streams.Range(ctx, topic(ch.name, false), 0, 0, func(uint64, []byte) {})
		if err != nil {
			return Position{}, fmt.Errorf("wshub: broker range: %w", err)
		}
		return latest, nil
	}
	var hs *history
	if !ch.user {
		hs = h.lockedHistory(ch.name)
	}
	if hs == nil {
		return Position{}, ErrNoHistory
	}
	defer hs.mu.Unlock()
	return Position{Offset: hs.next - 1, Epoch: hs.epoch}, nil
}

// historySweep is how often sweepHistories looks at every history.
const historySweep = time.Second

// sweepHistories applies the histories' MaxAge to channels that publish
// no more, which no publish and no recovery trims, and lets go an
// in-memory history once its channel has had no member and no message for
// its MaxAge: all it kept is gone by then, and a client that comes back
// after that is told to reload, as after a restart. Without MaxAge a
// history is bounded by its count and the hub's MaxHistoryBytes only. It
// runs on a goroutine of the hub's until Close, one pass a second: a pass
// costs a lock per history.
func (h *Hub) sweepHistories() {
	defer h.histSwept.Done()
	t := time.NewTicker(historySweep)
	defer t.Stop()
	for {
		select {
		case <-h.histSweep:
			return
		case <-t.C:
		}
		h.histMu.RLock()
		hists := slices.Collect(maps.Values(h.histories))
		h.histMu.RUnlock()
		now := time.Now().UnixNano()
		for _, hs := range hists {
			hs.mu.Lock()
			if hs.limits.MaxAge > 0 && !hs.gone {
				hs.trimLocked(now)
				if !hs.stream && hs.head == len(hs.kept) && now-hs.last > int64(hs.limits.MaxAge) && !h.hasChannel(hs.name) {
					hs.forgetLocked()
				}
			}
			hs.mu.Unlock()
		}
	}
}

// dropHistories gives back the frames of every history when the hub stops.
func (h *Hub) dropHistories() {
	h.histMu.Lock()
	hists := h.histories
	h.histories, h.historyBytes = nil, 0
	h.histMu.Unlock()
	for _, hs := range hists {
		hs.mu.Lock()
		for hs.head < len(hs.kept) {
			hs.dropOldestLocked()
		}
		hs.mu.Unlock()
	}
}
