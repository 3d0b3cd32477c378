package wshub

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// upgradeStatus sends an upgrade request to addr, with extra header lines,
// and returns the response's status and its Retry-After.
func upgradeStatus(t *testing.T, addr, extra string) (*client, int, string) {
	t.Helper()
	c := dial(t, addr)
	c.write([]byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"))
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != 101 {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return c, resp.StatusCode, resp.Header.Get("Retry-After")
}

func TestPerAddressLimits(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		if d.tls {
			continue // the same admit; the test's client speaks plain TCP
		}
		t.Run(d.name+"/conns", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxConnsPerAddr = 2
			h, addr := startHub(t, opts, d)
			a, s1, _ := upgradeStatus(t, addr, "")
			_, s2, _ := upgradeStatus(t, addr, "")
			_, s3, retry := upgradeStatus(t, addr, "")
			if s1 != 101 || s2 != 101 || s3 != http.StatusTooManyRequests || retry == "" {
				t.Fatalf("statuses %d %d %d (Retry-After %q); want 101 101 429 with Retry-After", s1, s2, s3, retry)
			}
			<-rec.opened
			a.nc.Close() // one leaves: the next comes in
			<-rec.closed
			if _, s, _ := upgradeStatus(t, addr, ""); s != 101 {
				t.Errorf("after one left: %d, want 101", s)
			}
			st := h.Stats()
			if st.Refused[429] != 1 || st.Rejected != 1 || st.ClientAddrs != 1 {
				t.Errorf("refused %v, rejected %d, addresses %d", st.Refused, st.Rejected, st.ClientAddrs)
			}
		})
		t.Run(d.name+"/rate", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.UpgradesPerAddr = 2 // bursts of 2
			_, addr := startHub(t, opts, d)
			var got []int
			for range 3 {
				_, s, _ := upgradeStatus(t, addr, "")
				got = append(got, s)
			}
			if fmt.Sprint(got) != "[101 101 429]" {
				t.Fatalf("statuses %v; want [101 101 429]", got)
			}
			time.Sleep(600 * time.Millisecond) // a token back after 500 ms
			if _, s, _ := upgradeStatus(t, addr, ""); s != 101 {
				t.Errorf("after the refill: %d, want 101", s)
			}
		})
		t.Run(d.name+"/forwarded", func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxConnsPerAddr = 1
			opts.ClientAddr = func(r *http.Request) string { return r.Header.Get("X-Client") }
			_, addr := startHub(t, opts, d)
			for i, tc := range []struct {
				client string
				want   int
			}{
				{"192.0.2.1", 101},
				{"192.0.2.2", 101},
				{"192.0.2.1", 429},
				{"2001:db8:1:2::1", 101},
				{"2001:db8:1:2::99", 429}, // the same /64
				{"2001:db8:1:3::1", 101},
			} {
				if _, s, _ := upgradeStatus(t, addr, "X-Client: "+tc.client+"\r\n"); s != tc.want {
					t.Errorf("%d: %s got %d, want %d", i, tc.client, s, tc.want)
				}
			}
		})
	}
}

func TestAddrTableIsBounded(t *testing.T) {
	t.Parallel()
	a := newAddrLimits(&Options{MaxConnsPerAddr: 1})
	for i := range 100_000 { // more addresses than the table holds
		st, rej := a.admit(fmt.Sprint("10.", i>>16, ".", i>>8&255, ".", i&255))
		if rej != nil && i < maxAddrs {
			t.Fatal(rej)
		}
		if rej == nil && i%2 == 0 {
			a.release(nil, st) // half of them leave: forgettable
		}
	}
	// Full: a new address takes the place of one that left.
	if _, rej := a.admit("192.0.2.1"); rej != nil {
		t.Fatalf("a new address with forgettable ones in the table: %v", rej)
	}
	if n := a.len(); n > maxAddrs {
		t.Fatalf("%d addresses remembered; at most %d", n, maxAddrs)
	}
	// Full of addresses that still count: a new one is refused with 503,
	// not remembered.
	b := newAddrLimits(&Options{MaxConnsPerAddr: 1})
	for i := range maxAddrs {
		b.admit(fmt.Sprint("10.", i>>16, ".", i>>8&255, ".", i&255))
	}
	if _, rej := b.admit("192.0.2.1"); rej == nil || rej.Status != http.StatusServiceUnavailable {
		t.Errorf("a full table of live addresses: %v, want 503", rej)
	}
	if !strings.Contains(addrKey("[2001:db8::1]:443"), "/64") || addrKey("192.0.2.1:80") != "192.0.2.1" {
		t.Errorf("keys %q, %q", addrKey("[2001:db8::1]:443"), addrKey("192.0.2.1:80"))
	}
	// What is not an address is kept as it came up to 64 bytes, hashed
	// past them: a client cannot make the table hold its megabyte header.
	long := strings.Repeat("x", 1<<20)
	if k := addrKey(long); len(k) > maxAddrKey || k != addrKey(long) || k == addrKey(long+"y") {
		t.Errorf("the key of a 1 MB value: %d bytes", len(k))
	}
	if addrKey("tenant-7") != "tenant-7" {
		t.Errorf("a short key that is no address: %q", addrKey("tenant-7"))
	}
}

// TestUnfinishedUpgradesPerAddr: on the own listener an address may have
// MaxConnsPerAddr upgrades unfinished (sockets that sent no request yet);
// one more socket is closed at once, and once one of them goes, or its
// request arrives, there is room again.
func TestUnfinishedUpgradesPerAddr(t *testing.T) {
	t.Parallel()
	for _, d := range []door{doors[1], doors[3]} { // the own listener, netpoll and portable
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxConnsPerAddr = 2
			h, addr := startHub(t, opts, d)
			silent := []*client{dial(t, addr), dial(t, addr)}
			waitFor(t, func() bool { return h.Stats().Upgrading == 2 })
			extra := dial(t, addr)
			start := time.Now()
			if err := extra.waitEOF(10 * time.Second); err != nil || time.Since(start) > 5*time.Second {
				t.Fatalf("a third unfinished upgrade from the address: %v after %v; want closed at once", err, time.Since(start))
			}
			if st := h.Stats(); st.Rejected != 1 || st.Upgrading != 2 {
				t.Fatalf("rejected %d, upgrading %d; want 1, 2", st.Rejected, st.Upgrading)
			}
			silent[0].nc.Close() // one goes: room for another
			waitFor(t, func() bool { return h.Stats().Upgrading == 1 })
			if _, s, _ := upgradeStatus(t, addr, ""); s != 101 {
				t.Fatalf("after one left: %d, want 101", s)
			}
			<-rec.opened
			// The other sends its request: open, it counts as a
			// connection; the address is at its limit of two.
			silent[1].write([]byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"))
			<-rec.opened
			if _, s, _ := upgradeStatus(t, addr, ""); s != http.StatusTooManyRequests {
				t.Fatalf("a third connection: %d, want 429", s)
			}
			if n := h.perAddr.len(); n != 1 {
				t.Fatalf("%d addresses remembered, want 1", n)
			}
			h.perAddr.mu.Lock()
			pending := h.perAddr.addrs["127.0.0.1"].pending
			h.perAddr.mu.Unlock()
			if pending != 0 {
				t.Fatalf("%d unfinished upgrades remembered after every request came", pending)
			}
		})
	}
}

// TestHookPanicGivesSlotBack: a hook that panics (net/http recovers it on
// ServeHTTP) gives back the slot it was called with: the hub's and the
// address's limits stay as they were.
func TestHookPanicGivesSlotBack(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	opts := rec.options(false)
	opts.MaxConns, opts.MaxConnsPerAddr = 1, 1
	opts.OnUpgrade = func(r *http.Request) (any, error) {
		if r.Header.Get("X-Panic") != "" {
			var m map[string]int
			m["boom"]++ // a nil map: the application's bug
		}
		return nil, nil
	}
	h, addr := startHub(t, opts, doors[0]) // http: net/http recovers
	for range 3 {
		c := dial(t, addr)
		c.write([]byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\nX-Panic: 1\r\n\r\n"))
		c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c.br) // net/http drops the connection
		c.nc.Close()
	}
	if _, s, _ := upgradeStatus(t, addr, ""); s != 101 {
		t.Fatalf("after three panics the next upgrade got %d, want 101", s)
	}
	<-rec.opened
	if st := h.Stats(); st.Conns != 1 {
		t.Errorf("%d connections open; want 1", st.Conns)
	}
}

// BenchmarkAddrTableMemory reports what the per-address limits hold: heap
// bytes per remembered address (MaxConnsPerAddr and UpgradesPerAddr both
// on, one connection each, which adds its map entry).
func BenchmarkAddrTableMemory(b *testing.B) {
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a := newAddrLimits(&Options{MaxConnsPerAddr: 4, UpgradesPerAddr: 10})
		conns := make([]Conn, maxAddrs) // one per address, allocated before the measure ends
		for i := range maxAddrs {
			st, _ := a.admit(fmt.Sprint("10.", i>>16, ".", i>>8&255, ".", i&255))
			a.bind(&conns[i], st)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		connBytes := float64(maxAddrs) * float64(unsafe.Sizeof(Conn{}))
		b.ReportMetric((float64(after.HeapAlloc-before.HeapAlloc)-connBytes)/maxAddrs, "bytes/addr")
		runtime.KeepAlive(a)
		runtime.KeepAlive(conns)
	}
}
