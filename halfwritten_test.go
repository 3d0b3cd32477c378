package wshub

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A frame the hub has begun to write ends before anything else is written
// (issue 23: a close frame went out inside an 8 MiB frame's payload). On
// every door, TLS included, a large frame is left half written to a client
// that does not read; then a slow-consumer policy, Conn.Close,
// Hub.Shutdown or Hub.Close acts on the connection; then the client reads
// everything and parses the stream strictly: every frame whole, the large
// one intact, no frame inside another, and a clean end. And a frame
// larger than MaxQueuedBytes is refused before any of it is written
// (TestHalfWrittenTooBig).

const (
	// hwBig is the large message: twice what the kernel's socket buffers
	// hold by default (tcp_wmem's maximum is 4 MiB), so that its frame is
	// half written whatever the sender's buffer grew to.
	hwBig = 8 << 20
	// hwSmall is the size of the messages that fill the queue.
	hwSmall = 256 << 10
	// hwRcvBuf is the client's receive buffer while it does not read;
	// hwReadBuf when it does, as fast as it can.
	hwRcvBuf  = 32 << 10
	hwReadBuf = 4 << 20
	// hwQueue is MaxQueuedBytes: the large frame fits, with 1 MiB to spare.
	hwQueue = hwBig + maxHeaderSize + 1<<20
	// hwAfter is the sequence number of the message written once the
	// client has read the rest, to show the connection still works.
	hwAfter = 99_999_999
)

// hwBigPayload is the large message: ASCII (valid text), lower case, no
// two neighbouring KiB alike, so that bytes lost, moved or inserted show.
var hwBigPayload = sync.OnceValue(func() []byte {
	p := make([]byte, hwBig)
	for i := range p {
		p[i] = 'a' + byte((i+i>>10)%26)
	}
	return p
})

// hwLetters is upper case letters, A to Z over and over, from which the
// small messages are cut.
var hwLetters = sync.OnceValue(func() []byte {
	p := make([]byte, hwSmall+26)
	for i := range p {
		p[i] = 'A' + byte(i%26)
	}
	return p
})

// hwSmallPayload is small message seq: "#%08d:", then upper case letters
// from the seq'th on.
func hwSmallPayload(seq int) []byte {
	p := make([]byte, hwSmall)
	copy(p, hwLetters()[seq%26:])
	copy(p, fmt.Sprintf("#%08d:", seq))
	return p
}

// hwSeq returns the sequence number of a small message, or -1 if p is not
// one, whole and intact.
func hwSeq(p []byte) int {
	if len(p) != hwSmall || p[0] != '#' || p[9] != ':' {
		return -1
	}
	n, err := strconv.Atoi(string(p[1:9]))
	if err != nil || n < 0 || !bytes.Equal(p[10:], hwLetters()[n%26+10:][:hwSmall-10]) {
		return -1
	}
	return n
}

// connectSmallBuffer dials addr through d, TLS included, with a receive
// buffer of hwRcvBuf set before any byte is read, and upgrades. The test
// then reads nothing until it means to; it may enlarge the buffer through
// the TCP connection returned first.
func connectSmallBuffer(t *testing.T, d door, addr string) (*client, *net.TCPConn) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if err := nc.(*net.TCPConn).SetReadBuffer(hwRcvBuf); err != nil {
		t.Fatal(err)
	}
	conn := nc
	if d.tls {
		tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		tc.SetDeadline(time.Time{})
		conn = tc
	}
	c := &client{t: t, nc: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	c.write([]byte(upgradeRequest(addr)))
	if status := c.readResponse(); status != 101 {
		t.Fatalf("upgrade status %d, want 101", status)
	}
	return c, nc.(*net.TCPConn)
}

// wireFrame is a frame as read off the wire.
type wireFrame struct {
	at      int64 // offset of its first byte, from where readWire began
	fin     bool
	op      byte
	length  int64 // the payload length its header announced
	payload []byte
}

func (f wireFrame) String() string {
	return fmt.Sprintf("frame at byte %d: fin=%v op=%#x length %d", f.at, f.fin, f.op, f.length)
}

// wireStream is what the client read, and how it ended.
type wireStream struct {
	frames []wireFrame // whole frames, the close frame included
	closed *wireFrame  // the close frame, if one came
	eof    bool        // the stream ended (after a close frame, or at a frame boundary)
	cut    *wireFrame  // the frame the stream ended (or, with err, stalled) inside, with what came of it
	err    error       // a violation of the protocol, or a failed or stalled read
}

// readWire reads frames strictly from c until the stream ends, a close
// frame and the end after it are read, stop returns true for a frame, or
// no byte comes for hwStall.
// Every server frame must be whole (fin, no fragments: the hub sends
// messages as single frames), unmasked, without RSV bits (no extension was
// negotiated), with a known opcode, a minimal length encoding and a
// payload no larger than maxLen; control frames at most 125 bytes. After a
// close frame nothing may come but the end of the stream.
func readWire(c *client, maxLen int64, stop func(wireFrame) bool) wireStream {
	var s wireStream
	r := &countingReader{r: c.br, nc: c.nc}
	for {
		f := wireFrame{at: r.n}
		var h [10]byte
		n, err := io.ReadFull(r, h[:2])
		if n == 0 && err == io.EOF {
			s.eof = true
			return s
		}
		if err != nil {
			if isEnd(err) {
				f.length = -1
				s.cut = &f
				return s
			}
			s.err = fmt.Errorf("reading a frame header at byte %d: %w", f.at, err)
			return s
		}
		f.fin, f.op = h[0]&0x80 != 0, h[0]&0x0f
		length := int64(h[1] & 0x7f)
		ext := 0
		switch length {
		case 126:
			ext = 2
		case 127:
			ext = 8
		}
		if ext > 0 {
			if _, err := io.ReadFull(r, h[2:2+ext]); err != nil {
				if isEnd(err) {
					f.length = -1
					s.cut = &f
					return s
				}
				s.err = fmt.Errorf("reading the length of the %v: %w", f, err)
				return s
			}
			if ext == 2 {
				length = int64(binary.BigEndian.Uint16(h[2:4]))
			} else {
				u := binary.BigEndian.Uint64(h[2:10])
				if u > 1<<62 {
					length = -1
				} else {
					length = int64(u)
				}
			}
		}
		f.length = length
		switch {
		case h[1]&0x80 != 0:
			s.err = fmt.Errorf("%v, header % x: masked", f, h[:2+ext])
		case h[0]&0x70 != 0:
			s.err = fmt.Errorf("%v, header % x: RSV bits set", f, h[:2+ext])
		case f.op != opText && f.op != opBinary && f.op != opClose && f.op != opPing && f.op != opPong:
			s.err = fmt.Errorf("%v, header % x: opcode %#x is not a whole text, binary or control frame", f, h[:2+ext], f.op)
		case !f.fin:
			s.err = fmt.Errorf("%v, header % x: not final (the hub sends every message as one frame)", f, h[:2+ext])
		case length < 0 || length > maxLen:
			s.err = fmt.Errorf("%v, header % x: longer than any message sent (%d)", f, h[:2+ext], maxLen)
		case ext == 2 && length < 126, ext == 8 && length <= 0xffff:
			s.err = fmt.Errorf("%v, header % x: length not in its shortest encoding", f, h[:2+ext])
		case f.op >= opClose && length > maxControlPayload:
			s.err = fmt.Errorf("%v, header % x: control frame over 125 bytes", f, h[:2+ext])
		}
		if s.err != nil {
			return s
		}
		f.payload = make([]byte, length)
		if n, err := io.ReadFull(r, f.payload); err != nil {
			f.payload = f.payload[:n]
			s.cut = &f
			if !isEnd(err) {
				s.err = fmt.Errorf("reading the payload of the %v, %d bytes of it read: %w", f, n, err)
			}
			return s
		}
		s.frames = append(s.frames, f)
		if f.op == opClose {
			s.closed = &s.frames[len(s.frames)-1]
			var one [1]byte
			switch n, err := r.Read(one[:]); {
			case n > 0:
				s.err = fmt.Errorf("byte %#x after the close frame at byte %d", one[0], f.at)
			case errors.Is(err, io.EOF):
				s.eof = true
			default:
				s.err = fmt.Errorf("after the close frame at byte %d, the stream did not end: %w", f.at, err)
			}
			return s
		}
		if stop != nil && stop(f) {
			return s
		}
	}
}

// isEnd reports whether err is the end of the stream, TLS's included.
func isEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// hwStall is how long readWire waits for the next byte: reading 8 MiB
// takes well under a second, and a stream cut inside a frame that the hub
// never finishes stalls.
const hwStall = 5 * time.Second

// countingReader counts the bytes read through it, and fails a read that
// waits more than hwStall for the next byte.
type countingReader struct {
	r  io.Reader
	nc net.Conn
	n  int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.nc.SetReadDeadline(time.Now().Add(hwStall))
	n, err := c.r.Read(p)
	c.n += int64(n)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("no byte for %v at byte %d of the stream: %w", hwStall, c.n, err)
	}
	return n, err
}

// diffAt describes where got, a payload, stops being a prefix of want.
func diffAt(got, want []byte) string {
	if bytes.HasPrefix(want, got) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	if i == len(got) && len(got) <= len(want) {
		return ""
	}
	if i == len(want) {
		return fmt.Sprintf("%d bytes more than the %d sent", len(got)-len(want), len(want))
	}
	end := min(i+24, len(got))
	what := ""
	switch got[i] {
	case 0x81, 0x82, 0x88, 0x89, 0x8a:
		what = fmt.Sprintf(" (a frame header: %s frame)", map[byte]string{0x81: "text", 0x82: "binary", 0x88: "close", 0x89: "ping", 0x8a: "pong"}[got[i]])
	}
	return fmt.Sprintf("differs from byte %d on: % x%s %q", i, got[i:end], what, got[i:end])
}

// hwData checks the data frames of s: the large one first and intact,
// then whole small messages, and returns their sequence numbers. Pings
// may come between frames; the close frame is the caller's.
func hwData(t *testing.T, s wireStream) (bigWhole bool, seqs []int) {
	t.Helper()
	first := true
	for _, f := range s.frames {
		switch {
		case f.op == opPing || f.op == opPong || f.op == opClose:
			continue
		case first:
			first = false
			if f.op != opBinary {
				t.Errorf("first frame: %v, want the binary %d-byte message", f, hwBig)
			}
			if len(f.payload) != hwBig {
				t.Errorf("first frame: %v, want the %d-byte message", f, hwBig)
			}
			if d := diffAt(f.payload, hwBigPayload()); d != "" {
				t.Errorf("the large frame's payload %s", d)
			} else if len(f.payload) == hwBig {
				bigWhole = true
			}
		default:
			seq := hwSeq(f.payload)
			if f.op != opBinary || seq < 0 {
				t.Errorf("%v: not one of the small messages sent (payload starts %q)", f, f.payload[:min(16, len(f.payload))])
				continue
			}
			seqs = append(seqs, seq)
		}
	}
	if first && s.cut == nil {
		t.Errorf("the large frame never came: %d frames", len(s.frames))
	}
	return bigWhole, seqs
}

// expectEnd checks that s ended with a close frame with code and reason,
// after whole frames, and then the end of the stream.
func expectEnd(t *testing.T, s wireStream, code CloseCode, reason string) {
	t.Helper()
	if s.err != nil || s.cut != nil || s.closed == nil {
		t.Fatalf("stream: %v; want whole frames, a close frame %d %q, the end", s, code, reason)
	}
	p := s.closed.payload
	if len(p) < 2 {
		t.Fatalf("close frame without a code, want %d %q", code, reason)
	}
	if got, r := CloseCode(binary.BigEndian.Uint16(p)), string(p[2:]); got != code || r != reason {
		t.Errorf("close frame %d %q, want %d %q", got, r, code, reason)
	}
	if !s.eof {
		t.Errorf("no end of stream after the close frame")
	}
}

// cutStory says whether the bytes of a cut frame are what was sent.
func cutStory(s wireStream) string {
	f := s.cut
	switch {
	case f.length < 0:
		return "inside its header"
	case f.length <= hwBig && f.length > hwSmall:
		// The large frame, or a prefix of its payload (TestHalfWrittenTooBig).
		if d := diffAt(f.payload, hwBigPayload()); d != "" {
			return "the large payload " + d
		}
		return "its bytes are the large payload's"
	case f.length == hwSmall && len(f.payload) >= 10:
		seq, _ := strconv.Atoi(string(f.payload[1:9]))
		if d := diffAt(f.payload, hwSmallPayload(seq)); d != "" {
			return "a small payload " + d
		}
		return "its bytes are small message " + strconv.Itoa(seq) + "'s"
	}
	return "not a frame sent"
}

// String describes how s went.
func (s wireStream) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d whole frames", len(s.frames))
	if s.closed != nil {
		p := s.closed.payload
		if len(p) >= 2 {
			fmt.Fprintf(&b, ", the last a close frame %d %q", binary.BigEndian.Uint16(p), p[2:])
		} else {
			fmt.Fprintf(&b, ", the last a close frame % x", p)
		}
	}
	if s.cut != nil {
		fmt.Fprintf(&b, "; then %v, cut after %d bytes of its payload (%s)", *s.cut, len(s.cut.payload), cutStory(s))
	}
	if s.eof {
		b.WriteString("; then the end of the stream")
	}
	if s.err != nil {
		fmt.Fprintf(&b, "; then: %v", s.err)
	}
	return b.String()
}

// increasingSubset reports whether got is strictly increasing and each of
// it is in sent.
func increasingSubset(got, sent []int) bool {
	in := make(map[int]bool, len(sent))
	for _, s := range sent {
		in[s] = true
	}
	for i, g := range got {
		if !in[g] || i > 0 && g <= got[i-1] {
			return false
		}
	}
	return true
}

func equalSeqs(a, b []int) bool {
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

// hwCase is one way to act on a connection whose frame is half written.
type hwCase struct {
	name    string
	policy  SlowPolicy // the slow-consumer policy, forced by more messages
	publish bool       // messages go through a channel instead of WriteMessage
	end     string     // instead of a policy: "conn-close", "shutdown" or "hub-close"
}

var hwCases = []hwCase{
	{name: "close-write", policy: SlowClose},
	{name: "close-publish", policy: SlowClose, publish: true},
	{name: "drop-newest-write", policy: SlowDropNewest},
	{name: "drop-newest-publish", policy: SlowDropNewest, publish: true},
	{name: "drop-oldest-write", policy: SlowDropOldest},
	{name: "drop-oldest-publish", policy: SlowDropOldest, publish: true},
	{name: "conn-close", end: "conn-close"},
	{name: "shutdown", end: "shutdown"},
	{name: "hub-close", end: "hub-close"},
}

// hwPublishDoors are the doors the publish cases run on: one per write
// path (netpoll, portable, TLS), since the doors differ only in how a
// connection comes in, and 8 MiB cases are not free under the race
// detector.
var hwPublishDoors = map[string]bool{"http": true, "http-portable": true, "listener-tls": true}

func TestHalfWritten(t *testing.T) {
	t.Parallel()
	hwBigPayload()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range hwCases {
				if tc.publish && !hwPublishDoors[d.name] {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					testHalfWritten(t, d, tc)
				})
			}
		})
	}
}

// hwSent is how the hub took a message.
type hwSent uint8

const (
	hwTaken   hwSent = iota
	hwRefused        // ErrSlowConsumer, or a publish the policy dropped or that closed the connection
	hwClosed         // net.ErrClosed, or a publish to a closing connection
)

func (s hwSent) String() string {
	return [...]string{"taken", "refused", "closed"}[s]
}

func testHalfWritten(t *testing.T, d door, tc hwCase) {
	rec := newRecorder()
	opts := rec.options(false)
	opts.MaxQueuedBytes = hwQueue
	opts.SlowConsumer = tc.policy
	opts.CloseTimeout = 10 * time.Second // a slow machine reads 8 MiB in time
	var dropped, slowClosed atomic.Int64
	opts.OnEvent = func(e Event) {
		switch {
		case e.Kind == EventDropped:
			dropped.Add(1)
		case e.Kind == EventClosed && e.Reason == ReasonSlowConsumer:
			slowClosed.Add(1)
		}
	}
	h, addr := startHub(t, opts, d)
	c, tcp := connectSmallBuffer(t, d, addr)
	var conn *Conn
	select {
	case conn = <-rec.opened:
	case <-time.After(10 * time.Second):
		t.Fatal("OnOpen was not called")
	}
	var ch *Channel
	if tc.publish {
		ch = h.Channel("half-written")
		if err := ch.Subscribe(conn); err != nil {
			t.Fatal(err)
		}
	}
	send := func(p []byte) (hwSent, error) {
		if ch == nil {
			switch err := conn.WriteMessage(Binary, p); {
			case err == nil:
				return hwTaken, nil
			case errors.Is(err, ErrSlowConsumer):
				return hwRefused, nil
			case errors.Is(err, net.ErrClosed):
				return hwClosed, nil
			default:
				return 0, err
			}
		}
		before := dropped.Load() + slowClosed.Load()
		n, err := ch.Publish(Binary, p)
		switch {
		case err != nil:
			return 0, err
		case n == 1:
			return hwTaken, nil
		case dropped.Load()+slowClosed.Load() > before:
			return hwRefused, nil
		default:
			return hwClosed, nil
		}
	}

	// The large frame, half written: its header reaches the client, which
	// reads nothing more, and the rest waits in the hub.
	if got, err := send(hwBigPayload()); got != hwTaken || err != nil {
		t.Fatalf("the %d-byte message, under MaxQueuedBytes %d: %v, %v", hwBig, hwQueue, got, err)
	}
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if hdr, err := c.br.Peek(10); err != nil || hdr[0] != 0x82 || hdr[1] != 127 {
		t.Fatalf("the large frame's header did not come: % x, %v", hdr, err)
	}
	if q := h.Stats().QueuedBytes; q <= 0 {
		t.Fatalf("the client's socket took the whole %d-byte frame: nothing is queued, the test cannot half-write it here", hwBig)
	}

	var accepted []int // the small messages the hub took, in order
	refused := 0
	seq := 0
	sendSmall := func() hwSent {
		t.Helper()
		seq++
		got, err := send(hwSmallPayload(seq))
		if err != nil {
			t.Fatalf("small message %d: %v", seq, err)
		}
		switch got {
		case hwTaken:
			accepted = append(accepted, seq)
		case hwRefused:
			refused++
		}
		return got
	}

	maxLen := int64(hwBig)
	switch tc.end {
	case "":
		// The policy: small messages until the bound is hit.
		firstDrop := 0
		for {
			if seq == 1000 {
				t.Fatalf("1,000 messages of %d bytes sent and the bound never hit: %d bytes queued", hwSmall, h.Stats().QueuedBytes)
			}
			got := sendSmall()
			if got == hwClosed {
				t.Fatalf("small message %d: the connection is closed, before any policy acted (%d taken, %d refused)", seq, len(accepted), refused)
			}
			if tc.policy != SlowDropOldest {
				if got == hwRefused {
					break
				}
				continue
			}
			if firstDrop == 0 && dropped.Load() > 0 {
				firstDrop = seq
			}
			if firstDrop > 0 && got == hwTaken && seq >= firstDrop+3 {
				break
			}
		}
		switch tc.policy {
		case SlowClose:
			if got := sendSmall(); got != hwClosed {
				t.Errorf("after the slow-consumer close, a message was %v, want refused as closing (net.ErrClosed)", got)
			}
		case SlowDropNewest:
			// Not closed: refused again, or taken if the socket took
			// more of the large frame meanwhile (the kernel may open
			// its window), within the bound either way.
			if got := sendSmall(); got == hwClosed {
				t.Errorf("a second message after a drop was %v, want refused with ErrSlowConsumer or taken", got)
			}
			if q := h.Stats().QueuedBytes; q > hwQueue {
				t.Errorf("%d bytes queued, over the bound %d", q, hwQueue)
			}
		}
	default:
		// Two messages queued behind the large one, then the end.
		for range 2 {
			if got := sendSmall(); got != hwTaken {
				t.Fatalf("small message %d: %v", seq, got)
			}
		}
	}

	var shutdown, closed chan error
	switch tc.end {
	case "conn-close":
		if err := conn.Close(4000, "bye"); err != nil {
			t.Fatalf("Close: %v", err)
		}
	case "shutdown":
		shutdown = make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			shutdown <- h.Shutdown(ctx)
		}()
	case "hub-close":
		// It returns once the connection is closed, which needs nothing
		// of the client: then the large frame is the one it cut, if any.
		closed = make(chan error, 1)
		go func() { closed <- h.Close() }()
		select {
		case <-closed:
		case <-time.After(20 * time.Second):
			t.Fatal("Hub.Close did not return")
		}
	}

	// Now the client reads all it can, as fast as it can.
	tcp.SetReadBuffer(hwReadBuf)
	last := 0
	if len(accepted) > 0 {
		last = accepted[len(accepted)-1]
	}
	open := tc.policy == SlowDropNewest || tc.policy == SlowDropOldest
	var stop func(wireFrame) bool
	if open {
		// The connection stays open: read up to the last message taken.
		stop = func(f wireFrame) bool { return f.op == opBinary && hwSeq(f.payload) == last }
	}
	s := readWire(c, maxLen, stop)
	bigWhole, seqs := hwData(t, s)

	switch {
	case open:
		if s.err != nil || s.cut != nil || s.closed != nil || s.eof {
			t.Fatalf("stream: %v; want whole frames up to the last message taken, %d", s, last)
		}
		if !bigWhole {
			t.Fatal("the large frame did not come whole")
		}
		drops := int(dropped.Load())
		if tc.policy == SlowDropNewest {
			if !equalSeqs(seqs, accepted) {
				t.Errorf("small messages read %v, want those taken, %v", seqs, accepted)
			}
			if drops != refused || refused == 0 {
				t.Errorf("%d messages refused, %d drop events, want as many, at least 1", refused, drops)
			}
		} else {
			oldDropped := drops - refused
			if !increasingSubset(seqs, accepted) {
				t.Errorf("small messages read %v: not in order, or not among those taken %v", seqs, accepted)
			}
			if len(seqs) == 0 || seqs[len(seqs)-1] != last {
				t.Errorf("small messages read %v: the newest taken, %d, is missing", seqs, last)
			}
			if oldDropped < 1 || len(seqs) != len(accepted)-oldDropped {
				t.Errorf("%d taken, %d read, %d drop events of which %d for new messages refused: want the older queued frames dropped, %d read",
					len(accepted), len(seqs), drops, refused, len(accepted)-oldDropped)
			}
		}
		// The connection works: one more message, then a clean close.
		if got, err := send(hwSmallPayload(hwAfter)); got != hwTaken || err != nil {
			t.Fatalf("a message once the client had read everything: %v, %v", got, err)
		}
		s2 := readWire(c, maxLen, func(f wireFrame) bool { return f.op == opBinary })
		if s2.err != nil || len(s2.frames) == 0 || hwSeq(s2.frames[len(s2.frames)-1].payload) != hwAfter {
			seq := -1
			if len(s2.frames) > 0 {
				seq = hwSeq(s2.frames[len(s2.frames)-1].payload)
			}
			t.Fatalf("the message after, %d, did not come; message %d did: %v", hwAfter, seq, s2)
		}
		c.nc.Write(clientFrame(true, opClose, closeBody(CloseNormal, ""), true))
		expectEnd(t, readWire(c, maxLen, nil), CloseNormal, "")
		if e := rec.waitClosed(t).err; e.Code != CloseNormal {
			t.Errorf("OnClose got %v, want %d", e, CloseNormal)
		}

	case tc.policy == SlowClose && tc.end == "":
		expectEnd(t, s, ClosePolicyViolation, ReasonSlowConsumer)
		if !increasingSubset(seqs, accepted) {
			t.Errorf("small messages read %v: not in order, or not among those taken %v", seqs, accepted)
		}
		c.nc.Write(clientFrame(true, opClose, closeBody(ClosePolicyViolation, ""), true))
		if e := rec.waitClosed(t).err; e.Code != ClosePolicyViolation || e.Reason != ReasonSlowConsumer {
			t.Errorf("OnClose got %v, want %d %q", e, ClosePolicyViolation, ReasonSlowConsumer)
		}
		if n := slowClosed.Load(); n != 1 {
			t.Errorf("%d slow-consumer close events, want 1", n)
		}

	case tc.end == "conn-close", tc.end == "shutdown":
		code, reason := CloseCode(4000), "bye"
		if tc.end == "shutdown" {
			code, reason = CloseGoingAway, "server shutting down; retry after 1s"
		}
		expectEnd(t, s, code, reason)
		if !equalSeqs(seqs, accepted) {
			t.Errorf("small messages read %v, want those queued before the close, %v", seqs, accepted)
		}
		c.nc.Write(clientFrame(true, opClose, closeBody(code, ""), true))
		if e := rec.waitClosed(t).err; e.Code != code || e.Reason != reason {
			t.Errorf("OnClose got %v, want %d %q", e, code, reason)
		}
		if shutdown != nil {
			select {
			case err := <-shutdown:
				if err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Shutdown did not return")
			}
		}

	case tc.end == "hub-close":
		// Close ends connections at once: the frame in flight may be cut
		// there, with nothing written after, or finished, whole frames
		// and at most a close frame following.
		if s.err != nil {
			t.Fatalf("stream: %v", s)
		}
		switch {
		case s.cut != nil:
			if len(s.frames) > 0 || s.cut.length != hwBig {
				t.Errorf("the stream ended inside a frame other than the one in flight: %v after %d whole frames", *s.cut, len(s.frames))
			} else if d := diffAt(s.cut.payload, hwBigPayload()); d != "" {
				t.Errorf("the large frame, cut at byte %d of %d: its payload %s", len(s.cut.payload), hwBig, d)
			}
		case !bigWhole:
			t.Errorf("the large frame neither came whole nor was cut")
		case s.closed != nil:
			if p := s.closed.payload; len(p) < 2 || CloseCode(binary.BigEndian.Uint16(p)) != CloseGoingAway {
				t.Errorf("close frame % x, want %d", p, CloseGoingAway)
			}
		}
		if !increasingSubset(seqs, accepted) {
			t.Errorf("small messages read %v: not in order, or not among those taken %v", seqs, accepted)
		}
		if e := rec.waitClosed(t).err; e.Code != CloseGoingAway {
			t.Errorf("OnClose got %v, want %d", e, CloseGoingAway)
		}
	}
}

// TestHalfWrittenTooBig: a message whose frame is larger than
// MaxQueuedBytes is refused with ErrMessageTooBig, by a write and by a
// publish, before any of it is written, whatever the slow-consumer policy,
// and the connection goes on; one whose frame is exactly MaxQueuedBytes
// goes out whole (issue 23's first case: an 8 MiB echo, 4 MiB queue, and
// a close frame in the middle).
func TestHalfWrittenTooBig(t *testing.T) {
	t.Parallel()
	hwBigPayload()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, policy := range []SlowPolicy{SlowClose, SlowDropNewest, SlowDropOldest} {
				t.Run(policy.String(), func(t *testing.T) {
					t.Parallel()
					testTooBig(t, d, policy)
				})
			}
		})
	}
}

func testTooBig(t *testing.T, d door, policy SlowPolicy) {
	const queue = 4 << 20 // the default
	rec := newRecorder()
	opts := rec.options(false)
	opts.SlowConsumer = policy
	h, addr := startHub(t, opts, d)
	c, tcp := connectSmallBuffer(t, d, addr)
	var conn *Conn
	select {
	case conn = <-rec.opened:
	case <-time.After(10 * time.Second):
		t.Fatal("OnOpen was not called")
	}
	ch := h.Channel("too-big")
	if err := ch.Subscribe(conn); err != nil {
		t.Fatal(err)
	}
	big := hwBigPayload()
	if err := conn.WriteMessage(Binary, big); !errors.Is(err, ErrMessageTooBig) {
		t.Errorf("WriteMessage of %d bytes, MaxQueuedBytes %d: %v, want ErrMessageTooBig", len(big), queue, err)
	}
	if n, err := ch.Publish(Binary, big); n != 0 || !errors.Is(err, ErrMessageTooBig) {
		t.Errorf("Publish of %d bytes, MaxQueuedBytes %d: %d, %v, want 0, ErrMessageTooBig", len(big), queue, n, err)
	}
	// One byte over, then exactly the bound: 10 bytes of header.
	if err := conn.WriteMessage(Binary, big[:queue-9]); !errors.Is(err, ErrMessageTooBig) {
		t.Errorf("WriteMessage of a frame 1 byte over MaxQueuedBytes: %v, want ErrMessageTooBig", err)
	}
	if err := conn.WriteMessage(Binary, big[:queue-10]); err != nil {
		t.Errorf("WriteMessage of a frame of exactly MaxQueuedBytes: %v", err)
	}

	// The client reads from the first byte: the frame of exactly
	// MaxQueuedBytes, nothing before it. Then, with the queue
	// empty (a portable connection counts a frame in its blocking
	// write until the write returns), two more messages.
	tcp.SetReadBuffer(hwReadBuf)
	var frames []wireFrame
	s := readWire(c, hwBig, func(f wireFrame) bool { return f.op == opBinary })
	if s.err == nil && s.cut == nil && s.closed == nil && !s.eof {
		frames = append(frames, s.frames...)
		waitFor(t, func() bool { return h.Stats().QueuedBytes == 0 }) // the portable writer returned
		if n, err := ch.Publish(Binary, hwSmallPayload(1)); n != 1 || err != nil {
			t.Errorf("Publish after: %d, %v", n, err)
		}
		if err := conn.WriteMessage(Binary, hwSmallPayload(2)); err != nil {
			t.Errorf("WriteMessage after: %v", err)
		}
		s = readWire(c, hwBig, func(f wireFrame) bool { return hwSeq(f.payload) == 2 })
	}
	frames = append(frames, s.frames...)
	if s.err != nil || s.cut != nil || s.closed != nil || s.eof {
		t.Fatalf("stream (%d whole frames before): %v; want the frame of exactly MaxQueuedBytes, then messages 1 and 2", len(frames)-len(s.frames), s)
	}
	var got []string
	for _, f := range frames {
		switch {
		case f.op == opPing:
		case f.op == opBinary && len(f.payload) == queue-10 && diffAt(f.payload, big) == "":
			got = append(got, "bound")
		case f.op == opBinary && hwSeq(f.payload) > 0:
			got = append(got, strconv.Itoa(hwSeq(f.payload)))
		default:
			d := ""
			if f.op == opBinary {
				d = diffAt(f.payload, big)
			}
			got = append(got, fmt.Sprintf("%v %s", f, d))
		}
	}
	if fmt.Sprint(got) != "[bound 1 2]" {
		t.Errorf("frames read: %q, want the frame of exactly MaxQueuedBytes, then messages 1 and 2", got)
	}
	c.nc.Write(clientFrame(true, opClose, closeBody(CloseNormal, ""), true))
	expectEnd(t, readWire(c, hwBig, nil), CloseNormal, "")
	if e := rec.waitClosed(t).err; e.Code != CloseNormal {
		t.Errorf("OnClose got %v, want %d: the connection should have stayed usable", e, CloseNormal)
	}
}
