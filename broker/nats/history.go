package natsbroker

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/wshub/wshub"
)

// Histories in JetStream: the broker is a wshub.HistoryBroker. Each channel
// with a history (wshub.Options.ChannelHistory) is one JetStream stream,
// made on its first publish with the channel's bounds (count, age, bytes)
// and file storage, so that it outlives a restart of the server. A
// message's offset is its sequence in the stream, which grows by one per
// message; the epoch is the stream's creation time, which changes when the
// stream is deleted and made anew. Channels without a history use NATS
// core only, and need no JetStream.

// Streams are never deleted by the broker: a channel's stays on the
// server, within its bounds, until an operator deletes it (nats stream rm),
// which starts a new epoch. A hub that appends to a stream another made
// anew learns its epoch when its sequence numbers go back, or at its next
// read of the stream.

// streams is what the broker remembers of the streams it appended to: the
// epoch of each and the latest sequence it got, to notice a stream made
// anew by another hub, whose sequences start again from 1. Bounded: past
// maxStreams entries it starts afresh, and a forgotten stream costs one
// request to learn again.
type streams struct {
	js jetstream.JetStream

	mu    sync.Mutex
	known map[string]streamState // by stream name
}

type streamState struct {
	epoch string
	last  uint64
}

const maxStreams = 4096

// stream names the JetStream stream of topic and the subject it captures.
// Stream names may not hold '.', '*', '>' or path separators, and may be
// at most 255 bytes: a hash of the topic fits both, and the subject is
// apart from the publish/subscribe subjects (prefix.TOPIC) by its extra
// token.
func (b *Broker) stream(topic string) (name, subject string) {
	sum := sha256.Sum256([]byte(topic))
	h := base64.RawURLEncoding.EncodeToString(sum[:20])
	return b.prefix + "_" + h, b.prefix + ".h." + h
}

// epochOf is a stream's epoch: its creation time.
func epochOf(info *jetstream.StreamInfo) string {
	return strconv.FormatInt(info.Created.UnixNano(), 36)
}

// Append publishes msg to topic's stream, made with limits if there is
// none, and returns its sequence in the stream with the stream's epoch.
func (b *Broker) Append(ctx context.Context, topic string, msg []byte, limits wshub.History) (wshub.Position, error) {
	if !b.nc.IsConnected() {
		return wshub.Position{}, ErrDisconnected
	}
	name, subject := b.stream(topic)
	for range 2 {
		st, err := b.state(ctx, name, subject, limits)
		if err != nil {
			return wshub.Position{}, err
		}
		ack, err := b.hs.js.Publish(ctx, subject, msg, jetstream.WithExpectStream(name))
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrStreamNotFound) {
			b.forget(name) // deleted meanwhile: make it again
			continue
		}
		if err != nil {
			return wshub.Position{}, err
		}
		if ack.Sequence <= st.last {
			// Sequences went back: the stream was made anew by another
			// hub. Learn its epoch; this message is its ack.Sequence-th.
			b.forget(name)
			if st, err = b.state(ctx, name, subject, limits); err != nil {
				return wshub.Position{}, err
			}
		}
		b.hs.mu.Lock()
		if s, ok := b.hs.known[name]; ok && s.epoch == st.epoch && ack.Sequence > s.last {
			b.hs.known[name] = streamState{epoch: st.epoch, last: ack.Sequence}
		}
		b.hs.mu.Unlock()
		return wshub.Position{Offset: ack.Sequence, Epoch: st.epoch}, nil
	}
	return wshub.Position{}, jetstream.ErrStreamNotFound
}

// state returns what the broker knows of a stream, made with limits if
// there is none.
func (b *Broker) state(ctx context.Context, name, subject string, limits wshub.History) (streamState, error) {
	b.hs.mu.Lock()
	st, ok := b.hs.known[name]
	b.hs.mu.Unlock()
	if ok {
		return st, nil
	}
	cfg := jetstream.StreamConfig{
		Name:        name,
		Subjects:    []string{subject},
		MaxMsgs:     int64(limits.Messages),
		MaxAge:      limits.MaxAge,
		MaxBytes:    -1,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		AllowDirect: true,
	}
	if limits.MaxBytes > 0 {
		cfg.MaxBytes = int64(limits.MaxBytes)
	}
	s, err := b.hs.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Made by a hub with other bounds: the first one's stay.
		s, err = b.hs.js.Stream(ctx, name)
	}
	if err != nil {
		return streamState{}, err
	}
	info := s.CachedInfo()
	st = streamState{epoch: epochOf(info), last: info.State.LastSeq}
	b.remember(name, st)
	return st, nil
}

func (b *Broker) remember(name string, st streamState) {
	b.hs.mu.Lock()
	if len(b.hs.known) >= maxStreams {
		clear(b.hs.known)
	}
	b.hs.known[name] = st
	b.hs.mu.Unlock()
}

func (b *Broker) forget(name string) {
	b.hs.mu.Lock()
	delete(b.hs.known, name)
	b.hs.mu.Unlock()
}

// Range reads at most max of topic's stream's messages after offset after,
// through an ordered consumer that ends with ctx, and returns the stream's
// latest position.
func (b *Broker) Range(ctx context.Context, topic string, after uint64, max int, each func(offset uint64, msg []byte)) (wshub.Position, error) {
	if !b.nc.IsConnected() {
		return wshub.Position{}, ErrDisconnected
	}
	name, _ := b.stream(topic)
	s, err := b.hs.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		b.forget(name)
		return wshub.Position{}, nil
	}
	if err != nil {
		return wshub.Position{}, err
	}
	info := s.CachedInfo()
	latest := wshub.Position{Offset: info.State.LastSeq, Epoch: epochOf(info)}
	b.remember(name, streamState{epoch: latest.Epoch, last: latest.Offset})
	start := after + 1
	if start < info.State.FirstSeq {
		start = info.State.FirstSeq
	}
	if max <= 0 || info.State.Msgs == 0 || start > latest.Offset {
		return latest, nil
	}
	n := min(uint64(max), latest.Offset-start+1)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: 5 * time.Second, // the server's to delete it, soon after
	})
	if err != nil {
		return wshub.Position{}, err
	}
	// What the stream has now, without waiting for more: a message that
	// expired since the info above would otherwise hold the channel's
	// deliveries here until ctx ends.
	batch, err := c.FetchNoWait(int(n))
	if err != nil {
		return wshub.Position{}, err
	}
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream > latest.Offset {
			continue
		}
		each(md.Sequence.Stream, m.Data())
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return wshub.Position{}, err
	}
	return latest, nil
}
