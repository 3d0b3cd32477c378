package wshub

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The idle-memory benchmark keeps its clients in another process, because
// one process may hold only about 19,900 sockets here: this test binary is
// started again with clientProcessEnv set to the hub's address, and told on
// stdin how many connections to hold.
const clientProcessEnv = "WSHUB_BENCH_CLIENT"

// clientDrainEnv makes the client process read and discard what arrives on
// its connections, for benchmarks that send to them.
const clientDrainEnv = "WSHUB_BENCH_DRAIN"

// clientOfferEnv, if set, is the Sec-WebSocket-Extensions offer the client
// process sends.
const clientOfferEnv = "WSHUB_BENCH_OFFER"

// clientTLSEnv has the client process dial with TLS.
const clientTLSEnv = "WSHUB_BENCH_TLS"

// idleDoors are the doors the idle-memory and echo measurements run
// through; the benchmarks add benchDoors, which shows what wss:// cost on
// the portable path it took before it ran on the loops.
var (
	idleDoors  = []door{doors[0], doors[1], doorNamed("https"), doorNamed("listener-tls")}
	benchDoors = append(idleDoors[:len(idleDoors):len(idleDoors)], door{name: "https-portable", tls: true, portable: true})
)

// clientEnv is the client process's environment for reaching a hub
// through d.
func clientEnv(d door) []string {
	if d.tls {
		return []string{clientTLSEnv + "=1"}
	}
	return nil
}

func doorNamed(name string) door {
	for _, d := range doors {
		if d.name == name {
			return d
		}
	}
	panic("no door " + name)
}

// clientProcess opens and holds upgraded connections to the address in
// clientProcessEnv. Each line on stdin is a total to reach; it answers
// "ok N" when N connections are upgraded, and exits when stdin closes. A
// line "echo N" runs N round trips of a 256-byte binary message over every
// connection held, each in a closed loop, and answers "ok N" once they
// are back (or "error ...").
func clientProcess() int {
	addr := os.Getenv(clientProcessEnv)
	if os.Getenv(clientTLSEnv) != "" {
		tlsAddrs.Store(addr, true)
	}
	var extra []string
	if offer := os.Getenv(clientOfferEnv); offer != "" {
		extra = append(extra, "Sec-WebSocket-Extensions: "+offer)
	}
	req := []byte(upgradeRequest(addr, extra...))
	var conns []net.Conn
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if n, ok := strings.CutPrefix(in.Text(), "echo "); ok {
			rounds, err := strconv.Atoi(n)
			if err == nil {
				err = echoLoops(conns, rounds)
			}
			if err != nil {
				fmt.Println("error", err)
				return 1
			}
			fmt.Println("ok", rounds)
			continue
		}
		want, err := strconv.Atoi(strings.TrimSpace(in.Text()))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		// Dial in parallel batches: a handshake is a round trip.
		for len(conns) < want {
			batch := min(want-len(conns), 200)
			got := make([]net.Conn, batch)
			var wg sync.WaitGroup
			for i := range got {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i] = dialUpgraded(addr, req)
				}()
			}
			wg.Wait()
			for _, c := range got {
				if c == nil {
					fmt.Println("error dial failed")
					return 1
				}
				if os.Getenv(clientDrainEnv) != "" {
					go io.Copy(io.Discard, c)
				}
				conns = append(conns, c)
			}
		}
		fmt.Println("ok", len(conns))
	}
	return 0
}

// echoLoops runs rounds round trips of a 256-byte binary message, shared
// among conns, each connection in a closed loop: send, read the echo whole,
// check it, again.
func echoLoops(conns []net.Conn, rounds int) error {
	payload := []byte(strings.Repeat("0123456789abcdef", 16))
	frame := clientFrame(true, opBinary, payload, true)
	want := append([]byte{0x80 | opBinary, 126, 1, 0}, payload...)
	var left atomic.Int64
	left.Store(int64(rounds))
	errs := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			got := make([]byte, len(want))
			for left.Add(-1) >= 0 {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Write(frame); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(c, got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("echo: got %q, want %q", got[:8], want[:8])
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func dialUpgraded(addr string, req []byte) net.Conn {
	c, err := dialNet(addr)
	if err != nil {
		return nil
	}
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 101 {
		c.Close()
		return nil
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// memPoint is the server's memory at one connection count.
type memPoint struct {
	conns      int
	rss, heap  float64
	goroutines int
}

// measureIdle serves a hub through d, has a client process open each count
// of connections in turn, and returns the server's memory at each.
func measureIdle(tb testing.TB, d door, opts *Options, counts []int, env ...string) []memPoint {
	h, addr := startHub(tb, opts, d)
	stdin, out := startClients(tb, addr, false, append(env, clientEnv(d)...)...)
	var points []memPoint
	for _, n := range counts {
		holdClients(tb, h, stdin, out, n)
		// Let workers that served the upgrades exit and the heap settle.
		// Two collections empty the pools (the first only moves them to
		// their victim caches) of buffers the upgrade storm used, which
		// would otherwise count as megabytes of noise; FreeOSMemory hands
		// the freed pages back, so that RSS shows what is live.
		time.Sleep(200 * time.Millisecond)
		debug.FreeOSMemory()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		points = append(points, memPoint{
			conns:      n,
			rss:        float64(readRSS(tb)),
			heap:       float64(ms.HeapAlloc),
			goroutines: runtime.NumGoroutine(),
		})
	}
	return points
}

// startClients starts the client process for a hub at addr; drain makes it
// read what arrives. It is stopped when the test ends.
func startClients(tb testing.TB, addr string, drain bool, env ...string) (io.Writer, *bufio.Scanner) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), clientProcessEnv+"="+addr)
	if drain {
		cmd.Env = append(cmd.Env, clientDrainEnv+"=1")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return stdin, bufio.NewScanner(stdout)
}

// holdClients has the client process hold n connections to h.
func holdClients(tb testing.TB, h *Hub, stdin io.Writer, out *bufio.Scanner, n int) {
	fmt.Fprintln(stdin, n)
	if !out.Scan() || !strings.HasPrefix(out.Text(), "ok") {
		tb.Fatalf("client process: %q %v", out.Text(), out.Err())
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.Len() != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.Len() != n {
		tb.Fatalf("hub holds %d connections, want %d", h.Len(), n)
	}
}

// readRSS returns the process's resident set size in bytes.
func readRSS(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Skip("no /proc/self/statm: RSS is measured on Linux")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// slope fits y = a + b*x by least squares and returns b.
func slope(xs, ys []float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for i := range xs {
		n++
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// idleSlopes returns the RSS and heap bytes per connection and the extra
// goroutines per connection between the first and last count.
func idleSlopes(points []memPoint) (rss, heap, goroutines float64) {
	var xs, rs, hs []float64
	for _, p := range points {
		xs = append(xs, float64(p.conns))
		rs = append(rs, p.rss)
		hs = append(hs, p.heap)
	}
	first, last := points[0], points[len(points)-1]
	g := float64(last.goroutines-first.goroutines) / float64(last.conns-first.conns)
	return slope(xs, rs), slope(xs, hs), g
}

// BenchmarkIdleMemory reports the memory an idle connection costs the
// server, as the slope of RSS and of the Go heap over 2k, 5k, 10k and 19k
// connections held by a client in another process. One iteration is the
// whole ramp; run it with -benchtime=1x. The plain cases run with the
// defaults, heartbeat on; the -noheartbeat ones without pings, to show what
// the heartbeat costs an idle connection; the -deflate ones with
// Options.Compression and clients that negotiate it as gorilla's does (no
// context takeover), the -deflate-takeover ones as browsers do (the hub
// keeps their 512-byte window).
func BenchmarkIdleMemory(b *testing.B) {
	counts := []int{2000, 5000, 10000, 19000}
	cases := []struct {
		suffix string
		ping   time.Duration
		offer  string
	}{
		{"", 0, ""},
		{"-noheartbeat", -1, ""},
		{"-deflate", 0, "permessage-deflate; client_no_context_takeover"},
		{"-deflate-takeover", 0, "permessage-deflate; client_max_window_bits"},
	}
	for _, d := range benchDoors {
		for _, tc := range cases {
			if d.tls && tc.suffix != "" {
				continue
			}
			name := d.name + tc.suffix
			b.Run(name, func(b *testing.B) {
				for range b.N {
					opts := &Options{PingInterval: tc.ping}
					var env []string
					if tc.offer != "" {
						opts.Compression = &Compression{}
						env = append(env, clientOfferEnv+"="+tc.offer)
					}
					points := measureIdle(b, d, opts, counts, env...)
					rss, heap, g := idleSlopes(points)
					for _, p := range points {
						b.Logf("%s conns=%d rss=%.0f heap=%.0f goroutines=%d", name, p.conns, p.rss, p.heap, p.goroutines)
					}
					b.ReportMetric(rss, "rss-bytes/conn")
					b.ReportMetric(heap, "heap-bytes/conn")
					b.ReportMetric(g, "goroutines/conn")
				}
			})
		}
	}
}

// TestIdleMemoryHarness runs the idle-memory measurement at small counts so
// that the suite covers the benchmark's code, and checks the promise that
// costs nothing to check: no goroutine per idle connection.
func TestIdleMemoryHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a client process")
	}
	for _, d := range idleDoors {
		points := measureIdle(t, d, &Options{}, []int{100, 300})
		_, heap, g := idleSlopes(points)
		if g > 0.01 {
			t.Errorf("%s: %.2f goroutines per idle connection, want 0", d.name, g)
		}
		t.Logf("%s: heap %.0f bytes/conn at small counts", d.name, heap)
	}
}

// BenchmarkEcho measures round trips through the hub: each iteration sends
// one 256-byte message on one of 64 connections and waits for its echo.
func BenchmarkEcho(b *testing.B) {
	for _, d := range doors[:2] {
		b.Run(d.name, func(b *testing.B) {
			_, addr := startHub(b, &Options{
				OnMessage: func(c *Conn, typ MessageType, p []byte) { c.WriteMessage(typ, p) },
			}, d)
			const conns = 64
			msg := text(strings.Repeat("x", 256))
			b.SetBytes(256)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			per := (b.N + conns - 1) / conns
			for range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := connect(b, addr)
					for range per {
						c.nc.Write(msg)
						if _, err := c.tryReadFrame(10 * time.Second); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkEchoCPU measures what a round trip costs the hub: 1,000
// connections held by the client process, each in a closed loop of
// 256-byte binary messages, b.N round trips in all. The clients are in the
// other process, so this process's CPU (getrusage) is the hub's alone:
// "server-µs/rt", with "rt/s" as the clients saw it. The echocpu scenario of
// bench/cmd/results measures the same beside other libraries and the floor.
func BenchmarkEchoCPU(b *testing.B) {
	for _, d := range benchDoors {
		b.Run(d.name, func(b *testing.B) {
			h, addr := startHub(b, &Options{
				OnMessage: func(c *Conn, typ MessageType, p []byte) { c.WriteMessage(typ, p) },
			}, d)
			stdin, out := startClients(b, addr, false, clientEnv(d)...)
			holdClients(b, h, stdin, out, 1000)
			b.SetBytes(256)
			b.ResetTimer()
			cpu0 := processCPU()
			start := time.Now()
			fmt.Fprintln(stdin, "echo", b.N)
			if !out.Scan() || !strings.HasPrefix(out.Text(), "ok") {
				b.Fatalf("client process: %q %v", out.Text(), out.Err())
			}
			elapsed, cpu := time.Since(start), processCPU()-cpu0
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "server-µs/rt")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rt/s")
		})
	}
}

// TestEchoCPUHarness runs BenchmarkEchoCPU's client loop at a small count,
// so that the suite covers it: every echo comes back whole, on both doors.
func TestEchoCPUHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a client process")
	}
	for _, d := range idleDoors {
		t.Run(d.name, func(t *testing.T) {
			var echoed atomic.Int64
			h, addr := startHub(t, &Options{
				OnMessage: func(c *Conn, typ MessageType, p []byte) {
					echoed.Add(1)
					c.WriteMessage(typ, p)
				},
			}, d)
			stdin, out := startClients(t, addr, false, clientEnv(d)...)
			holdClients(t, h, stdin, out, 50)
			fmt.Fprintln(stdin, "echo", 2000)
			if !out.Scan() || out.Text() != "ok 2000" {
				t.Fatalf("client process: got %q %v, want ok 2000", out.Text(), out.Err())
			}
			if got := echoed.Load(); got != 2000 {
				t.Errorf("hub echoed %d messages, want 2000", got)
			}
		})
	}
}

// BenchmarkPublish publishes to one channel whose members are held by a
// client process that reads and discards. An iteration is one publish, or
// 20 of them back to back (burst=20), or one Channel.PublishBatch of 20
// (batch=20), followed by its delivery: the loops have written every
// member's queue out. It reports deliveries/s counted on the server, the
// hub's CPU per delivery (the process's; the clients run in another),
// deliveries per system call, and allocations per iteration.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{1000, 10000} {
		publishCases(b, fmt.Sprintf("subs=%d", subs), subs, nil, []int{64, 1024}, allPublishModes)
	}
}

// BenchmarkPublishFlushDelay is BenchmarkPublish with Options.FlushDelay
// of 1 ms, for 10,000 members.
func BenchmarkPublishFlushDelay(b *testing.B) {
	publishCases(b, "subs=10000/delay=1ms", 10000, &Options{FlushDelay: time.Millisecond}, []int{64, 1024}, allPublishModes[:2])
}

// BenchmarkPublishFloor is what BenchmarkPublish cannot go below: the same
// bytes written straight to the same 10,000 sockets, one frame per write
// (write), or 20 frames per writev (writev=20), in a tight loop, with no
// hub in between.
func BenchmarkPublishFloor(b *testing.B) {
	publishCases(b, "subs=10000", 10000, nil, []int{64, 1024}, []publishMode{{"write", 1, floorWrite}, {"writev=20", 20, floorWrite}})
}

// BenchmarkPublishDeflate publishes 1 KiB of JSON to 10,000 members that
// negotiated permessage-deflate as gorilla's client does, beside the same
// without compression: the hub compresses each publish once, whatever the
// number of members ("compressions/publish").
func BenchmarkPublishDeflate(b *testing.B) {
	for _, offer := range []string{"", "permessage-deflate; client_no_context_takeover"} {
		name := "plain"
		var env []string
		opts := &Options{}
		if offer != "" {
			name = "deflate"
			env = append(env, clientOfferEnv+"="+offer)
			opts.Compression = &Compression{}
		}
		// Its own sub-benchmark, so that its hub closes before the next
		// one opens: one process holds 20,000 descriptors.
		b.Run(name, func(b *testing.B) { publishCases(b, "", 10000, opts, []int{1024}, allPublishModes[:2], env...) })
	}
}

// publishMode is how an iteration of publishCases sends n messages.
type publishMode struct {
	name string
	n    int
	how  int // publishEach, publishBatch or floorWrite
}

const (
	publishEach  = iota // n calls of Channel.Publish
	publishBatch        // one Channel.PublishBatch of n
	floorWrite          // n frames straight to each member's socket, in one writev
)

var allPublishModes = []publishMode{{"burst=1", 1, publishEach}, {"burst=20", 20, publishEach}, {"batch=20", 20, publishBatch}}

// publishCases holds subs members of one channel in a client process that
// reads and discards, and runs a sub-benchmark per size and mode.
func publishCases(b *testing.B, prefix string, subs int, opts *Options, sizes []int, modes []publishMode, env ...string) {
	opened := make(chan *Conn, subs)
	if opts == nil {
		opts = &Options{}
	}
	opts.OnOpen = func(c *Conn) { opened <- c }
	// The client process reads and discards, pings included: without
	// pongs, a run longer than PingInterval+PongTimeout would lose its
	// members.
	opts.PingInterval = -1
	h, addr := startHub(b, opts, doors[1])
	stdin, out := startClients(b, addr, true, env...)
	holdClients(b, h, stdin, out, subs)
	room := h.Channel("room")
	conns := make([]*Conn, 0, subs)
	for range subs {
		c := <-opened
		room.Subscribe(c)
		conns = append(conns, c)
	}
	// Every member's queue is written out when the hub's queued bytes are
	// zero: a publish queues for every member before it returns. Polled
	// with sleeps, so that the wait costs the hub's CPU figures little.
	drain := func() {
		for h.stats.queued.Load() > 0 {
			time.Sleep(20 * time.Microsecond)
		}
	}
	for _, size := range sizes {
		for _, mode := range modes {
			name := fmt.Sprintf("size=%d/%s", size, mode.name)
			if prefix != "" {
				name = prefix + "/" + name
			}
			b.Run(name, func(b *testing.B) {
				// JSON-like, compressible, as a feed's messages are.
				payload := []byte(strings.Repeat(`{"symbol":"ACME","price":12.5},`, size/31+1)[:size])
				batch := make([][]byte, mode.n)
				for i := range batch {
					batch[i] = payload
				}
				frame, _ := newMessageFrame(Binary, payload)
				defer frame.release()
				iov := make([][]byte, mode.n)
				for i := range iov {
					iov[i] = frame.b
				}
				before := h.Stats()
				b.SetBytes(int64(size * subs * mode.n))
				b.ReportAllocs()
				b.ResetTimer()
				cpu := processCPU()
				writes := uint64(0)
				for range b.N {
					switch mode.how {
					case publishEach:
						for range mode.n {
							room.Publish(Binary, payload)
						}
					case publishBatch:
						room.PublishBatch(Binary, batch, PublishOptions{})
					case floorWrite:
						writes += uint64(floor(b, conns, iov))
					}
					drain()
				}
				cpu = processCPU() - cpu
				after := h.Stats()
				deliveries := float64(subs * mode.n * b.N)
				if mode.how != floorWrite {
					writes = after.Writes - before.Writes
				}
				b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/deliveries, "cpu-ns/delivery")
				b.ReportMetric(deliveries/float64(writes), "deliveries/write")
				if opts.Compression != nil {
					b.ReportMetric(float64(after.Compressed-before.Compressed)/float64(mode.n*b.N), "compressions/publish")
				}
			})
		}
	}
}

// floor writes iov to every member's socket with writev, as the loops
// would, waiting on a full socket, and returns the system calls made.
func floor(b *testing.B, conns []*Conn, iov [][]byte) int {
	calls := 0
	bufs := make([][]byte, len(iov))
	for _, c := range conns {
		left := iov
		for skip := 0; len(left) > 0; {
			bufs = append(bufs[:0], left...)
			bufs[0] = bufs[0][skip:]
			n, err := sysWritev(int(c.fd), bufs)
			calls++
			if err != nil && !isWouldBlock(err) {
				b.Fatal(err)
			}
			for n > 0 && len(left) > 0 {
				if k := len(left[0]) - skip; n >= k {
					n -= k
					left, skip = left[1:], 0
				} else {
					skip += n
					n = 0
				}
			}
			if err != nil {
				time.Sleep(50 * time.Microsecond) // full: the client reads
			}
		}
	}
	return calls
}

// BenchmarkSubscriptionMemory reports the heap one subscription costs: 10,000
// connections, held by a client process, join one channel each, then one
// common channel.
func BenchmarkSubscriptionMemory(b *testing.B) {
	const n = 10000
	for range b.N {
		opened := make(chan *Conn, n)
		h, addr := startHub(b, &Options{OnOpen: func(c *Conn) { opened <- c }}, doors[1])
		stdin, out := startClients(b, addr, false)
		holdClients(b, h, stdin, out, n)
		conns := make([]*Conn, 0, n)
		for range n {
			conns = append(conns, <-opened)
		}
		heap := func() float64 {
			time.Sleep(100 * time.Millisecond) // workers of the upgrades exit
			runtime.GC()
			runtime.GC() // and what sync.Pool's victim cache held
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return float64(ms.HeapAlloc)
		}
		before := heap()
		for _, c := range conns {
			h.Channel("all").Subscribe(c)
		}
		one := heap()
		for i, c := range conns {
			h.Channel(fmt.Sprint("own-", i)).Subscribe(c)
		}
		own := heap()
		b.ReportMetric((one-before)/n, "bytes/subscription")
		b.ReportMetric((own-one)/n, "bytes/channel+subscription")
	}
}
