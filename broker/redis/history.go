package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"github.com/wshub/wshub"
)

// Histories in Redis Streams: the broker is a wshub.HistoryBroker. Each
// channel with a history (wshub.Options.ChannelHistory) is one Redis
// Stream, whose entry IDs are the messages' offsets (N-0), and one hash
// beside it with the epoch, the next offset and the history's age bound.
// A script appends, so that two hubs publishing at once get consecutive
// offsets. The stream is trimmed to the history's count at each append;
// messages older than its age, by Redis's clock, are skipped when read
// (Redis trims by ID, and these IDs are not times), and its byte bound is
// not applied; the age is the last appending hub's. When the stream (or
// the hash) is deleted, the next append makes a new epoch. Both keys share
// a hash tag, for Redis Cluster, and never expire: a channel's history
// stays in Redis until it is deleted. Channels without a history use
// pub/sub only.

// keys names the stream of topic and its hash.
func (b *Broker) keys(topic string) []string {
	base := b.prefix + "{" + topic + "}"
	return []string{base + ":s", base + ":h"}
}

// appendScript: KEYS stream, hash; ARGV msg, count, a new epoch, max age
// (ms, 0 for none). It returns {offset, epoch}. A stream or hash lost
// alone starts a new epoch, both made afresh. Times are Redis's, so that
// the hubs' clocks do not matter.
var appendScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[2], 'epoch')
if (not e) or redis.call('EXISTS', KEYS[1]) == 0 then
	e = ARGV[3]
	redis.call('DEL', KEYS[1])
	redis.call('HSET', KEYS[2], 'epoch', e, 'next', 0)
end
redis.call('HSET', KEYS[2], 'age', ARGV[4])
local n = redis.call('HINCRBY', KEYS[2], 'next', 1)
local t = redis.call('TIME')
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], n .. '-0', 't', t[1] * 1000 + math.floor(t[2] / 1000), 'd', ARGV[1])
return {n, e}
`)

// rangeScript: KEYS stream, hash; ARGV the first offset to read (a
// decimal string: Lua's numbers are doubles), count. It returns {latest,
// epoch, data...} with the messages not older than the history's age, by
// Redis's clock, as offset and data pairs; {0, ”} without a stream.
var rangeScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[2], 'epoch')
if (not e) or redis.call('EXISTS', KEYS[1]) == 0 then
	return {0, ''}
end
local out = {tonumber(redis.call('HGET', KEYS[2], 'next')), e}
if tonumber(ARGV[2]) > 0 then
	local age = tonumber(redis.call('HGET', KEYS[2], 'age') or '0')
	local t = redis.call('TIME')
	local oldest = 0
	if age > 0 then
		oldest = t[1] * 1000 + math.floor(t[2] / 1000) - age
	end
	for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])) do
		local f = entry[2]
		if tonumber(f[2]) >= oldest then
			table.insert(out, string.sub(entry[1], 1, -3))
			table.insert(out, f[4])
		end
	end
end
return out
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
		hex.EncodeToString(e[:]), limits.MaxAge.Milliseconds()).Slice()
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
	res, err := rangeScript.Run(ctx, b.rdb, b.keys(topic), strconv.FormatUint(after+1, 10), max).Slice()
	if err != nil {
		return wshub.Position{}, err
	}
	if len(res) < 2 || len(res)%2 != 0 {
		return wshub.Position{}, fmt.Errorf("redisbroker: range: unexpected reply of %d items", len(res))
	}
	n, _ := res[0].(int64)
	epoch, _ := res[1].(string)
	for i := 2; i < len(res); i += 2 {
		id, _ := res[i].(string)
		data, _ := res[i+1].(string)
		offset, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			continue
		}
		each(offset, []byte(data))
	}
	return wshub.Position{Offset: uint64(n), Epoch: epoch}, nil
}
