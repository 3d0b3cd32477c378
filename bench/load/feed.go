package load

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
)

// feedWords are what FeedJSON's messages say: common words, so that a
// message compresses about as well as a chat or feed message does.
var feedWords = []string{
	"the", "a", "to", "and", "of", "in", "is", "it", "you", "that", "for", "on", "with", "this",
	"we", "be", "are", "not", "have", "at", "just", "can", "was", "but", "so", "if", "about",
	"meeting", "release", "deploy", "today", "tomorrow", "please", "thanks", "check", "build",
	"merged", "review", "issue", "fixed", "server", "latency", "dashboard", "customer", "ticket",
	"lunch", "coffee", "great", "agree", "sounds", "good", "looks", "later", "call", "team",
	"update", "question", "answer", "morning", "weekend", "price", "order", "shipped", "alert",
}

var feedNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "walter"}

// seqPrefix starts every FeedJSON message; the sequence number follows as
// 16 hex digits, at a fixed offset so that Seq finds it without parsing.
const seqPrefix = `{"seq":"`

// FeedJSON returns a JSON message of exactly size bytes (at least 256), as
// a chat room's or a feed's update looks: a sequence number, then
// messages with ids, users, timestamps and text drawn from common words,
// varied by seq so that no two messages are alike. Deflate shrinks it
// about 2 times at flate.BestSpeed without context takeover, as it does a real chat message on its own; not as much as repeated
// bytes would.
func FeedJSON(seq uint64, size int) []byte {
	size = max(size, 256)
	rng := rand.New(rand.NewPCG(seq, 0x9e3779b97f4a7c15))
	b := make([]byte, 0, size)
	b = fmt.Appendf(b, `%s%016x","type":"messages","channel":"general","items":[`, seqPrefix, seq)
	const end = `"}]}`
	for i := 0; ; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":%d,"user":{"id":%d,"name":"%s"},"ts":%d,"text":"`,
			seq*100+uint64(i), 1000+rng.IntN(9000), feedNames[rng.IntN(len(feedNames))], 1764547200000+int64(seq)*1000+int64(rng.IntN(1000)))
		// The text: as many words as fit, the last item's up to the size.
		words := 8 + rng.IntN(24)
		for w := 0; ; w++ {
			room := size - len(b) - len(end)
			next := feedWords[rng.IntN(len(feedWords))]
			if w > 0 {
				next = " " + next
			}
			if w >= words && room > 140 {
				break // this item is long enough and another fits
			}
			if len(next) > room {
				for range room {
					b = append(b, '.')
				}
				return append(b, end...)
			}
			b = append(b, next...)
		}
		b = append(b, `"}`...)
	}
}

// Seq returns the sequence number of a benchmark message: the 16 hex
// digits after a FeedJSON message's seqPrefix, or else the first 8 bytes,
// big-endian.
func Seq(p []byte) (uint64, bool) {
	if len(p) >= len(seqPrefix)+16 && string(p[:len(seqPrefix)]) == seqPrefix {
		v, err := strconv.ParseUint(string(p[len(seqPrefix):len(seqPrefix)+16]), 16, 64)
		return v, err == nil
	}
	if len(p) >= 8 {
		return binary.BigEndian.Uint64(p), true
	}
	return 0, false
}
