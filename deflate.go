package wshub

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/gobwas/pool/pbytes"
)

// permessage-deflate (RFC 7692) at no cost to idle connections. The hub
// always answers server_no_context_takeover: each message it sends is
// compressed on its own, so one compressed frame serves every member of a
// channel and no compressor belongs to a connection; compressors and
// decompressors come from pools. A client that keeps its own compression
// context (browsers do) is asked for the smallest window it allows, and the
// hub keeps that window, 512 bytes, for the connection's life, charged to
// the inbound budget. An offer that leaves the client's window at 32 KiB,
// or limits the hub's below 32 KiB (compress/flate cannot), is declined:
// the connection goes on uncompressed.

// Compression configures permessage-deflate; see Options.Compression.
type Compression struct {
	// Level is the compress/flate level of the messages the hub sends,
	// from flate.BestSpeed (1) to flate.BestCompression (9). Zero means
	// flate.BestSpeed: JSON shrinks about as much, several times faster.
	Level int

	// Threshold is the smallest message, in bytes of payload, the hub
	// tries to compress; shorter ones go out as they are, since deflate
	// saves little on them and costs the same CPU per call. Zero means
	// 128 bytes. A message of Threshold bytes or more is compressed, but
	// still goes out as it is if deflate did not make it shorter (short
	// or random data, images and other compressed formats): a compressed
	// frame is never larger than the plain one. Only the messages that
	// went out compressed are counted in Stats.Compressed.
	Threshold int
}

// windowSize is the client window the hub keeps for a client that keeps
// its compression context: 2^9 bytes. The hub asks for 9 bits, not 8,
// because zlib, which most clients use, raises a raw deflate window of 8
// bits to 9.
const windowSize = 1 << 9

// deflateExt is the name of the extension in Sec-WebSocket-Extensions.
const deflateExt = "permessage-deflate"

// errInflate reports a compressed message that does not decompress.
var errInflate = errors.New("invalid compressed data")

// errInflateTooBig reports a compressed message that decompresses past
// MaxMessageSize.
var errInflateTooBig = errors.New("message too big")

// negotiateDeflate picks the first permessage-deflate offer among the values
// of Sec-WebSocket-Extensions that the hub accepts and returns the answer to
// send, and whether the client keeps its compression context. ok is false
// when there is none: the connection is not compressed.
func negotiateDeflate(values []string) (answer string, takeover, ok bool) {
	for _, v := range values {
		for offer := range strings.SplitSeq(v, ",") {
			if answer, takeover, ok = acceptOffer(offer); ok {
				return answer, takeover, true
			}
		}
	}
	return "", false, false
}

// acceptOffer answers one extension offer, such as "permessage-deflate;
// client_max_window_bits", if it is permessage-deflate with parameters the
// hub can meet.
func acceptOffer(offer string) (answer string, takeover, ok bool) {
	params := strings.Split(offer, ";")
	if !strings.EqualFold(strings.TrimSpace(params[0]), deflateExt) {
		return "", false, false
	}
	var (
		seen            = map[string]bool{}
		clientNoContext bool
		clientBits      = -1 // -1: not offered; 0: offered without a value
		serverBits      bool // server_max_window_bits=15 was offered
	)
	for _, p := range params[1:] {
		k, v, hasValue := strings.Cut(strings.TrimSpace(p), "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.Trim(strings.TrimSpace(v), `"`)
		if seen[k] {
			return "", false, false // RFC 7692, 7: a duplicate declines the offer
		}
		seen[k] = true
		switch k {
		case "server_no_context_takeover":
			if hasValue {
				return "", false, false
			}
		case "client_no_context_takeover":
			if hasValue {
				return "", false, false
			}
			clientNoContext = true
		case "server_max_window_bits":
			bits, err := strconv.Atoi(v)
			if err != nil || bits < 8 || bits > 15 {
				return "", false, false
			}
			if bits < 15 {
				return "", false, false // compress/flate always uses 32 KiB
			}
			serverBits = true
		case "client_max_window_bits":
			clientBits = 0
			if hasValue {
				bits, err := strconv.Atoi(v)
				if err != nil || bits < 8 || bits > 15 {
					return "", false, false
				}
				clientBits = bits
			}
		default:
			return "", false, false
		}
	}
	answer = deflateExt + "; server_no_context_takeover"
	if serverBits {
		answer += "; server_max_window_bits=15" // it must be answered
	}
	switch {
	case clientNoContext:
		return answer + "; client_no_context_takeover", false, true
	case clientBits < 0:
		// The client would keep a 32 KiB window the hub would have to keep
		// too, for every idle connection: decline.
		return "", false, false
	case clientBits == 8:
		return answer + "; client_max_window_bits=8", true, true
	default:
		return answer + "; client_max_window_bits=9", true, true
	}
}

// deflation is what a connection negotiated.
type deflation uint8

const (
	deflateOn       deflation = 1 + iota // messages may be compressed both ways
	deflateTakeover                      // and the client keeps its context
)

// negotiate answers a client's extension offers, values of
// Sec-WebSocket-Extensions, for a hub with Options.Compression.
func (h *Hub) negotiate(offers []string) (string, deflation) {
	answer, takeover, ok := negotiateDeflate(offers)
	switch {
	case !ok:
		return "", 0
	case takeover:
		return answer, deflateTakeover
	}
	return answer, deflateOn
}

// compress records what c negotiated, before c is shared or while its
// owner opens it: flagDeflate for the writers, ownInflate (and
// ownTakeover) for its owner.
func (c *Conn) compress(z deflation) {
	if z == 0 {
		return
	}
	c.mu.Lock()
	c.flags |= flagDeflate
	c.mu.Unlock()
	c.own |= ownInflate
	if z == deflateTakeover {
		c.own |= ownTakeover
	}
	c.hub.stats.deflating.Add(1)
}

// deflater is a pooled compressor with the buffer it writes to.
type deflater struct {
	fw  *flate.Writer
	out bytes.Buffer
}

var deflaters [flate.BestCompression + 1]sync.Pool

// deflate compresses p as one message (RFC 7692, 7.2.1: the final empty
// block's tail removed) and returns it in a pooled buffer, or nil if it
// would not be shorter.
func deflate(p []byte, level int) []byte {
	d, _ := deflaters[level].Get().(*deflater)
	if d == nil {
		d = new(deflater)
		d.fw, _ = flate.NewWriter(&d.out, level) // level is checked by Options
	}
	d.out.Reset()
	d.fw.Reset(&d.out)
	d.fw.Write(p)
	d.fw.Flush()
	var z []byte
	if n := d.out.Len() - 4; n < len(p) { // without 00 00 ff ff
		z = append(pbytes.GetCap(n), d.out.Bytes()[:n]...)
	}
	if d.out.Cap() <= 64<<10 {
		deflaters[level].Put(d) // one huge message must not pin its buffer
	}
	return z
}

// inflaters holds decompressors, which are reset for each message.
var inflaters = sync.Pool{New: func() any { return flate.NewReader(nil) }}

// inflateTail ends a message's compressed data: the sync marker the sender
// removed, then an empty final block, so that the reader ends with io.EOF.
var inflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// inflate decompresses p, a message's payload, with dict as the window the
// client's compressor kept, into a pooled buffer of at most limit bytes.
func inflate(p, dict []byte, limit int64) ([]byte, error) {
	fr := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(fr)
	fr.(flate.Resetter).Reset(io.MultiReader(bytes.NewReader(p), bytes.NewReader(inflateTail)), dict)
	out := pbytes.GetCap(int(min(limit+1, int64(max(4*len(p), 512)))))
	for {
		if len(out) == cap(out) {
			if int64(len(out)) > limit {
				pbytes.Put(out)
				return nil, errInflateTooBig
			}
			q := append(pbytes.GetCap(int(min(2*int64(cap(out)), limit+1))), out...)
			pbytes.Put(out)
			out = q
		}
		n, err := fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			pbytes.Put(out)
			return nil, errInflate
		}
	}
	if int64(len(out)) > limit {
		pbytes.Put(out)
		return nil, errInflateTooBig
	}
	return out, nil
}

// slide keeps in window the last cap(window) bytes of what it held followed
// by out: the client's compressor window after the message out.
func slide(window, out []byte) []byte {
	size := cap(window)
	if len(out) >= size {
		return append(window[:0], out[len(out)-size:]...)
	}
	if keep := size - len(out); len(window) > keep {
		window = window[:copy(window, window[len(window)-keep:])]
	}
	return append(window, out...)
}
