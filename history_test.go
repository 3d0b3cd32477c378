package wshub

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// historyHub starts a hub whose channels keep limits, stamped "OFFSET EPOCH
// text", and returns it with a function that connects a new client and its
// Conn.
func historyHub(t *testing.T, limits History, tune func(*Options)) (*Hub, func() (*client, *Conn)) {
	t.Helper()
	rec := newRecorder()
	opts := rec.options(false)
	log := new(stampLog)
	limits.Stamp = log.stamp
	opts.ChannelHistory = func(string) History { return limits }
	if tune != nil {
		tune(opts)
	}
	h, addr := startHub(t, opts, doors[1])
	stampLogs.Store(h, log)
	t.Cleanup(func() { stampLogs.Delete(h) })
	join := func() (*client, *Conn) {
		c := connect(t, addr)
		return c, <-rec.opened
	}
	return h, join
}

// A stampLog is a History.Stamp that writes "OFFSET EPOCH text" and
// remembers the last position it stamped.
type stampLog struct {
	mu   sync.Mutex
	last Position
}

// stampLogs maps each hub of historyHub to its stampLog.
var stampLogs sync.Map

func (l *stampLog) stamp(p Position, data []byte) []byte {
	l.mu.Lock()
	l.last = p
	l.mu.Unlock()
	return fmt.Appendf(nil, "%d %s %s", p.Offset, p.Epoch, data)
}

// numbered publishes text to the channel of a historyHub, which members
// get as "OFFSET EPOCH text", and returns the position it got.
func numbered(t *testing.T, ch *Channel, text string) Position {
	t.Helper()
	if _, err := ch.Publish(Text, []byte(text)); err != nil {
		t.Fatal(err)
	}
	v, _ := stampLogs.Load(ch.hub)
	l := v.(*stampLog)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func TestRecoverSendsWhatWasMissedThenLive(t *testing.T) {
	t.Parallel()
	h, join := historyHub(t, History{Messages: 100}, nil)
	ch := h.Channel("room")
	var positions []Position
	for i := range 5 {
		positions = append(positions, numbered(t, ch, fmt.Sprint("m", i))) // no member yet: kept all the same
	}
	if positions[0].Offset != 1 || positions[4].Offset != 5 || positions[0].Epoch == "" || positions[4].Epoch != positions[0].Epoch {
		t.Fatalf("positions %v", positions)
	}
	c, conn := join()
	latest, err := ch.Recover(conn, positions[1], 10)
	if err != nil || latest != positions[4] {
		t.Fatalf("Recover = %v, %v; want %v, nil", latest, err, positions[4])
	}
	e := positions[0].Epoch
	for i := 2; i < 5; i++ {
		c.expectMessage(opText, fmt.Sprintf("%d %s m%d", i+1, e, i))
	}
	numbered(t, ch, "live")
	c.expectMessage(opText, "6 "+e+" live")
	// Up to date: nothing to send, recovered.
	c2, conn2 := join()
	if _, err := ch.Recover(conn2, Position{Offset: 6, Epoch: e}, 10); err != nil {
		t.Fatal(err)
	}
	numbered(t, ch, "next")
	c2.expectMessage(opText, "7 "+e+" next")
	if st := h.Stats(); st.Recovered != 3 || st.Histories != 1 || st.HistoryBytes <= 0 {
		t.Errorf("stats: recovered %d, histories %d, bytes %d", st.Recovered, st.Histories, st.HistoryBytes)
	}
}

func TestRecoverRefuses(t *testing.T) {
	t.Parallel()
	h, join := historyHub(t, History{Messages: 3}, nil)
	ch := h.Channel("room")
	var last Position
	for i := range 10 {
		last = numbered(t, ch, fmt.Sprint("m", i)) // offsets 1..10, 8..10 kept
	}
	// Each case's position is relative to the latest message, of which
	// the history keeps three.
	cases := []struct {
		name   string
		behind int64 // since = latest - behind
		epoch  string
		limit  int
		ok     bool
	}{
		{"another epoch", 1, "other", 10, false},
		{"ahead of the history", -1, "", 10, false},
		{"older than what is kept", 4, "", 10, false},
		{"the oldest kept is next", 3, "", 10, true},
		{"past the limit", 3, "", 2, false},
		{"within the limit", 2, "", 2, true},
	}
	for _, tc := range cases {
		c, conn := join()
		since := Position{Offset: uint64(int64(last.Offset) - tc.behind), Epoch: last.Epoch}
		if tc.epoch != "" {
			since.Epoch = tc.epoch
		}
		got, err := ch.Recover(conn, since, tc.limit)
		if got != last {
			t.Errorf("%s: latest %v, want %v", tc.name, got, last)
		}
		if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, ErrNotRecovered) {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if !tc.ok { // subscribed all the same, nothing of the history sent
			numbered(t, ch, tc.name)
			c.expectMessage(opText, fmt.Sprintf("%d %s %s", last.Offset+1, last.Epoch, tc.name))
			last.Offset++
		}
	}
	// A user's channel keeps no history, not even the one of a channel
	// with its name.
	_, conn := join()
	conn.SetUser("room")
	if _, err := h.User("room").Recover(conn, last, 10); !errors.Is(err, ErrNotRecovered) {
		t.Errorf("Recover on a user's channel: %v", err)
	}
	// A channel without history recovers nothing but subscribes.
	rec := newRecorder()
	plain, addr := startHub(t, rec.options(false), doors[1])
	c := connect(t, addr)
	if _, err := plain.Channel("room").Recover(<-rec.opened, Position{}, 10); !errors.Is(err, ErrNotRecovered) {
		t.Errorf("Recover without history: %v", err)
	}
	plain.Channel("room").Publish(Text, []byte("live"))
	c.expectMessage(opText, "live")
}

// TestRecoverRacesPublishes recovers while another goroutine publishes:
// the member must get every offset after its position exactly once, in
// order, across the switch from history to live.
func TestRecoverRacesPublishes(t *testing.T) {
	t.Parallel()
	h, join := historyHub(t, History{Messages: 10_000}, nil)
	ch := h.Channel("room")
	first := numbered(t, ch, "start")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			numbered(t, ch, "x")
			if i%8 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	})
	for round := range 20 {
		c, conn := join()
		since := Position{Offset: first.Offset + uint64(round), Epoch: first.Epoch}
		// On odd rounds, with a marker between the history and the live.
		var o RecoverOptions
		if round%2 == 1 {
			o.Then = func(latest Position, err error) []byte {
				return fmt.Appendf(nil, "recovered %d %v", latest.Offset, err)
			}
		}
		o.Limit = 10_000
		latest, err := ch.RecoverWith(conn, since, o)
		if err != nil {
			t.Fatal(err)
		}
		// Read past latest into the live messages.
		next := since.Offset + 1
		for next <= latest.Offset+20 {
			f := c.readFrame()
			if o.Then != nil && next == latest.Offset+1 {
				if want := fmt.Sprintf("recovered %d <nil>", latest.Offset); string(f.payload) != want {
					t.Fatalf("round %d: got %q after the history, want %q", round, f.payload, want)
				}
				o.Then = nil
				continue
			}
			off, _, _ := strings.Cut(string(f.payload), " ")
			n, _ := strconv.ParseUint(off, 10, 64)
			if n != next {
				t.Fatalf("round %d: got offset %d, want %d (latest at recovery %d)", round, n, next, latest.Offset)
			}
			next++
		}
		c.nc.Close()
	}
	close(stop)
	wg.Wait()
}

func TestHistoryBounds(t *testing.T) {
	t.Parallel()
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		limits := History{Messages: 1000, MaxBytes: 10 * (keptOverhead + 128)} // 102-byte frames in 128-byte buffers
		h, _ := historyHub(t, limits, func(o *Options) {
			o.ChannelHistory = func(string) History { return limits } // unstamped
		})
		for i := range 50 {
			h.Channel("room").Publish(Binary, make([]byte, 100)) // 102-byte frames
			_ = i
		}
		if st := h.Stats(); st.HistoryBytes != historyOverhead+10*(keptOverhead+128) {
			t.Errorf("history bytes %d, want %d", st.HistoryBytes, historyOverhead+10*(keptOverhead+128))
		}
	})
	t.Run("age", func(t *testing.T) {
		t.Parallel()
		h, join := historyHub(t, History{Messages: 1000, MaxAge: 50 * time.Millisecond}, nil)
		ch := h.Channel("room")
		old := numbered(t, ch, "old")
		time.Sleep(100 * time.Millisecond)
		_, conn := join()
		if _, err := ch.Recover(conn, Position{Offset: old.Offset - 1, Epoch: old.Epoch}, 10); !errors.Is(err, ErrNotRecovered) {
			t.Errorf("recovered a message past MaxAge: %v", err)
		}
		if st := h.Stats(); st.HistoryBytes != historyOverhead {
			t.Errorf("history bytes %d after MaxAge, want %d", st.HistoryBytes, historyOverhead)
		}
	})
	t.Run("hub budget", func(t *testing.T) {
		t.Parallel()
		budget := 2*historyOverhead + 20*(keptOverhead+128)
		h, _ := historyHub(t, History{Messages: 1000}, func(o *Options) { o.MaxHistoryBytes = budget })
		for i := range 100 {
			h.Channel("a").Publish(Binary, make([]byte, 100))
			h.Channel("b").Publish(Binary, make([]byte, 100))
			h.Channel(fmt.Sprint("c", i)).Publish(Binary, make([]byte, 100)) // no room for a third history
		}
		if st := h.Stats(); st.HistoryBytes > int64(budget) || st.Histories > budget/historyOverhead {
			t.Errorf("%d histories hold %d bytes; budget %d", st.Histories, st.HistoryBytes, budget)
		}
		h.Close()
		if st := h.Stats(); st.HistoryBytes != 0 || st.Histories != 0 {
			t.Errorf("after Close: %d histories hold %d bytes", st.Histories, st.HistoryBytes)
		}
	})
	t.Run("a slow member's full queue", func(t *testing.T) {
		t.Parallel()
		h, join := historyHub(t, History{Messages: 1000}, func(o *Options) { o.MaxQueuedBytes = 4 << 10 })
		ch := h.Channel("room")
		first := numbered(t, ch, "first")
		for range 20 {
			ch.Publish(Binary, make([]byte, 500)) // 10 KiB missed: more than the queue holds
		}
		c, conn := join()
		if _, err := ch.Recover(conn, first, 1000); !errors.Is(err, ErrNotRecovered) {
			t.Errorf("a recovery larger than the queue: %v", err)
		}
		live := numbered(t, ch, "live")
		c.expectMessage(opText, fmt.Sprintf("%d %s live", live.Offset, live.Epoch))
	})
}

// TestEpochChangesWithARestart: a hub without a HistoryBroker keeps its
// history in memory; the hub that replaces it has another epoch, and
// refuses the old positions.
func TestEpochChangesWithARestart(t *testing.T) {
	t.Parallel()
	before, _ := historyHub(t, History{Messages: 10}, nil)
	old := numbered(t, before.Channel("room"), "before")
	if pos, err := before.Channel("room").Position(); pos != old || err != nil {
		t.Fatalf("Position = %v, %v; want %v", pos, err, old)
	}
	before.Close()
	after, join := historyHub(t, History{Messages: 10}, nil)
	now := numbered(t, after.Channel("room"), "after")
	if now.Epoch == old.Epoch || now.Offset != 1 {
		t.Fatalf("after a restart: %v, before %v", now, old)
	}
	_, conn := join()
	if latest, err := after.Channel("room").Recover(conn, old, 10); !errors.Is(err, ErrNotRecovered) || latest != now {
		t.Errorf("Recover from the old epoch = %v, %v", latest, err)
	}
	if _, err := after.User("ann").Position(); !errors.Is(err, ErrNoHistory) {
		t.Errorf("a user's channel has a position: %v", err)
	}
}

// BenchmarkHistoryMemory measures what a channel's history holds: 1,000
// channels keeping 100 messages of 100 B each, heap bytes per channel and
// per kept message (frames included: 102 bytes each), against what the
// hub counts (Stats.HistoryBytes).
func BenchmarkHistoryMemory(b *testing.B) {
	const channels, messages, size = 1000, 100, 100
	for range b.N {
		h, err := New(&Options{ChannelHistory: func(string) History { return History{Messages: messages} }})
		if err != nil {
			b.Fatal(err)
		}
		names := make([]string, channels)
		for i := range names {
			names[i] = fmt.Sprint("room-", i)
		}
		payload := make([]byte, size)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, name := range names {
			ch := h.Channel(name)
			for range messages {
				ch.Publish(Binary, payload)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(heap/channels, "bytes/channel")
		b.ReportMetric(heap/(channels*messages), "bytes/message")
		b.ReportMetric(float64(h.Stats().HistoryBytes)/channels, "counted-bytes/channel")
		h.Close()
	}
}

// TestHistorySweepLetsIdleGo: a channel with no member and no message for
// its MaxAge keeps nothing, and its history goes; one with a member stays.
func TestHistorySweepLetsIdleGo(t *testing.T) {
	t.Parallel()
	h, join := historyHub(t, History{Messages: 10, MaxAge: 50 * time.Millisecond}, nil)
	_, conn := join()
	h.Channel("kept").Subscribe(conn)
	numbered(t, h.Channel("kept"), "x")
	numbered(t, h.Channel("idle"), "y")
	if st := h.Stats(); st.Histories != 2 {
		t.Fatalf("%d histories", st.Histories)
	}
	waitFor(t, func() bool {
		st := h.Stats()
		return st.Histories == 1 && st.HistoryBytes == historyOverhead
	})
	if _, err := h.Channel("kept").Position(); err != nil {
		t.Error(err)
	}
}
