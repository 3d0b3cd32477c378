package wshub

import (
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gobwas/pool/pbytes"
)

// MessageType tells a text message from a binary one.
type MessageType uint8

// The two kinds of data message. Their values are the RFC 6455 opcodes.
const (
	Text   MessageType = 1
	Binary MessageType = 2
)

// The frame code sends a MessageType as its opcode: this fails to compile
// if Text and Binary ever differ from opText and opBinary.
var _ = [1]struct{}{}[Text-opText+Binary-opBinary]

// String returns "text" or "binary".
func (t MessageType) String() string {
	switch t {
	case Text:
		return "text"
	case Binary:
		return "binary"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// RFC 6455 opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// rsv1 is the first reserved bit of a frame's first byte: permessage-deflate
// marks a compressed message with it.
const rsv1 = 0x40

// maxControlPayload is the largest payload a control frame may carry (RFC 6455, 5.5).
const maxControlPayload = 125

// maxHeaderSize is the size of the largest frame header: 2 bytes, an 8-byte
// length and a 4-byte mask.
const maxHeaderSize = 14

// CloseCode is a WebSocket close status code (RFC 6455, 7.4).
type CloseCode uint16

// Close codes used and reported by the hub. CloseNoStatus and CloseAbnormal
// are never sent: they describe a close frame without a code and a connection
// that ended without any close frame. Each says what a client should do:
// come back with a jittered exponential back-off, or not without a change.
const (
	CloseNormal          CloseCode = 1000 // the application ended it: come back if it says so
	CloseGoingAway       CloseCode = 1001 // drain, restart, idle or old connection: come back, with back-off
	CloseProtocolError   CloseCode = 1002 // the client broke RFC 6455: a bug, do not retry as is
	CloseUnsupportedData CloseCode = 1003 // a message type the application refuses: do not resend it
	CloseNoStatus        CloseCode = 1005 // reported only: the peer's close frame had no code
	CloseAbnormal        CloseCode = 1006 // reported only: the connection was lost; come back, with back-off
	CloseInvalidPayload  CloseCode = 1007 // bad UTF-8 or deflate data: a bug, do not retry as is
	ClosePolicyViolation CloseCode = 1008 // a limit or the application's policy: come back, if at all, after a long back-off
	CloseMessageTooBig   CloseCode = 1009 // past MaxMessageSize: do not resend that message
	CloseInternalError   CloseCode = 1011 // the server failed: come back, with back-off
	CloseServiceRestart  CloseCode = 1012 // the server restarts (DrainCode): come back, with back-off
	CloseTryAgainLater   CloseCode = 1013 // overloaded: come back later, with back-off

	// CloseUnauthorized is sent when a connection's credentials expired
	// (Conn.SetExpiry): come back at once, but with fresh credentials (a
	// refreshed token); with the same ones the upgrade would be refused.
	// It is 3000 "Unauthorized" in IANA's registry, WebSocket's 401.
	CloseUnauthorized CloseCode = 3000
)

// String returns the code's name from RFC 6455 and the IANA registry, such
// as "1009 message too big", or its number alone.
func (c CloseCode) String() string {
	s := strconv.Itoa(int(c))
	if name := closeNames[c]; name != "" {
		s += " " + name
	}
	return s
}

var closeNames = map[CloseCode]string{
	CloseNormal:          "normal closure",
	CloseGoingAway:       "going away",
	CloseProtocolError:   "protocol error",
	CloseUnsupportedData: "unsupported data",
	CloseNoStatus:        "no status",
	CloseAbnormal:        "abnormal closure",
	CloseInvalidPayload:  "invalid payload data",
	ClosePolicyViolation: "policy violation",
	CloseMessageTooBig:   "message too big",
	1010:                 "mandatory extension",
	CloseInternalError:   "internal error",
	CloseServiceRestart:  "service restart",
	CloseTryAgainLater:   "try again later",
	1014:                 "bad gateway",
	1015:                 "TLS handshake",
	CloseUnauthorized:    "unauthorized",
}

// validWireCode reports whether a peer may send code in a close frame. Codes
// 1004-1006 and 1015 are reserved for reports and must never be on the wire;
// 1016-2999 are unassigned; 3000-4999 belong to libraries and applications.
func validWireCode(code CloseCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// frameHeader is a decoded frame header.
type frameHeader struct {
	length   int64
	mask     [4]byte
	op       byte
	rsv      byte
	fin      bool
	masked   bool
	longForm bool // the length was not encoded in its shortest form
}

// parseHeader decodes the frame header at the start of b. It returns n == 0
// when b does not hold the whole header yet, and length < 0 when the 64-bit
// length has its most significant bit set, which RFC 6455 forbids. It reads
// nothing past the header, so a declared length costs nothing until the bytes
// arrive.
func parseHeader(b []byte) (h frameHeader, n int) {
	if len(b) < 2 {
		return h, 0
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] >> 4 & 0x7
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		h.longForm = h.length <= 125
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0
		}
		h.length = int64(binary.BigEndian.Uint64(b[2:])) // negative if the MSB is set
		h.longForm = h.length >= 0 && h.length <= 0xffff
		n = 10
	default:
		h.length = int64(l)
	}
	if h.masked {
		if len(b) < n+4 {
			return h, 0
		}
		copy(h.mask[:], b[n:])
		n += 4
	}
	return h, n
}

// headerLen returns the length of a frame header whose second byte is b1.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// putHeader writes the header of an unmasked, final server frame carrying
// size bytes into dst, which must hold maxHeaderSize bytes, and returns its
// length.
func putHeader(dst []byte, op byte, size int) int {
	dst[0] = 0x80 | op
	switch {
	case size <= 125:
		dst[1] = byte(size)
		return 2
	case size <= 0xffff:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:], uint16(size))
		return 4
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:], uint64(size))
		return 10
	}
}

// closePayload encodes a close frame body. Reasons longer than a control
// frame allows are cut at a rune boundary so that the body stays valid UTF-8.
func closePayload(dst []byte, code CloseCode, reason string) []byte {
	if code == 0 || code == CloseNoStatus || code == CloseAbnormal {
		return dst[:0]
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	dst = binary.BigEndian.AppendUint16(dst[:0], uint16(code))
	return append(dst, reason...)
}

// closeFrame encodes a whole close frame into buf.
func closeFrame(buf *[maxHeaderSize + maxControlPayload]byte, code CloseCode, reason string) []byte {
	var body [maxControlPayload]byte
	p := closePayload(body[:], code, reason)
	hn := putHeader(buf[:], opClose, len(p))
	return append(buf[:hn], p...)
}

// frame is one encoded server frame shared by every queue that holds it. Its
// bytes never change once built, so a broadcast can hand the same frame to
// many connections; the last release returns the buffer to the pool.
type frame struct {
	b    []byte
	refs atomic.Int32
	// ch is the channel a publish framed it for, which SlowConflate
	// matches queued frames by; nil for a connection's own writes.
	ch *Channel
}

var framePool = sync.Pool{New: func() any { return new(frame) }}

// newFrame encodes a frame from a header and the payload bytes of p that
// follow skip bytes already written, with one reference held by the caller.
func newFrame(hdr, p []byte, skip int) *frame {
	f := framePool.Get().(*frame)
	n := len(hdr) + len(p) - skip
	f.b = pbytes.GetLen(n)
	if skip < len(hdr) {
		k := copy(f.b, hdr[skip:])
		copy(f.b[k:], p)
	} else {
		copy(f.b, p[skip-len(hdr):])
	}
	f.refs.Store(1)
	return f
}

// isData reports whether f is a whole text or binary frame.
func (f *frame) isData() bool {
	op := f.b[0] & 0x0f
	return op == opText || op == opBinary
}

// frameSize is the size on the wire of a server frame carrying n bytes.
func frameSize(n int) int {
	switch {
	case n <= 125:
		return 2 + n
	case n <= 0xffff:
		return 4 + n
	}
	return 10 + n
}

// release drops one reference and recycles the frame after the last.
func (f *frame) release() {
	if f.refs.Add(-1) == 0 {
		pbytes.Put(f.b)
		f.b, f.ch = nil, nil
		framePool.Put(f)
	}
}
