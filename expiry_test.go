package wshub

import (
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// expiryOptions returns options whose sweep runs every 100 ms (a quarter
// of CloseTimeout), with OnOpen giving each connection an expiry ttl away
// and onExpiring as OnExpiring.
func expiryOptions(rec *recorder, ttl time.Duration, onExpiring func(*Conn) time.Time) *Options {
	opts := rec.options(true)
	opts.CloseTimeout = 400 * time.Millisecond
	opts.ExpiryNotice = 200 * time.Millisecond
	opts.OnExpiring = onExpiring
	opts.OnOpen = func(c *Conn) {
		if err := c.SetExpiry(time.Now().Add(ttl)); err != nil {
			panic(err)
		}
		rec.opened <- c
	}
	return opts
}

func TestExpiryRefusedClosesWithUnauthorized(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			var asked atomic.Int32
			opts := expiryOptions(rec, 300*time.Millisecond, func(*Conn) time.Time {
				asked.Add(1)
				return time.Time{} // let it end
			})
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			<-rec.opened
			if got := h.Stats().Expiring; got != 1 {
				t.Errorf("Stats.Expiring %d, want 1", got)
			}
			if reason := c.expectClose(CloseUnauthorized); reason != ReasonExpired {
				t.Errorf("close reason %q, want %q", reason, ReasonExpired)
			}
			e := rec.waitClosed(t).err
			if e.Code != CloseUnauthorized || e.Reason != ReasonExpired || e.ByPeer {
				t.Errorf("OnClose got %+v, want 3000 %q by the hub", e, ReasonExpired)
			}
			if got := asked.Load(); got != 1 {
				t.Errorf("OnExpiring called %d times, want 1", got)
			}
			st := h.Stats()
			if st.Reasons[ReasonExpired] != 1 || st.Expiring != 0 || st.Extended != 0 {
				t.Errorf("Stats: Reasons[expired] %d, Expiring %d, Extended %d; want 1, 0, 0",
					st.Reasons[ReasonExpired], st.Expiring, st.Extended)
			}
		})
	}
}

func TestExpiryWithoutCallbackCloses(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := expiryOptions(rec, 100*time.Millisecond, nil)
	events := make(chan Event, 16)
	opts.OnEvent = func(e Event) { events <- e }
	_, addr := startHub(t, opts, doors[0])
	c := connect(t, addr)
	<-rec.opened
	c.expectClose(CloseUnauthorized)
	if e := <-events; e.Kind != EventClosed || e.Reason != ReasonExpired {
		t.Errorf("event %v %q, want closed %q", e.Kind, e.Reason, ReasonExpired)
	}
	rec.waitClosed(t)
}

func TestExpiryExtendedKeepsConnection(t *testing.T) {
	t.Parallel()
	for _, d := range []door{doors[0], doors[3], doors[7]} { // http, portable, wss:// on the loops
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			var asked atomic.Int32
			opts := expiryOptions(rec, 300*time.Millisecond, func(c *Conn) time.Time {
				if asked.Add(1) == 1 {
					return time.Now().Add(time.Hour) // a refreshed token
				}
				return time.Time{}
			})
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			<-rec.opened
			waitFor(t, func() bool { return h.Stats().Extended == 1 })
			// Well past the first expiry and a few sweeps: still served.
			time.Sleep(500 * time.Millisecond)
			c.write(text("still here"))
			c.expectMessage(opText, "still here")
			if got := asked.Load(); got != 1 {
				t.Errorf("OnExpiring called %d times, want 1 (the next notice is an hour away)", got)
			}
			if st := h.Stats(); st.Expiring != 1 || len(st.Reasons) != 0 {
				t.Errorf("Stats: Expiring %d, Reasons %v; want 1 and none", st.Expiring, st.Reasons)
			}
		})
	}
}

// TestExpiryRefreshedBySetExpiry is the flow where the client is asked
// for a fresh token: OnExpiring writes to it and returns nothing, and the
// answer, in OnMessage, sets the new expiry.
func TestExpiryRefreshedBySetExpiry(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := expiryOptions(rec, 300*time.Millisecond, func(c *Conn) time.Time {
		c.WriteMessage(Text, []byte("refresh"))
		return time.Time{}
	})
	opts.OnMessage = func(c *Conn, _ MessageType, data []byte) {
		if string(data) == "token" {
			c.SetExpiry(time.Now().Add(time.Hour))
			c.WriteMessage(Text, []byte("ok"))
		}
	}
	h, addr := startHub(t, opts, doors[1])
	c := connect(t, addr)
	<-rec.opened
	c.expectMessage(opText, "refresh")
	c.write(text("token"))
	c.expectMessage(opText, "ok")
	time.Sleep(500 * time.Millisecond) // past the first expiry
	c.write(text("token"))
	c.expectMessage(opText, "ok")
	if st := h.Stats(); st.Expiring != 1 || len(st.Reasons) != 0 {
		t.Errorf("Stats: Expiring %d, Reasons %v; want 1 and none", st.Expiring, st.Reasons)
	}
}

// TestExpiryRacingClose sets and clears expiries, some already past, from
// several goroutines while the connections are closed by the hub, by
// their peers and by expiry: no panic, every entry freed, every
// SetExpiry after the close refused.
func TestExpiryRacingClose(t *testing.T) {
	t.Parallel()
	for _, d := range []door{doors[0], doors[2]} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			const n = 40
			rec := newRecorder()
			opts := expiryOptions(rec, time.Hour, func(*Conn) time.Time {
				if rand.N(2) == 0 {
					return time.Now().Add(time.Millisecond) // extended, or not
				}
				return time.Time{}
			})
			opts.ExpiryNotice = time.Millisecond
			h, addr := startHub(t, opts, d)
			clients := make([]*client, n)
			conns := make([]*Conn, n)
			for i := range n {
				clients[i] = connect(t, addr)
				conns[i] = <-rec.opened
			}
			var wg sync.WaitGroup
			for i, c := range conns {
				wg.Go(func() {
					for j := 0; ; j++ {
						var err error
						switch j % 3 {
						case 0:
							err = c.SetExpiry(time.Now().Add(time.Duration(rand.N(50)-20) * time.Millisecond))
						case 1:
							err = c.SetExpiry(time.Time{})
						default:
							err = c.SetExpiry(time.Now().Add(time.Hour))
						}
						if err != nil {
							if !errors.Is(err, net.ErrClosed) {
								t.Errorf("SetExpiry: %v, want net.ErrClosed", err)
							}
							return
						}
						if j == 50 {
							switch i % 3 {
							case 0:
								c.Close(CloseNormal, "")
							case 1:
								clients[i].nc.Close()
							case 2:
								c.SetExpiry(time.Now().Add(-time.Second)) // the sweep ends it
								return
							}
						}
						runtime.Gosched()
					}
				})
			}
			for range n {
				rec.waitClosed(t)
			}
			wg.Wait()
			e := &h.p.expiries
			e.mu.Lock()
			left, indexed := len(e.heap), len(e.index)
			e.mu.Unlock()
			if left != 0 || indexed != 0 || e.n.Load() != 0 || h.Stats().Expiring != 0 {
				t.Errorf("after every close: %d entries, %d indexed, n %d, Expiring %d; want none",
					left, indexed, e.n.Load(), h.Stats().Expiring)
			}
		})
	}
}

// TestExpiryTableOrder checks the heap against a plain map under random
// sets, extensions and removals, sweeping as it goes.
func TestExpiryTableOrder(t *testing.T) {
	t.Parallel()
	h, err := New(&Options{portable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var e expiryTable
	conns := make([]Conn, 200)
	want := map[*Conn]int64{}
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 20000 {
		c := &conns[r.IntN(len(conns))]
		c.hub = h
		switch at := int64(r.IntN(1000)); r.IntN(4) {
		case 0, 1:
			e.set(c, at, at)
			want[c] = at
		case 2:
			if e.extend(c, at, at) {
				want[c] = at
			}
		case 3:
			e.remove(c)
			delete(want, c)
		}
		for i := range e.heap {
			if p := (i - 1) / 2; i > 0 && e.heap[p].next > e.heap[i].next {
				t.Fatalf("step %d: heap order broken at %d", step, i)
			}
			if e.index[e.heap[i].c] != int32(i) {
				t.Fatalf("step %d: index of %d is %d", step, i, e.index[e.heap[i].c])
			}
		}
		if len(e.heap) != len(want) || len(e.index) != len(want) || int(e.n.Load()) != len(want) {
			t.Fatalf("step %d: %d entries, %d indexed, want %d", step, len(e.heap), len(e.index), len(want))
		}
		for c, at := range want {
			if got := e.heap[e.index[c]].at; got != at {
				t.Fatalf("step %d: expiry %d, want %d", step, got, at)
			}
		}
	}
	for c := range want {
		e.remove(c)
	}
	if got := h.Stats().Expiring; got != 0 {
		t.Errorf("Stats.Expiring %d after removing all, want 0", got)
	}
}

// BenchmarkExpiryTableMemory measures what an expiry costs besides its
// connection: the table's heap entry and map entry, at 100,000
// connections.
func BenchmarkExpiryTableMemory(b *testing.B) {
	const n = 100_000
	h, err := New(&Options{portable: true})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for range b.N {
		conns := make([]Conn, n) // allocated before the measure starts
		for i := range conns {
			conns[i].hub = h
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		e := new(expiryTable)
		for i := range conns {
			e.set(&conns[i], int64(i), int64(i))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/expiry")
		runtime.KeepAlive(e)
		runtime.KeepAlive(conns)
		for i := range conns {
			e.remove(&conns[i])
		}
	}
}

func TestSetExpiryAfterCloseRefused(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	_, addr := startHub(t, rec.options(false), doors[0])
	c := connect(t, addr)
	conn := <-rec.opened
	c.nc.Close()
	rec.waitClosed(t)
	if err := conn.SetExpiry(time.Now().Add(time.Hour)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetExpiry after close: %v, want net.ErrClosed", err)
	}
	if n := conn.hub.p.expiries.n.Load(); n != 0 {
		t.Errorf("%d entries after a refused SetExpiry, want 0", n)
	}
}

// TestSyncExpiryTiming checks, on the bubble's fake clock, when OnExpiring
// is asked (ExpiryNotice before the expiry, within a sweep) and when the
// connection is closed (at the first sweep after its expiry).
func TestSyncExpiryTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		asked := make(chan time.Duration, 1)
		opts := &Options{
			PingInterval: -1, // the client does not answer pings
			OnOpen:       func(c *Conn) { c.SetExpiry(start.Add(time.Minute)) },
			OnExpiring: func(*Conn) time.Time {
				asked <- time.Since(start)
				return time.Time{}
			},
		}
		_, ln := startBubbleHub(t, opts)
		c := ln.connect(t)
		f, err := c.tryReadFrame(2 * time.Minute)
		closedAt := time.Since(start)
		if err != nil || f.op != opClose || string(f.payload) != string(closeBody(CloseUnauthorized, ReasonExpired)) {
			t.Fatalf("got op %d %q, %v; want close 3000 %q", f.op, f.payload, err, ReasonExpired)
		}
		// The sweep runs every second here (a quarter of CloseTimeout,
		// at most a second).
		if at := <-asked; at < 50*time.Second || at > 51*time.Second {
			t.Errorf("OnExpiring asked after %v, want 50 s (ExpiryNotice before the expiry) to 51 s", at)
		}
		if closedAt < time.Minute || closedAt > time.Minute+time.Second {
			t.Errorf("closed after %v, want 60 to 61 s", closedAt)
		}
		c.nc.Write(clientFrame(true, opClose, f.payload[:2], true))
		c.waitEOF(time.Minute)
	})
}

// TestSyncExpirySlowOnExpiring: an OnExpiring that takes 3 s holds up the
// next connection's notice, not its question: each connection is asked
// before it is closed, however late its turn came.
func TestSyncExpirySlowOnExpiring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		asked := make(map[*Conn]bool)
		var unasked []*Conn
		closed := make(chan struct{}, 2)
		opts := &Options{
			PingInterval: -1,
			OnOpen:       func(c *Conn) { c.SetExpiry(time.Now().Add(200 * time.Millisecond)) }, // within its notice
			OnExpiring: func(c *Conn) time.Time {
				time.Sleep(3 * time.Second)
				mu.Lock()
				asked[c] = true
				mu.Unlock()
				return time.Time{} // refused
			},
			OnClose: func(c *Conn, err *CloseError) {
				mu.Lock()
				if !asked[c] {
					unasked = append(unasked, c)
				}
				mu.Unlock()
				closed <- struct{}{}
			},
		}
		_, ln := startBubbleHub(t, opts)
		for _, c := range []*client{ln.connect(t), ln.connect(t)} {
			f, err := c.tryReadFrame(time.Minute)
			if err != nil || f.op != opClose || string(f.payload) != string(closeBody(CloseUnauthorized, ReasonExpired)) {
				t.Fatalf("got op %d %q, %v; want close 3000 %q", f.op, f.payload, err, ReasonExpired)
			}
			c.nc.Write(clientFrame(true, opClose, f.payload[:2], true))
		}
		for range 2 {
			<-closed
		}
		if len(unasked) > 0 {
			t.Fatalf("%d connection(s) closed for their expiry before OnExpiring was asked", len(unasked))
		}
	})
}
