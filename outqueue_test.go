package wshub

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
)

// queueOf returns a queue holding frames of the given sizes, each filled
// with its index, and the hub-wide counter it keeps.
func queueOf(sizes ...int) (*outQueue, *atomic.Int64) {
	total := new(atomic.Int64)
	q := &outQueue{total: total}
	for i, n := range sizes {
		q.push(dataFrame(n, byte(i)))
	}
	return q, total
}

// dataFrame is a binary frame of n bytes on the wire, filled with b.
func dataFrame(n int, b byte) *frame {
	var hdr [maxHeaderSize]byte
	hn := putHeader(hdr[:], opBinary, n-2)
	return newFrame(hdr[:hn], bytes.Repeat([]byte{b}, n-hn), 0)
}

func controlFrame(n int) *frame {
	var hdr [maxHeaderSize]byte
	hn := putHeader(hdr[:], opPing, n-2)
	return newFrame(hdr[:hn], make([]byte, n-hn), 0)
}

func (q *outQueue) sizes() []int {
	var s []int
	for i := q.first; i < len(q.frames); i++ {
		n := len(q.frames[i].b)
		if i == q.first {
			n -= q.head
		}
		s = append(s, n)
	}
	return s
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOutQueue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		run       func(q *outQueue) int
		sizes     []int
		wantSizes []int // unsent bytes of each frame left, oldest first
		wantRet   int
	}{
		{
			name:      "partial write then advance",
			sizes:     []int{10, 20, 30},
			run:       func(q *outQueue) int { q.advance(15); return q.len() },
			wantSizes: []int{15, 30},
			wantRet:   2,
		},
		{
			name:  "short write reports not whole",
			sizes: []int{10, 20},
			run: func(q *outQueue) int {
				if q.advance(5) {
					return -1
				}
				return q.head
			},
			wantSizes: []int{5, 20},
			wantRet:   5,
		},
		{
			name:  "written slots are reused instead of growing",
			sizes: []int{10, 10, 10, 10},
			run: func(q *outQueue) int {
				q.advance(20)
				c := cap(q.frames)
				for len(q.frames) < c {
					q.push(dataFrame(10, 9))
				}
				q.push(dataFrame(10, 9)) // wraps: moves the live frames down
				if cap(q.frames) != c {
					return -1
				}
				return q.first
			},
			wantSizes: nil, // checked by length below
			wantRet:   0,
		},
		{
			name:  "drop oldest keeps the partly written head and control frames",
			sizes: []int{10, 20, 30, 40},
			run: func(q *outQueue) int {
				q.advance(4)
				q.push(controlFrame(6))
				return q.dropOldest(45, q.first+1)
			},
			wantSizes: []int{6, 40, 6},
			wantRet:   2,
		},
		{
			name:      "drop oldest refuses what it cannot free",
			sizes:     []int{10, 20},
			run:       func(q *outQueue) int { return q.dropOldest(100, q.first) },
			wantSizes: []int{10, 20},
			wantRet:   -1,
		},
		{
			name:  "drop data keeps control frames",
			sizes: []int{10, 20},
			run: func(q *outQueue) int {
				q.push(controlFrame(8))
				q.push(dataFrame(30, 3))
				return q.dropData(q.first)
			},
			wantSizes: []int{8},
			wantRet:   3,
		},
		{
			name:  "take stops at the byte limit but takes one frame at least",
			sizes: []int{50, 10, 10},
			run: func(q *outQueue) int {
				batch, n := q.take(nil, 64, 40)
				return len(batch)*1000 + n
			},
			wantSizes: []int{10, 10},
			wantRet:   1050,
		},
		{
			name:      "discard empties",
			sizes:     []int{10, 20},
			run:       func(q *outQueue) int { q.advance(3); q.discard(); return q.len() },
			wantSizes: nil,
			wantRet:   0,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, total := queueOf(tc.sizes...)
			got := tc.run(q)
			if got != tc.wantRet {
				t.Errorf("returned %d, want %d", got, tc.wantRet)
			}
			if tc.wantSizes != nil && !equalInts(q.sizes(), tc.wantSizes) {
				t.Errorf("left %v, want %v", q.sizes(), tc.wantSizes)
			}
			if strings.HasPrefix(tc.name, "take") {
				return // its bytes stay counted until the writer gives them back
			}
			sum := 0
			for _, n := range q.sizes() {
				sum += n
			}
			if q.size != sum || total.Load() != int64(sum) {
				t.Errorf("size %d, hub counter %d, frames hold %d", q.size, total.Load(), sum)
			}
		})
	}
}

func TestFrameHeaders(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		var hdr [maxHeaderSize]byte
		hn := putHeader(hdr[:], opText, n)
		if hn+n != frameSize(n) {
			t.Errorf("%d bytes: header %d, frameSize %d", n, hn, frameSize(n))
		}
		if headerLen(hdr[1]) != hn {
			t.Errorf("%d bytes: headerLen %d, want %d", n, headerLen(hdr[1]), hn)
		}
		// A server header is unmasked: parse it as a client's would be
		// after adding a mask, and the length must come back.
		b := append(hdr[:hn:hn], 1, 2, 3, 4)
		b[1] |= 0x80
		h, m := parseHeader(b)
		if m != hn+4 || h.length != int64(n) || h.op != opText || !h.fin || !h.masked || h.longForm {
			t.Errorf("%d bytes: parsed %+v, %d", n, h, m)
		}
	}
	if _, n := parseHeader([]byte{0x81, 0xfe, 0}); n != 0 {
		t.Errorf("a cut 16-bit length parsed as %d bytes", n)
	}
	if h, _ := parseHeader([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}); h.length >= 0 {
		t.Errorf("a 64-bit length with its top bit set parsed as %d", h.length)
	}
	var body [maxControlPayload]byte
	long := string(bytes.Repeat([]byte("é"), 100)) // 200 bytes: cut at a rune boundary
	if p := closePayload(body[:], CloseNormal, long); len(p) > maxControlPayload || p[len(p)-1] != 0xa9 {
		t.Errorf("close payload of %d bytes ends %x", len(p), p[len(p)-1])
	}
	if p := closePayload(body[:], CloseNoStatus, "x"); len(p) != 0 {
		t.Errorf("1005 encoded as %x, want an empty body", p)
	}
}

// TestSchedStateMachine walks the dispatch bits of one connection through a
// worker's turn: queued once, dirty while processed, queued again if dirty.
func TestSchedStateMachine(t *testing.T) {
	t.Parallel()
	c := &Conn{}
	c.sched.Store(lifeBits(0xabcdef00))
	if !c.markReady() {
		t.Fatal("an idle connection was not queued")
	}
	if c.markReady() || c.markReady() {
		t.Fatal("a queued connection was queued again")
	}
	if c.unmarkReady() {
		t.Fatal("a connection made ready while processed went idle")
	}
	c.sched.And(^uint32(schedDirty)) // the worker's next turn
	if !c.unmarkReady() {
		t.Fatal("a clean connection did not go idle")
	}
	if !c.markReady() {
		t.Fatal("an idle connection was not queued again")
	}
	if got := c.sched.Load() >> schedEndShift; got != 0xabcdef00>>schedEndShift {
		t.Errorf("the lifetime bits changed: %x", got)
	}
}
