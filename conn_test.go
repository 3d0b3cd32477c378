package wshub

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEchoThroughEveryDoor(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c := connect(t, addr)
			c.write(text("hello"))
			c.expectMessage(opText, "hello")
			c.write(clientFrame(true, opBinary, []byte{0, 1, 2, 255}, true))
			c.expectMessage(opBinary, "\x00\x01\x02\xff")
			big := strings.Repeat("0123456789", 20000) // 200 kB: many reads, a queued write
			c.write(text(big))
			c.expectMessage(opText, big)
			if m := rec.waitMessage(t); m.typ != Text || m.data != "hello" {
				t.Errorf("first OnMessage got %v %q, want text hello", m.typ, m.data)
			}
		})
	}
}

func TestFramesInTheHandshakePacket(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c := connect(t, addr, text("one"), text("two"))
			c.expectMessage(opText, "one")
			c.expectMessage(opText, "two")
		})
	}
}

func TestOneByteAtATime(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c := dial(t, addr)
			if tcp, ok := c.nc.(*net.TCPConn); ok {
				tcp.SetNoDelay(true)
			}
			stream := []byte(upgradeRequest(addr))
			stream = append(stream, clientFrame(false, opText, []byte("frag"), true)...)
			stream = append(stream, clientFrame(true, opPing, []byte("p"), true)...)
			stream = append(stream, clientFrame(true, opContinuation, []byte("mented"), true)...)
			for i := range stream {
				c.write(stream[i : i+1])
				if i%16 == 0 {
					time.Sleep(time.Millisecond) // let some bytes arrive alone
				}
			}
			if status := c.readResponse(); status != 101 {
				t.Fatalf("status %d, want 101", status)
			}
			c.expectMessage(opPong, "p")
			c.expectMessage(opText, "fragmented")
		})
	}
}

func TestFragmentedMessageWithPingBetween(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c := connect(t, addr)
			c.write(clientFrame(false, opBinary, []byte("a"), true))
			c.write(clientFrame(true, opPing, []byte("are you there"), true))
			c.expectMessage(opPong, "are you there")
			c.write(clientFrame(false, opContinuation, []byte("b"), true))
			c.write(clientFrame(true, opContinuation, []byte("c"), true))
			c.expectMessage(opBinary, "abc")
		})
	}
}

// TestProtocolViolations checks each way a client can break RFC 6455 gets
// the right close code, through every door.
func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	huge := []byte{0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4} // 2^62 bytes, masked
	cases := []struct {
		name  string
		input [][]byte
		want  CloseCode
	}{
		{"ping over 125 bytes", [][]byte{clientFrame(true, opPing, make([]byte, 126), true)}, CloseProtocolError},
		{"unmasked frame", [][]byte{clientFrame(true, opText, []byte("hi"), false)}, CloseProtocolError},
		{"unmasked ping", [][]byte{clientFrame(true, opPing, []byte("abc"), false), text("after")}, CloseProtocolError},
		{"reserved bit", [][]byte{func() []byte { f := text("hi"); f[0] |= 0x40; return f }()}, CloseProtocolError},
		{"reserved opcode", [][]byte{clientFrame(true, 0x3, []byte("hi"), true)}, CloseProtocolError},
		{"reserved control opcode", [][]byte{clientFrame(true, 0xb, nil, true)}, CloseProtocolError},
		{"fragmented ping", [][]byte{clientFrame(false, opPing, nil, true)}, CloseProtocolError},
		{"continuation first", [][]byte{clientFrame(true, opContinuation, []byte("x"), true)}, CloseProtocolError},
		{"message inside a message", [][]byte{clientFrame(false, opText, []byte("x"), true), text("y")}, CloseProtocolError},
		{"invalid utf-8", [][]byte{text("\xff\xfe")}, CloseInvalidPayload},
		{"invalid utf-8 across fragments", [][]byte{
			clientFrame(false, opText, []byte("ok \xe2\x82"), true),
			clientFrame(true, opContinuation, []byte("\x28"), true),
		}, CloseInvalidPayload},
		{"invalid utf-8 in a first fragment", [][]byte{clientFrame(false, opText, []byte("ok \xff"), true)}, CloseInvalidPayload},
		{"utf-8 cut where nothing can complete it", [][]byte{clientFrame(false, opText, []byte("ok \xed\xa0"), true)}, CloseInvalidPayload},
		{"16-bit length for 5 bytes", [][]byte{{0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'}}, CloseProtocolError},
		{"64-bit length for 200 bytes", [][]byte{append([]byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4}, make([]byte, 200)...)}, CloseProtocolError},
		{"header declares 2^62 bytes", [][]byte{huge}, CloseMessageTooBig},
		{"message over the limit", [][]byte{text(strings.Repeat("x", 2049))}, CloseMessageTooBig},
		{"fragments over the limit", [][]byte{
			clientFrame(false, opText, make([]byte, 1500), true),
			clientFrame(true, opContinuation, make([]byte, 600), true),
		}, CloseMessageTooBig},
		{"close with one byte", [][]byte{clientFrame(true, opClose, []byte{3}, true)}, CloseProtocolError},
		{"close code 1005 on the wire", [][]byte{clientFrame(true, opClose, closeBody(1005, ""), true)}, CloseProtocolError},
		{"close code 2999", [][]byte{clientFrame(true, opClose, closeBody(2999, ""), true)}, CloseProtocolError},
		{"close reason not utf-8", [][]byte{clientFrame(true, opClose, closeBody(1000, "\xff"), true)}, CloseInvalidPayload},
	}
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					rec := newRecorder()
					opts := rec.options(false)
					opts.MaxMessageSize = 2048
					// The close must complete when the peer answers and
					// hangs up, not when the timeout gives up on it.
					opts.CloseTimeout = time.Minute
					_, addr := startHub(t, opts, d)
					c := connect(t, addr)
					for _, in := range tc.input {
						c.write(in)
					}
					c.expectClose(tc.want)
					if got := rec.waitClosed(t).err.Code; got != tc.want {
						t.Errorf("OnClose code %d, want %d", got, tc.want)
					}
					// Again a byte at a time, so that every header and
					// control frame is cut and completed across reads.
					c = connect(t, addr)
					for _, in := range tc.input {
						for i := range in {
							c.write(in[i : i+1])
						}
					}
					c.expectClose(tc.want)
					if got := rec.waitClosed(t).err.Code; got != tc.want {
						t.Errorf("OnClose code %d, want %d", got, tc.want)
					}
					if len(rec.messages) != 0 {
						t.Errorf("OnMessage was called %d times, want 0", len(rec.messages))
					}
				})
			}
		})
	}
}

func TestValidUTF8SplitAcrossFragments(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	_, addr := startHub(t, rec.options(true), doors[0])
	c := connect(t, addr)
	euro := "\xe2\x82\xac" // €, split after its first byte
	c.write(clientFrame(false, opText, []byte("price "+euro[:1]), true))
	c.write(clientFrame(true, opContinuation, []byte(euro[1:]+"5"), true))
	c.expectMessage(opText, "price €5")
}

func TestCloseHandshake(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name+"/client first", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(true), d)
			c := connect(t, addr)
			c.write(text("before"))
			c.write(clientFrame(true, opClose, closeBody(4001, "done here"), true))
			c.expectMessage(opText, "before")
			f := c.readFrame()
			if f.op != opClose || binary.BigEndian.Uint16(f.payload) != 4001 {
				t.Fatalf("got op %d %q, want close 4001 echoed", f.op, f.payload)
			}
			c.expectEOF()
			got := rec.waitClosed(t).err
			if got.Code != 4001 || got.Reason != "done here" {
				t.Errorf("OnClose got %v, want 4001 done here", got)
			}
		})
		t.Run(d.name+"/server first", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(false), d)
			c := connect(t, addr)
			conn := <-rec.opened
			if err := conn.WriteMessage(Text, []byte("last words")); err != nil {
				t.Fatal(err)
			}
			if err := conn.Close(4000, "bye"); err != nil {
				t.Fatal(err)
			}
			if err := conn.WriteMessage(Text, []byte("too late")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write after Close returned %v, want net.ErrClosed", err)
			}
			if err := conn.Close(4000, "again"); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close returned %v, want net.ErrClosed", err)
			}
			c.expectMessage(opText, "last words") // queued data goes before the close frame
			if reason := c.expectClose(4000); reason != "bye" {
				t.Errorf("close reason %q, want bye", reason)
			}
			got := rec.waitClosed(t).err
			if got.Code != 4000 || got.Reason != "bye" {
				t.Errorf("OnClose got %v, want 4000 bye", got)
			}
		})
	}
}

func TestCloseWithoutAnswerEndsAtCloseTimeout(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.CloseTimeout = 200 * time.Millisecond
	_, addr := startHub(t, opts, doors[1])
	c := connect(t, addr)
	conn := <-rec.opened
	start := time.Now()
	conn.Close(CloseNormal, "")
	// The client reads the close frame but never answers.
	if f := c.readFrame(); f.op != opClose {
		t.Fatalf("got op %d, want close", f.op)
	}
	rec.waitClosed(t)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before CloseTimeout", d)
	}
}

func TestLostConnectionReportsAbnormal(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			_, addr := startHub(t, rec.options(false), d)
			c := connect(t, addr)
			<-rec.opened
			c.nc.Close()
			if got := rec.waitClosed(t).err.Code; got != CloseAbnormal {
				t.Errorf("OnClose code %d, want %d", got, CloseAbnormal)
			}
		})
	}
}

// TestStalledClientClosedWhileOthersEcho: a client that stops mid-frame is
// closed at ReadTimeout, and one that stops mid-request at HandshakeTimeout,
// while 1,000 other clients keep echoing.
func TestStalledClientClosedWhileOthersEcho(t *testing.T) {
	t.Parallel()
	const clients, rounds = 1000, 5
	rec := newRecorder()
	opts := &Options{
		ReadTimeout:      300 * time.Millisecond,
		HandshakeTimeout: 2 * time.Second, // the 1,000 must upgrade within it, on a loaded machine too
		OnMessage:        func(c *Conn, typ MessageType, p []byte) { c.WriteMessage(typ, p) },
		OnClose:          func(c *Conn, err *CloseError) { rec.closed <- closed{c, err} },
	}
	_, addr := startHub(t, opts, doors[1])

	stalled := connect(t, addr)
	start := time.Now()
	frame := text("this frame never ends")
	stalled.write(frame[:8])
	halfUpgraded := dial(t, addr)
	halfUpgraded.write([]byte(upgradeRequest(addr))[:40])

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connect(t, addr)
			for r := range rounds {
				msg := []byte(strings.Repeat("x", i%50) + string(rune('a'+r)))
				if _, err := c.nc.Write(text(string(msg))); err != nil {
					errs <- err
					return
				}
				f, err := c.tryReadFrame(20 * time.Second)
				if err != nil || !bytes.Equal(f.payload, msg) {
					errs <- fmt.Errorf("echo failed: %v, got op %d %q want %q", err, f.op, f.payload, msg)
					return
				}
			}
			c.nc.Close()
		}()
	}

	code := stalled.expectClose(ClosePolicyViolation)
	elapsed := time.Since(start)
	if elapsed < 250*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("stalled client closed after %v, want about 300ms", elapsed)
	}
	_ = code
	halfUpgraded.expectEOF()
	if elapsed := time.Since(start); elapsed < 1900*time.Millisecond || elapsed > 8*time.Second {
		t.Errorf("half-sent upgrade request closed after %v, want about 2s", elapsed)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestReadTimeoutProgress: ReadTimeout bounds a message's time without
// progress, not its whole time. An upload that keeps gaining 16 KiB within
// each ReadTimeout completes however long it takes; one that trickles, or
// sends only pings and empty-handed time, is closed with "read timeout".
func TestReadTimeoutProgress(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.ReadTimeout = timeout
			h, addr := startHub(t, opts, d)

			// 128 KiB in 8 KiB fragments every 250 ms: 16 KiB per 500 ms,
			// 4 s in all, four times ReadTimeout.
			up := connect(t, addr)
			<-rec.opened
			chunk := bytes.Repeat([]byte("u"), 8<<10)
			for i := range 16 {
				op := byte(opContinuation)
				if i == 0 {
					op = opBinary
				}
				up.write(clientFrame(i == 15, op, chunk, true))
				time.Sleep(timeout / 4)
			}
			if m := rec.waitMessage(t); len(m.data) != 16*len(chunk) {
				t.Fatalf("got a message of %d bytes, want %d", len(m.data), 16*len(chunk))
			}

			// 64 bytes every 100 ms, with a ping between: 640 B/s.
			slow := connect(t, addr)
			<-rec.opened
			start := time.Now()
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					op := byte(opContinuation)
					if i == 0 {
						op = opText
					}
					f := append(clientFrame(false, op, chunk[:64], true), clientFrame(true, opPing, nil, true)...)
					if _, err := slow.nc.Write(f); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(timeout / 10):
					}
				}
			}()
			reason := ReasonReadTimeout
			if d.portable {
				// The close frame of a kill is best effort, written only
				// where a write cannot block the hub (see killLocked).
				slow.expectEOF()
			} else {
				reason = slow.expectClose(ClosePolicyViolation)
			}
			close(stop)
			<-done
			if took := time.Since(start); reason != ReasonReadTimeout || took < timeout*9/10 || took > 5*timeout {
				t.Errorf("trickling peer closed with %q after %v, want %q after about %v", reason, took, ReasonReadTimeout, timeout)
			}
			waitFor(t, func() bool { return h.Stats().Reasons[ReasonReadTimeout] == 1 })
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		if !d.own {
			continue // net/http enforces its own ReadHeaderTimeout
		}
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, &Options{HandshakeTimeout: 200 * time.Millisecond}, d)
			c := dial(t, addr)
			start := time.Now()
			c.write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n"))
			c.expectEOF()
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Errorf("closed after %v, before the timeout", d)
			}
			waitFor(t, func() bool { return h.Len() == 0 })
		})
	}
}

func TestSlowConsumerIsClosed(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 64 << 10
			_, addr := startHub(t, opts, d)
			connect(t, addr) // never reads
			conn := <-rec.opened
			chunk := make([]byte, 16<<10)
			var err error
			for i := 0; i < 10000 && err == nil; i++ {
				err = conn.WriteMessage(Binary, chunk)
				if q := conn.queued(); q > opts.MaxQueuedBytes {
					t.Fatalf("queued %d bytes, bound is %d", q, opts.MaxQueuedBytes)
				}
			}
			if !errors.Is(err, ErrSlowConsumer) {
				t.Fatalf("writes ended with %v, want ErrSlowConsumer", err)
			}
			if got := rec.waitClosed(t).err.Code; got != ClosePolicyViolation {
				t.Errorf("OnClose code %d, want %d", got, ClosePolicyViolation)
			}
		})
	}
}

func (c *Conn) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queuedLocked()
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	waitForWithin(t, 10*time.Second, cond)
}

// waitForWithin is waitFor for conditions that take long on a loaded
// machine, such as a flood draining through the inbound budget.
func waitForWithin(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseErrorByPeer: OnClose tells a close the peer started from one the
// hub started, whatever the codes.
func TestCloseErrorByPeer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		end    func(c *client, conn *Conn)
		code   CloseCode
		byPeer bool
	}{
		{"peer close frame", func(c *client, _ *Conn) {
			c.write(clientFrame(true, opClose, closeBody(CloseNormal, "bye"), true))
			c.expectClose(CloseNormal)
		}, CloseNormal, true},
		{"peer drops the connection", func(c *client, _ *Conn) { c.nc.Close() }, CloseAbnormal, true},
		{"hub closes, peer answers", func(c *client, conn *Conn) {
			conn.Close(CloseNormal, "done")
			c.expectClose(CloseNormal)
		}, CloseNormal, false},
		{"peer breaks the protocol", func(c *client, _ *Conn) {
			c.write(clientFrame(true, opText, []byte("unmasked"), false))
			c.expectClose(CloseProtocolError)
		}, CloseProtocolError, false},
	}
	for _, d := range []door{doors[0], doors[1], doors[2], doors[6]} {
		for _, tc := range cases {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				rec := newRecorder()
				_, addr := startHub(t, rec.options(false), d)
				c := connect(t, addr)
				tc.end(c, <-rec.opened)
				e := rec.waitClosed(t).err
				if e.Code != tc.code || e.ByPeer != tc.byPeer {
					t.Errorf("OnClose got code %d ByPeer %v (%q), want %d ByPeer %v", e.Code, e.ByPeer, e.Reason, tc.code, tc.byPeer)
				}
			})
		}
	}
}

// TestPeerCloseAnsweredBeforeBacklog: a peer that closes while megabytes
// are queued for it gets its answer after at most what is already on the
// wire, not after the backlog (RFC 6455 5.5.1), and the messages dropped
// are counted. Whatever it receives parses as whole frames.
func TestPeerCloseAnsweredBeforeBacklog(t *testing.T) {
	t.Parallel()
	const size, count = 32 << 10, 512 // 16 MiB queued
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 64 << 20
			msg := bytes.Repeat([]byte("b"), size)
			opts.OnOpen = func(c *Conn) {
				for range count {
					if err := c.WriteMessage(Binary, msg); err != nil {
						t.Errorf("WriteMessage: %v", err)
						return
					}
				}
				rec.opened <- c
			}
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			<-rec.opened
			c.write(clientFrame(true, opClose, closeBody(CloseGoingAway, "leaving"), true))
			// A slow reader: the hub sees the close while its socket is
			// full. (One that reads as fast as the hub encrypts keeps a
			// wss:// flush going, and the close is read when it ends.)
			time.Sleep(200 * time.Millisecond)
			got := 0
			for {
				f, err := c.tryReadFrame(10 * time.Second)
				if err != nil {
					t.Fatalf("after %d bytes of messages: %v", got, err)
				}
				if f.op == opClose {
					if code := CloseCode(binary.BigEndian.Uint16(f.payload)); code != CloseGoingAway {
						t.Errorf("close answer %d, want %d", code, CloseGoingAway)
					}
					break
				}
				if f.op != opBinary || !f.fin || len(f.payload) != size {
					t.Fatalf("frame op %d fin %v of %d bytes, want whole %d-byte messages", f.op, f.fin, len(f.payload), size)
				}
				got += len(f.payload)
			}
			if got > count*size/2 {
				t.Errorf("%d of %d bytes of messages came before the close answer, want at most what the socket buffers held", got, count*size)
			}
			e := rec.waitClosed(t).err
			if e.Code != CloseGoingAway || !e.ByPeer {
				t.Errorf("OnClose %d ByPeer %v, want %d by the peer", e.Code, e.ByPeer, CloseGoingAway)
			}
			if st := h.Stats(); st.Dropped == 0 || int(st.Dropped)+got/size > count {
				t.Errorf("Stats.Dropped %d with %d received, of %d", st.Dropped, got/size, count)
			}
			t.Logf("%d of %d messages received before the close answer, %d dropped", got/size, count, h.Stats().Dropped)
		})
	}
}
