package wshub

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// Histories across hubs: with a HistoryBroker, a channel's history is the
// broker's stream (a JetStream stream, a Redis Stream), and the positions
// are the stream's. A publish appends to the stream first, then delivers
// at the position it got to the members here and tells the other hubs
// through the broker's publish/subscribe, with the position. Each hub
// delivers a channel's messages in the order of their offsets, whoever
// published them: one it had is dropped, and a gap (a notice lost, or
// overtaken by a later one from another publisher) is filled from the
// stream before the next is delivered. After it subscribes to the channel's
// topic, and whenever the broker comes back, a hub catches up from the
// stream, so that what was appended while it was not listening reaches its
// members too.
//
// What a hub keeps is the tail of the stream that its members got, for
// recoveries without a round trip; it is dropped when the channel has no
// members here, since the stream has it all.

// A HistoryBroker is a Broker that also keeps the channels' histories
// (Options.ChannelHistory) in streams of its own, so that every hub gives
// a message the same position and a client recovers on any hub. Both
// adapters are one; they need JetStream, or Redis 5 or later, only for the
// channels that have a history.
type HistoryBroker interface {
	Broker

	// Append adds msg to topic's stream, which keeps at most what limits
	// says (Stamp aside), and returns the position the stream gave it: a
	// topic's offsets grow by one per message from 1, and its epoch
	// changes when the stream is lost and made anew. It does not keep
	// msg. It is called concurrently.
	Append(ctx context.Context, topic string, msg []byte, limits History) (Position, error)

	// Range calls each, in order of offset, for at most max of the
	// messages that topic's stream still keeps after offset after, and
	// returns the position of the stream's latest message: Offset 0 and
	// an empty Epoch if there is no stream. each does not keep msg.
	Range(ctx context.Context, topic string, after uint64, max int, each func(offset uint64, msg []byte)) (Position, error)
}

// The notice of a stream's message through the broker's publish/subscribe
// is the envelope with the message's position after the sent time:
//
//	offset   8 bytes
//	epoch    1 byte of length, then the epoch
//	payload
const (
	brokerMsgPositioned = 3
	maxEpochLen         = 255
)

// streamMessage is a message of a stream, as Range hands it over.
type streamMessage struct {
	offset  uint64
	typ     MessageType
	payload []byte
}

// streamLimits reports what a channel's stream keeps, and whether its
// publishes go to one: a hub with a HistoryBroker, a channel with a
// history.
func (ch *Channel) streamLimits() (History, bool) {
	h := ch.hub
	if ch.user || h.bridge == nil || h.bridge.streams == nil || h.opts.ChannelHistory == nil {
		return History{}, false
	}
	h.histMu.RLock()
	hs := h.histories[ch.name]
	h.histMu.RUnlock()
	if hs != nil {
		return hs.limits, true
	}
	l := h.opts.ChannelHistory(ch.name)
	return l, l.Messages > 0
}

// publishStream appends msgs to the channel's stream, delivers each at the
// position it got to the members here, and tells the other hubs. It stops
// at the first message the stream does not take: that one and the rest
// reach no one.
func (br *bridge) publishStream(ctx context.Context, ch *Channel, typ MessageType, msgs [][]byte, limits History, o PublishOptions) (int, error) {
	h := br.h
	t := topic(ch.name, false)
	reached := 0
	for _, data := range msgs {
		if typ != Text && typ != Binary {
			return reached, ErrMessageType
		}
		if frameSize(len(data)) > h.opts.MaxQueuedBytes {
			return reached, ErrMessageTooBig
		}
		if br.watched && !br.up.Load() {
			h.stats.brokerRefused.Add(1)
			return reached, ErrBrokerDown
		}
		actx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
		pos, err := br.streams.Append(actx, t, br.envelope(typ, data, nil), limits)
		cancel()
		if err == nil && (pos.Offset == 0 || len(pos.Epoch) == 0 || len(pos.Epoch) > maxEpochLen) {
			err = fmt.Errorf("invalid position %d %q", pos.Offset, pos.Epoch)
		}
		if err != nil {
			h.stats.brokerErrors.Add(1)
			h.stats.brokerRefused.Add(1)
			if !br.watched {
				br.setUp(false)
			}
			return reached, fmt.Errorf("wshub: broker append: %w", err)
		}
		if h.hasChannel(ch.name) {
			if hs := h.lockedHistory(ch.name); hs != nil {
				reached += hs.acceptLocked(ch, pos, typ, data, o, true)
				hs.mu.Unlock()
			}
		}
		// The stream has the message: a notice that does not get through
		// delays it on the other hubs until their next one or their next
		// catch-up, and is not the publisher's error.
		pctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
		err = br.b.Publish(pctx, t, br.envelope(typ, data, &pos))
		cancel()
		if err != nil {
			h.stats.brokerErrors.Add(1)
		} else {
			h.stats.brokerOut.Add(1)
		}
	}
	return reached, nil
}

// deliverPositioned hands a stream message's notice from another hub to
// the channel's history here.
func (br *bridge) deliverPositioned(name string, msg []byte) {
	h := br.h
	pos, typ, payload, ok := parsePositioned(msg)
	if !ok {
		h.stats.brokerErrors.Add(1)
		return
	}
	h.stats.brokerIn.Add(1)
	if !h.hasChannel(name) {
		// Freed meanwhile: none here to deliver to, and what is kept is
		// no longer current.
		h.unsyncHistory(name)
		return
	}
	hs := h.lockedHistory(name)
	if hs == nil || !hs.stream {
		if hs != nil {
			hs.mu.Unlock()
		}
		h.stats.brokerErrors.Add(1) // this hub keeps no history for it: configured unlike the publisher
		return
	}
	hs.acceptLocked(h.lookup(name, false), pos, typ, payload, PublishOptions{}, true)
	hs.mu.Unlock()
}

// parsePositioned splits a notice into the message's position, type and
// payload.
func parsePositioned(msg []byte) (pos Position, typ MessageType, payload []byte, ok bool) {
	const fixed = brokerHeaderSize + 8 + 1
	if len(msg) < fixed || msg[0] != brokerMsgPositioned {
		return pos, 0, nil, false
	}
	n := int(msg[fixed-1])
	if len(msg) < fixed+n || n == 0 {
		return pos, 0, nil, false
	}
	pos.Offset = binary.LittleEndian.Uint64(msg[brokerHeaderSize:])
	pos.Epoch = string(msg[fixed : fixed+n])
	return pos, MessageType(msg[1]), msg[fixed+n:], pos.Offset > 0
}

// acceptLocked delivers the stream's message at pos to the members here,
// in order of offset: a message it had is dropped. With fill, pos is from a
// notice, and anything unusual is checked with the stream: a gap before it
// is filled from the stream first, and a notice of another epoch, or the
// first one a history gets, is taken only if the stream has it (a stale
// notice from before the stream was made anew, or a bogus one, is
// dropped). A gap it cannot fill (the stream no longer keeps it, or the
// broker fails) is skipped and counted. It returns how many members took
// the message.
func (hs *history) acceptLocked(ch *Channel, pos Position, typ MessageType, payload []byte, o PublishOptions, fill bool) int {
	if fill && (pos.Epoch != hs.epoch || hs.next == 0) && !hs.streamHasLocked(pos) {
		hs.h.stats.brokerErrors.Add(1)
		return 0
	}
	if pos.Epoch != hs.epoch {
		if hs.next == 0 { // never synced: start here
			hs.epoch, hs.next = pos.Epoch, pos.Offset
		} else { // the stream was made anew: its messages from the first
			hs.resetLocked(pos.Epoch)
		}
	}
	if pos.Offset < hs.next {
		return 0
	}
	if pos.Offset > hs.next && fill && !hs.fillLocked(ch, pos.Offset) {
		hs.h.stats.brokerErrors.Add(1) // the stream has no such message
		return 0
	}
	if pos.Offset > hs.next {
		hs.skipToLocked(pos.Offset)
	}
	return hs.deliverLocked(ch, typ, payload, o)
}

// streamHasLocked reports whether the stream's epoch is pos's and it
// reaches pos. If the broker does not answer, it does not: a notice is
// never taken on its word alone, and the history is caught up later.
func (hs *history) streamHasLocked(pos Position) bool {
	_, latest, err := hs.rangeLocked(0, 0)
	if err != nil {
		hs.synced.Store(false)
		return false
	}
	return latest.Epoch == pos.Epoch && latest.Offset >= pos.Offset
}

// fillLocked delivers the stream's messages from hs.next up to before, at
// most the history's count of them, the latest. It returns false if the
// stream does not reach before (the notice that asked is not the stream's)
// or the broker does not answer (the next notice, or catching up, fills
// the gap then).
func (hs *history) fillLocked(ch *Channel, before uint64) bool {
	after := hs.next - 1
	if n := uint64(hs.limits.Messages); before-1-after > n {
		after = before - 1 - n
	}
	msgs, latest, err := hs.rangeLocked(after, int(before-1-after))
	if err != nil {
		hs.synced.Store(false)
		return false
	}
	if latest.Epoch != hs.epoch || latest.Offset < before {
		return false
	}
	for _, m := range msgs {
		if m.offset < before {
			hs.acceptLocked(ch, Position{Offset: m.offset, Epoch: latest.Epoch}, m.typ, m.payload, PublishOptions{}, false)
		}
	}
	return true
}

// deliverLocked stamps, frames, keeps and fans out the message at hs.next.
func (hs *history) deliverLocked(ch *Channel, typ MessageType, payload []byte, o PublishOptions) int {
	pos := Position{Offset: hs.next, Epoch: hs.epoch}
	hs.next++
	if stamp := hs.limits.Stamp; stamp != nil {
		payload = stamp(pos, payload)
	}
	m, err := hs.h.newMessage(typ, payload)
	if err != nil { // too big for this hub's queues: none of its members can take it
		hs.h.stats.historyGaps.Add(1)
		hs.dropKeptLocked()
		return 0
	}
	defer m.release()
	now := time.Now().UnixNano()
	hs.keepLocked(kept{offset: pos.Offset, at: now, m: m}, now)
	ms := [1]published{m}
	return ch.fanOut(ms[:], o)
}

// resetLocked drops what the history keeps for a new epoch of its stream.
func (hs *history) resetLocked(epoch string) {
	hs.dropKeptLocked()
	hs.epoch, hs.next = epoch, 1
}

// skipToLocked moves the history on to offset, past messages its members
// here never got, counted.
func (hs *history) skipToLocked(offset uint64) {
	hs.h.stats.historyGaps.Add(offset - hs.next)
	hs.dropKeptLocked()
	hs.next = offset
}

// rangeLocked reads at most max of the stream's messages after offset
// after, within Options.BrokerTimeout.
func (hs *history) rangeLocked(after uint64, max int) ([]streamMessage, Position, error) {
	h := hs.h
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
	defer cancel()
	var msgs []streamMessage
	latest, err := h.bridge.streams.Range(ctx, topic(hs.name, false), after, max, func(offset uint64, msg []byte) {
		typ, payload, ok := parseEnvelope(msg)
		if !ok || len(msgs) >= max || offset <= after || (len(msgs) > 0 && offset <= msgs[len(msgs)-1].offset) {
			h.stats.brokerErrors.Add(1)
			return
		}
		msgs = append(msgs, streamMessage{offset: offset, typ: typ, payload: bytes.Clone(payload)})
	})
	if err != nil {
		h.stats.brokerErrors.Add(1)
		return nil, Position{}, fmt.Errorf("wshub: broker range: %w", err)
	}
	return msgs, latest, nil
}

// syncLocked catches the history up with its stream: what was appended
// since its last message is delivered to the members here. A history
// never synced starts at the stream's end: its members are owed what comes
// next only.
func (hs *history) syncLocked(ch *Channel) error {
	if hs.next == 0 {
		_, latest, err := hs.rangeLocked(0, 0)
		if err != nil {
			return err
		}
		hs.epoch, hs.next = latest.Epoch, latest.Offset+1
		return nil
	}
	// A stream that grows faster than it is read is caught up with in a
	// few rounds at most: past them, the rest is skipped, counted.
	var latest Position
	for range 4 {
		msgs, l, err := hs.rangeLocked(hs.next-1, max(hs.limits.Messages, 1))
		if err != nil {
			return err
		}
		latest = l
		if latest.Epoch != hs.epoch {
			hs.resetLocked(latest.Epoch)
			if latest.Epoch == "" {
				return nil // no stream: the next message starts one
			}
			continue
		}
		for _, m := range msgs {
			hs.acceptLocked(ch, Position{Offset: m.offset, Epoch: latest.Epoch}, m.typ, m.payload, PublishOptions{}, false)
		}
		if hs.next > latest.Offset || len(msgs) == 0 { // caught up, or the stream no longer keeps them
			break
		}
	}
	if latest.Epoch == hs.epoch && hs.next <= latest.Offset {
		hs.skipToLocked(latest.Offset + 1)
	}
	return nil
}

// olderLocked returns, framed and stamped, the stream's messages from
// since+1 to before the kept tail's first, for a recovery that reaches
// back further than the tail; ok is false if the stream no longer has them
// all. The caller releases them.
func (hs *history) olderLocked(since, first uint64) ([]published, bool) {
	want := int(first - since - 1)
	msgs, latest, err := hs.rangeLocked(since, want)
	if err != nil || latest.Epoch != hs.epoch || len(msgs) != want || msgs[0].offset != since+1 {
		return nil, false
	}
	ms := make([]published, 0, want)
	for _, m := range msgs {
		payload := m.payload
		if stamp := hs.limits.Stamp; stamp != nil {
			payload = stamp(Position{Offset: m.offset, Epoch: hs.epoch}, payload)
		}
		p, err := hs.h.newMessage(m.typ, payload)
		if err != nil {
			releaseAll(ms)
			return nil, false
		}
		ms = append(ms, p)
	}
	hs.prependLocked(msgs, ms)
	return ms, true
}

// prependLocked puts the messages ms, just older than the tail, before
// it, so that the next recoveries from as far back are served without a
// round trip: if they keep the history within its count and the hub's
// budget. Age and bytes are bounded at the next message kept.
func (hs *history) prependLocked(msgs []streamMessage, ms []published) {
	if len(ms)+len(hs.kept)-hs.head > hs.limits.Messages {
		return
	}
	cost := 0
	older := make([]kept, len(ms), len(ms)+len(hs.kept)-hs.head)
	now := time.Now().UnixNano()
	for i := range ms {
		// Kept as of now: their age in the stream is not known here.
		older[i] = kept{offset: msgs[i].offset, at: now, m: ms[i]}
		cost += older[i].cost()
	}
	h := hs.h
	h.histMu.Lock()
	fits := h.historyBytes+cost <= h.opts.MaxHistoryBytes
	if fits {
		h.historyBytes += cost
	}
	h.histMu.Unlock()
	if !fits {
		return
	}
	for i := range older {
		older[i].m.plain.refs.Add(1)
		if older[i].m.packed != nil {
			older[i].m.packed.refs.Add(1)
		}
	}
	hs.kept = append(older, hs.kept[hs.head:]...)
	hs.head = 0
	hs.bytes += cost
}

// syncHistory catches the history of the channel called name up with its
// stream, once the hub's subscription to its topic is live, or again after
// the broker was away; from then on its tail serves recoveries without a
// round trip. Nothing if the channel keeps no history.
func (h *Hub) syncHistory(name string) {
	hs := h.lockedHistory(name)
	if hs == nil {
		return
	}
	defer hs.mu.Unlock()
	if hs.stream {
		hs.synced.Store(hs.syncLocked(h.lookup(name, false)) == nil)
	}
}

// unsyncHistories notes that no stream history's tail can be trusted to be
// current: the broker is away, and notices may be lost meanwhile. It takes
// no history's lock: the broker's watcher calls it.
func (h *Hub) unsyncHistories() {
	h.histMu.RLock()
	defer h.histMu.RUnlock()
	for _, hs := range h.histories {
		hs.synced.Store(false)
	}
}

// unsyncHistory is unsyncHistories for the channel called name: its
// members here are leaving, or gone, and notices are no longer delivered.
func (h *Hub) unsyncHistory(name string) {
	h.histMu.RLock()
	if hs := h.histories[name]; hs != nil {
		hs.synced.Store(false)
	}
	h.histMu.RUnlock()
}

// forgetHistory drops the stream history of the channel called name, once
// the channel has no members here: the stream keeps it all.
func (h *Hub) forgetHistory(name string) {
	h.histMu.RLock()
	hs := h.histories[name]
	h.histMu.RUnlock()
	if hs == nil || !hs.stream {
		return
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h.hasChannel(name) {
		// Made again meanwhile (a recovery holds hs.mu across its
		// Subscribe, so this is ordered with it): keep what its members
		// got, and catch up from there at the next subscription.
		hs.synced.Store(false)
		return
	}
	hs.forgetLocked()
}

// forgetLocked drops the history from the hub, with what it keeps: who
// holds it looks it up again.
func (hs *history) forgetLocked() {
	hs.dropKeptLocked()
	hs.gone = true
	h := hs.h
	h.histMu.Lock()
	if h.histories[hs.name] == hs {
		delete(h.histories, hs.name)
	}
	h.historyBytes -= hs.bytes
	h.histMu.Unlock()
}

// hasChannel reports whether the hub has a channel called name, that is
// members of it.
func (h *Hub) hasChannel(name string) bool {
	h.chMu.RLock()
	_, ok := h.channelMap(false)[name]
	h.chMu.RUnlock()
	return ok
}
