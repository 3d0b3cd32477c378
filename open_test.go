package wshub

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOnOpenBeforeUpgradeAnswer: the 101 leaves only once OnOpen has
// returned, so a client that joins a room in OnOpen gets every message
// published to the room after its dial returned, and what OnOpen writes
// comes first. A publisher keeps publishing numbered messages while
// clients upgrade, on every door, with an OnOpen slow enough that an
// answer sent before it would open a window of several publishes.
func TestOnOpenBeforeUpgradeAnswer(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, &Options{
				OnOpen: func(c *Conn) {
					c.WriteMessage(Text, []byte("welcome"))
					time.Sleep(20 * time.Millisecond)
					h := c.Hub()
					h.Channel("room").Subscribe(c)
				},
			}, d)

			var last atomic.Uint64 // the number of the latest publish begun
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				var b [8]byte
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					binary.BigEndian.PutUint64(b[:], last.Add(1))
					h.Channel("room").Publish(Binary, b[:])
				}
			}()
			defer func() { close(stop); wg.Wait() }()

			const clients, follow = 8, 20
			var cwg sync.WaitGroup
			for range clients {
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					c := connect(t, addr)
					after := last.Load() // every later publish must arrive
					f, err := c.tryReadFrame(10 * time.Second)
					if err != nil || f.op != opText || string(f.payload) != "welcome" {
						t.Errorf("first frame op %d %q (%v), want OnOpen's welcome", f.op, f.payload, err)
						return
					}
					want := uint64(0)
					for want == 0 || want <= after+follow {
						f, err := c.tryReadFrame(10 * time.Second)
						if err != nil {
							t.Errorf("reading publishes: %v", err)
							return
						}
						n := binary.BigEndian.Uint64(f.payload)
						switch {
						case want == 0 && n <= after:
							continue // published before the dial returned: may or may not come
						case want == 0 && n != after+1:
							t.Errorf("dial returned after publish %d; the first publish received after it is %d: missed %d", after, n, n-after-1)
							return
						case want != 0 && n != want:
							t.Errorf("got publish %d, want %d", n, want)
							return
						}
						want = n + 1
					}
				}()
			}
			cwg.Wait()
		})
	}
}

// TestOnOpenWritesHaveTheWholeBound: what OnOpen writes waits behind the
// held 101, which does not count against MaxQueuedBytes: a frame of
// exactly the bound goes out.
func TestOnOpenWritesHaveTheWholeBound(t *testing.T) {
	t.Parallel()
	const bound = 64 << 10
	payload := make([]byte, bound-4) // a 4-byte header: the frame is the bound
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			errs := make(chan error, 1)
			_, addr := startHub(t, &Options{
				MaxQueuedBytes: bound,
				OnOpen:         func(c *Conn) { errs <- c.WriteMessage(Binary, payload) },
			}, d)
			c := connect(t, addr)
			if err := <-errs; err != nil {
				t.Fatalf("OnOpen's WriteMessage of a %d-byte frame = %v, want it sent", bound, err)
			}
			c.expectMessage(opBinary, string(payload))
		})
	}
}

// TestHubCloseDuringOnOpen: a hub closed while a connection's OnOpen runs
// still sends that client its 101 and a 1001 close frame, not a bare EOF.
func TestHubCloseDuringOnOpen(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		if d.portable {
			continue // a kill's close frame is best effort, written only on the netpoll path
		}
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			inOpen := make(chan struct{})
			h, addr := startHub(t, &Options{
				OnOpen: func(c *Conn) {
					close(inOpen)
					// Hub.Close waits for OnOpen: return once it killed c.
					for deadline := time.Now().Add(10 * time.Second); c.state.Load() == connOpen && time.Now().Before(deadline); {
						time.Sleep(time.Millisecond)
					}
				},
			}, d)
			c := dial(t, addr)
			c.write([]byte(upgradeRequest(addr)))
			<-inOpen
			done := make(chan struct{})
			go func() {
				h.Close()
				close(done)
			}()
			if status := c.readResponse(); status != 101 {
				t.Fatalf("status %d, want 101", status)
			}
			c.expectClose(CloseGoingAway)
			<-done
		})
	}
}
