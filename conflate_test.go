package wshub

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestConflate publishes a latest-value feed to a member that does not
// read: its queue keeps only the feed's newest message, while another
// channel's messages all stay, and what it gets is in publish order.
func TestConflate(t *testing.T) {
	t.Parallel()
	for _, d := range []door{doors[1], doors[0], doors[2], doors[3]} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.ChannelPolicy = func(name string) SlowPolicy {
				if name == "price" {
					return SlowConflate
				}
				return SlowDropNewest
			}
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			conn := <-rec.opened
			// A send buffer that does not grow: once the member is
			// behind, it stays behind, as a slow one does.
			fixSendBuffer(conn, 16384)
			h.Channel("price").Subscribe(conn)
			h.Channel("news").Subscribe(conn)
			fills := stall(t, h, conn, "news")
			for i := range 1000 {
				h.Channel("price").Publish(Text, fmt.Appendf(nil, "p%d", i))
				if i%100 == 0 {
					h.Channel("news").Publish(Text, fmt.Appendf(nil, "n%d", i/100))
				}
			}
			// Read it all: the fillers, then news in order with at most a
			// price or two between, the last price last.
			for range fills {
				if f := c.readFrame(); string(f.payload) != filler {
					t.Fatalf("got %.20q, want a filler", f.payload)
				}
			}
			var got []string
			for {
				f, err := c.tryReadFrame(300 * time.Millisecond)
				if err != nil {
					break
				}
				got = append(got, string(f.payload))
			}
			// Each message carries its publish number: prices p0-p999,
			// news n0-n9 published after p0, p100, ... p900.
			news, prices, lastPrice := 0, 0, -1
			for _, m := range got {
				var k int
				fmt.Sscan(m[1:], &k)
				switch m[0] {
				case 'n':
					if k != news || lastPrice >= 100*k+1 {
						t.Fatalf("%q out of publish order in %q", m, got)
					}
					news++
				case 'p':
					if k <= lastPrice || news > 0 && k < 100*(news-1) {
						t.Fatalf("%q out of publish order in %q", m, got)
					}
					prices, lastPrice = prices+1, k
				}
			}
			if news != 10 || got[len(got)-1] != "p999" || prices > 100 {
				t.Errorf("%d news, %d prices, last %q; want 10 news, few prices, p999 last: %q", news, prices, got[len(got)-1], got)
			}
			if st := h.Stats(); st.Conflated < 900 {
				t.Errorf("Stats.Conflated %d", st.Conflated)
			}
		})
	}
}

// TestConflateSparesMembersThatKeepUp publishes bursts to members that
// read: a message waiting a moment for its loop's flush, or behind a
// portable writer's batch, is not a backlog, so each gets every message,
// in order, and nothing is conflated.
func TestConflateSparesMembersThatKeepUp(t *testing.T) {
	t.Parallel()
	for _, d := range []door{doors[1], doors[0], doors[2], doors[3]} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.ChannelPolicy = func(string) SlowPolicy { return SlowConflate }
			h, addr := startHub(t, opts, d)
			const burst = 500
			var batch [][]byte
			for i := range burst {
				batch = append(batch, fmt.Appendf(nil, "p%d", i))
			}
			// One member, then twenty: a batch of 500 frames at once for
			// one is more than a portable writer takes in one write.
			for _, members := range []int{1, 20} {
				ch := h.Channel(fmt.Sprint("price", members))
				var clients []*client
				for range members {
					c := connect(t, addr)
					ch.Subscribe(<-rec.opened)
					clients = append(clients, c)
				}
				done := make(chan error, len(clients))
				for _, c := range clients {
					go func() {
						for i := range 2 * burst {
							f, err := c.tryReadFrame(10 * time.Second)
							if err != nil || string(f.payload) != fmt.Sprint("p", i%burst) {
								done <- fmt.Errorf("%d members, message %d: got %q, %v", members, i, f.payload, err)
								return
							}
						}
						done <- nil
					}()
				}
				ch.PublishBatch(Text, batch, PublishOptions{})
				for _, m := range batch { // and one by one
					ch.Publish(Text, m)
				}
				for range clients {
					if err := <-done; err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := h.Stats().Conflated; n != 0 {
				t.Errorf("%d messages conflated for members that keep up", n)
			}
		})
	}
}

// filler is what stall publishes.
var filler = strings.Repeat("x", 1000)

// stall publishes fillers to channel, of which conn is the only member,
// until conn has a backlog that its socket did not take: a member that
// cannot keep up. It returns how many were queued.
func stall(t *testing.T, h *Hub, conn *Conn, channel string) (fills int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !conn.stalled(); {
		if time.Now().After(deadline) {
			t.Fatal("no backlog")
		}
		if h.Stats().QueuedBytes > int64(h.opts.MaxQueuedBytes/4) {
			// Far from the queue's bound, which would drop fillers:
			// wait for the loop to find the socket full (or, portable,
			// its write to block).
			time.Sleep(time.Millisecond)
			continue
		}
		if n, _ := h.Channel(channel).Publish(Text, []byte(filler)); n == 1 {
			fills++
		}
	}
	return fills
}

// TestConflateKeepsTheBound: a newer value larger than the one it would
// replace takes its place only within MaxQueuedBytes; past it the newer
// one is dropped, as any message past the bound.
func TestConflateKeepsTheBound(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.MaxQueuedBytes = 64 << 10
	opts.ChannelPolicy = func(name string) SlowPolicy {
		if name == "price" {
			return SlowConflate
		}
		return SlowDropNewest
	}
	h, addr := startHub(t, opts, doors[1])
	connect(t, addr)
	conn := <-rec.opened
	fixSendBuffer(conn, 16384)
	h.Channel("price").Subscribe(conn)
	h.Channel("news").Subscribe(conn)
	stall(t, h, conn, "news")
	h.Channel("price").Publish(Text, []byte("p0"))
	for { // the queue full to within a filler of its bound
		if n, _ := h.Channel("news").Publish(Text, []byte(filler)); n == 0 {
			break
		}
	}
	before := h.Stats().Conflated
	h.Channel("price").Publish(Text, make([]byte, 8<<10)) // p0's place, 8 KiB more
	conn.mu.Lock()
	queued := conn.queuedLocked()
	conn.mu.Unlock()
	if queued > opts.MaxQueuedBytes || h.Stats().Conflated != before {
		t.Fatalf("%d bytes queued, bound %d; %d conflated", queued, opts.MaxQueuedBytes, h.Stats().Conflated-before)
	}
	h.Channel("price").Publish(Text, []byte("p2")) // as small: it takes p0's place
	if h.Stats().Conflated != before+1 {
		t.Fatalf("a value as small did not take the older's place")
	}
}

// stalled reports whether c's queue is one its socket did not take.
func (c *Conn) stalled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.behindLocked()
}
