package wshub

import (
	"slices"
	"testing"
	"time"
)

func TestIterators(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.CloseTimeout = 100 * time.Millisecond // the clients never answer
	h, addr := startHub(t, opts, doors[0])
	var conns []*Conn
	for range 3 {
		connect(t, addr)
		conns = append(conns, <-rec.opened)
	}
	for _, c := range conns {
		h.Channel("all").Subscribe(c)
	}
	h.Channel("first").Subscribe(conns[0])
	conns[0].SetUser("ann")

	n := 0
	for range h.Conns() {
		n++
	}
	if n != 3 {
		t.Errorf("Hub.Conns visited %d, want 3", n)
	}
	var names []string
	for ch := range h.Channels() {
		names = append(names, ch.Name())
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"all", "first"}) {
		t.Errorf("Hub.Channels: %v", names)
	}
	names = names[:0]
	for ch := range conns[0].Subscriptions() {
		names = append(names, ch.Name())
	}
	if !slices.Equal(names, []string{"first", "all"}) {
		t.Errorf("Conn.Subscriptions: %v, want [first all] (newest first, no user channel)", names)
	}
	// The body may close members: the iterator holds no lock.
	seen := 0
	for c := range h.Channel("all").All() {
		seen++
		c.Close(CloseNormal, "bye")
		if seen == 2 {
			break
		}
	}
	if seen != 2 {
		t.Errorf("All visited %d after break at 2", seen)
	}
	for range 2 {
		if e := rec.waitClosed(t).err; e.Code != CloseNormal {
			t.Errorf("closed with %v", e)
		}
	}
}
