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
	for _, d := range []door{doors[1], doors[0]} {
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
			// Fill the sockets until the member has a backlog that its
			// socket did not take: a member that cannot keep up.
			filler := strings.Repeat("x", 1000)
			fills := 0
			for deadline := time.Now().Add(10 * time.Second); !conn.stalled(); {
				if time.Now().After(deadline) {
					t.Fatal("no backlog")
				}
				if h.Stats().QueuedBytes > 256<<10 {
					// Far from the queue's bound, which would drop news:
					// wait for the loop to find the socket full.
					time.Sleep(time.Millisecond)
					continue
				}
				if n, _ := h.Channel("news").Publish(Text, []byte(filler)); n == 1 {
					fills++
				}
			}
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

// TestConflateSparesMembersThatKeepUp publishes a burst to members that
// read: a message waiting a moment for its loop's flush is not a backlog,
// so each gets every message, in order, and nothing is conflated.
func TestConflateSparesMembersThatKeepUp(t *testing.T) {
	t.Parallel()
	for _, d := range []door{doors[1], doors[0]} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.ChannelPolicy = func(string) SlowPolicy { return SlowConflate }
			h, addr := startHub(t, opts, d)
			var clients []*client
			for range 20 {
				c := connect(t, addr)
				h.Channel("price").Subscribe(<-rec.opened)
				clients = append(clients, c)
			}
			const burst = 500
			done := make(chan error, len(clients))
			for _, c := range clients {
				go func() {
					for i := range burst {
						f, err := c.tryReadFrame(10 * time.Second)
						if err != nil || string(f.payload) != fmt.Sprint("p", i) {
							done <- fmt.Errorf("message %d: got %q, %v", i, f.payload, err)
							return
						}
					}
					done <- nil
				}()
			}
			for i := range burst {
				h.Channel("price").Publish(Text, fmt.Appendf(nil, "p%d", i))
			}
			for range clients {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			if n := h.Stats().Conflated; n != 0 {
				t.Errorf("%d messages conflated for members that keep up", n)
			}
		})
	}
}

// stalled reports whether c's queue is one its socket did not take.
func (c *Conn) stalled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out != nil && c.out.stalled
}
