package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wshub/wshub"
)

// Histories in Redis Streams: the broker is a wshub.HistoryBroker. Each
// channel with a history (wshub.Options.ChannelHistory) is one Redis
// Stream, whose entry IDs are the messages' offsets (N-0), and one hash
// beside it with the epoch, the next offset and the history's age bound.
// A script appends, so that two hubs publishing at once get consecutive
// offsets. The stream is trimmed to the history's count at each append;
// messages older than its age are skipped when read (Redis trims by ID,
// and these IDs are not times), and its byte bound is not applied. When
// the stream is deleted, the next append makes a new epoch. Both keys
// share a hash tag, for Redis Cluster. Channels without a history use
// pub/sub only.

// keys names the stream of topic and its hash.
func (b *Broker) keys(topic string) []string {
	base := b.prefix + "{" + topic + "}"
	return []string{base + ":s", base + ":h"}
}

// appendScript: KEYS stream, hash; ARGV msg, count, a new epoch, now
// (Unix ms), max age (ms, 0 for none). It returns {offset, epoch}.
var appendScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[2], 'epoch')
if (not e) or redis.call('EXISTS', KEYS[1]) == 0 then
	e = ARGV[3]
	redis.call('HSET', KEYS[2], 'epoch', e, 'next', 0)
end
redis.call('HSET', KEYS[2], 'age', ARGV[5])
local n = redis.call('HINCRBY', KEYS[2], 'next', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], n .. '-0', 't', ARGV[4], 'd', ARGV[1])
return {n, e}
`)

// rangeScript: KEYS stream, hash; ARGV after, count. It returns {latest,
// epoch, max age, entries}; {0, ”} without a stream.
var rangeScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[2], 'epoch')
if (not e) or redis.call('EXISTS', KEYS[1]) == 0 then
	return {0, ''}
end
local n = redis.call('HGET', KEYS[2], 'next')
local age = redis.call('HGET', KEYS[2], 'age') or '0'
local entries = {}
if tonumber(ARGV[2]) > 0 then
	entries = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', ARGV[2])
end
return {tonumber(n), e, age, entries}
`)

// Append adds msg to topic's stream, trimmed to limits.Messages, and
// returns its offset and the stream's epoch.
func (b *Broker) Append(ctx context.Context, topic string, msg []byte, limits wshub.History) (wshub.Position, error) {
	var e [8]byte
	rand.Read(e[:])
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.ctx, cancel)()
	res, err := appendScript.Run(ctx, b.rdb, b.keys(topic), msg, max(limits.Messages, 1),
		hex.EncodeToString(e[:]), time.Now().UnixMilli(), limits.MaxAge.Milliseconds()).Slice()
	if err != nil {
		return wshub.Position{}, err
	}
	if len(res) != 2 {
		return wshub.Position{}, fmt.Errorf("redisbroker: append: unexpected reply %v", res)
	}
	n, _ := res[0].(int64)
	epoch, _ := res[1].(string)
	return wshub.Position{Offset: uint64(n), Epoch: epoch}, nil
}

// Range reads at most max of topic's stream's messages after offset after,
// skipping those past the history's age, and returns the stream's latest
// position.
func (b *Broker) Range(ctx context.Context, topic string, after uint64, max int, each func(offset uint64, msg []byte)) (wshub.Position, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.ctx, cancel)()
	res, err := rangeScript.Run(ctx, b.rdb, b.keys(topic), after, max).Slice()
	if err != nil {
		return wshub.Position{}, err
	}
	if len(res) < 2 {
		return wshub.Position{}, fmt.Errorf("redisbroker: range: unexpected reply %v", res)
	}
	n, _ := res[0].(int64)
	epoch, _ := res[1].(string)
	latest := wshub.Position{Offset: uint64(n), Epoch: epoch}
	if len(res) < 4 {
		return latest, nil
	}
	ageMs, _ := strconv.ParseInt(fmt.Sprint(res[2]), 10, 64)
	oldest := int64(0)
	if ageMs > 0 {
		oldest = time.Now().UnixMilli() - ageMs
	}
	entries, _ := res[3].([]any)
	for _, x := range entries {
		entry, _ := x.([]any)
		if len(entry) != 2 {
			continue
		}
		id, _ := entry[0].(string)
		fields, _ := entry[1].([]any)
		offset, err := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
		if err != nil || len(fields) != 4 {
			continue
		}
		at, _ := strconv.ParseInt(fmt.Sprint(fields[1]), 10, 64)
		data, _ := fields[3].(string)
		if at < oldest {
			continue
		}
		each(offset, []byte(data))
	}
	return latest, nil
}
