package brokertest

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wshub/wshub"
)

// faultTimeout is the hubs' Options.BrokerTimeout in the fault checks:
// shorter than a freeze, so that what a frozen server held back arrives
// late and must be dropped.
const faultTimeout = 2 * time.Second

// A Fault is one fault Faults injects: the server killed (SIGKILL) and
// started again after Length, or frozen (SIGSTOP) and thawed after Length.
type Fault struct {
	Kind   string // "kill" or "freeze"
	Length time.Duration
}

// DefaultFaults are the faults the contract injects.
var DefaultFaults = []Fault{
	{"kill", 300 * time.Millisecond},
	{"freeze", 1 * time.Second},
	{"kill", 3 * time.Second},
	{"freeze", 3 * time.Second},
	{"kill", 1 * time.Second},
}

// A FaultRound is what one fault cost a stream of publishes, one every 10
// ms from hub A to a member on hub B.
type FaultRound struct {
	Fault
	// Publishes from the fault's start to the next one's: those that
	// returned no error, and those that returned one.
	Accepted, Refused int
	// Accepted publishes that never reached the member on B, and how many
	// of them B dropped as older than BrokerTimeout.
	Lost int
	Late uint64
	// From the server's return to the first delivery across, and to the
	// first delivery to a room B's member joined during the fault.
	Resume, Joined time.Duration
	// The longest publish call, and the oldest message delivered.
	SlowestPublish, OldestDelivered time.Duration
}

// FaultReport is what Faults measured.
type FaultReport struct {
	Rounds     []FaultRound
	Duplicates int    // messages B's member got twice (must be 0)
	Dropped    uint64 // copies hub B dropped as delivered already (Stats.BrokerDuplicates)
	Reordered  int    // messages B's member got after a later one of the same publisher (must be 0)
	Downs, Ups int    // EventBrokerDown and EventBrokerUp seen by hub A
	Goroutines int    // growth from before the faults to after them, the hubs still open
	FDs        int    // the same for open descriptors
}

// Table returns the report as a Markdown table.
func (r *FaultReport) Table() string {
	var b strings.Builder
	b.WriteString("| fault | length | accepted | refused | lost (late) | resume | room joined meanwhile | slowest publish | oldest delivered |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" }
	for _, x := range r.Rounds {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d (%d) | %s | %s | %s | %s |\n",
			x.Kind, x.Length, x.Accepted, x.Refused, x.Lost, x.Late, ms(x.Resume), ms(x.Joined), ms(x.SlowestPublish), ms(x.OldestDelivered))
	}
	fmt.Fprintf(&b, "\nDuplicates delivered %d (copies hub B dropped: %d), reordered %d; hub A reported %d downs and %d ups; goroutines %+d, descriptors %+d after the faults (the clients of the rooms joined included).\n",
		r.Duplicates, r.Dropped, r.Reordered, r.Downs, r.Ups, r.Goroutines, r.FDs)
	return b.String()
}

// published is one publish of the stream.
type published struct {
	at       time.Time
	took     time.Duration
	accepted bool
	round    int
}

// Faults runs a stream of publishes from hub A to a member on hub B and
// injects faults, one after the other, each once the stream has recovered
// from the one before. It needs h.Freeze and h.Thaw for freezes.
func Faults(t *testing.T, h Harness, faults []Fault) *FaultReport {
	var downs, ups atomic.Int32
	optsA := &wshub.Options{
		BrokerTimeout: faultTimeout,
		OnEvent: func(e wshub.Event) {
			switch e.Kind {
			case wshub.EventBrokerDown:
				downs.Add(1)
			case wshub.EventBrokerUp:
				ups.Add(1)
			}
		},
	}
	a := newNode(t, h, optsA, "a-idle")
	b := newNode(t, h, &wshub.Options{BrokerTimeout: faultTimeout}, "stream")
	waitFor(t, "hub B's subscription", func() bool { return b.hub.Stats().BrokerTopics == 1 })
	goroutines, fds := runtime.NumGoroutine(), openFDs()

	// The receiver: B's member reads the stream and notes when each
	// message came, and any duplicate or reordering.
	var (
		mu        sync.Mutex
		pubs      []published
		got       = map[int]time.Time{}
		oldest    = map[int]time.Duration{}
		report    FaultReport
		round     atomic.Int32
		lastSeq   = -1
		recvDone  = make(chan struct{})
		firstFrom atomic.Int64 // the stream's first seq published after a server's return
		firstAt   atomic.Int64 // when B got it, Unix nanoseconds
	)
	round.Store(-1)
	firstFrom.Store(-1)
	go func() {
		defer close(recvDone)
		for {
			msg, err := read(b.client, time.Minute)
			if err != nil {
				return
			}
			now := time.Now()
			seqText, sentText, _ := strings.Cut(msg, " ")
			seq, _ := strconv.Atoi(seqText)
			sent, _ := strconv.ParseInt(sentText, 10, 64)
			mu.Lock()
			if _, dup := got[seq]; dup {
				report.Duplicates++
			} else {
				got[seq] = now
				if seq < lastSeq {
					report.Reordered++
				}
				lastSeq = max(lastSeq, seq)
				r := pubs[seq].round
				oldest[r] = max(oldest[r], now.Sub(time.Unix(0, sent)))
			}
			mu.Unlock()
			if f := firstFrom.Load(); f >= 0 && int64(seq) >= f {
				firstAt.CompareAndSwap(0, now.UnixNano())
			}
		}
	}()

	// The publisher: one message every 10 ms, until stop.
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			mu.Lock()
			pubs = append(pubs, published{at: start, round: int(round.Load())})
			mu.Unlock()
			_, err := a.hub.Channel("stream").Publish(wshub.Text, fmt.Appendf(nil, "%d %d", seq, start.UnixNano()))
			took := time.Since(start)
			mu.Lock()
			pubs[seq].took, pubs[seq].accepted = took, err == nil
			mu.Unlock()
		}
	}()

	time.Sleep(500 * time.Millisecond) // the stream flows
	for i, f := range faults {
		round.Store(int32(i))
		lateBefore := b.hub.Stats().BrokerLate
		switch f.Kind {
		case "kill":
			h.Stop(t)
		case "freeze":
			if h.Freeze == nil {
				t.Fatal("the harness cannot freeze its server")
			}
			h.Freeze(t)
		default:
			t.Fatalf("unknown fault %q", f.Kind)
		}
		// A member of B joins a room while the server is away.
		room := fmt.Sprintf("joined-%d", i)
		joiner, _ := b.join(t, room)
		time.Sleep(f.Length)
		back := time.Now()
		mu.Lock()
		firstFrom.Store(int64(len(pubs)))
		mu.Unlock()
		firstAt.Store(0)
		if f.Kind == "kill" {
			h.Start(t)
		} else {
			h.Thaw(t)
		}
		x := FaultRound{Fault: f}
		x.Joined = probe(t, a, joiner, room, back)
		waitFor(t, "the stream to resume", func() bool { return firstAt.Load() != 0 })
		x.Resume = time.Unix(0, firstAt.Load()).Sub(back)
		time.Sleep(faultTimeout) // what the fault held back is delivered or dropped
		x.Late = b.hub.Stats().BrokerLate - lateBefore
		report.Rounds = append(report.Rounds, x)
	}
	close(stop)
	<-pubDone
	time.Sleep(time.Second) // the last publishes arrive
	report.Goroutines, report.FDs = runtime.NumGoroutine()-goroutines, openFDs()-fds
	report.Dropped = b.hub.Stats().BrokerDuplicates
	b.client.Close()
	<-recvDone

	mu.Lock()
	defer mu.Unlock()
	for _, p := range pubs {
		if p.round < 0 {
			continue
		}
		x := &report.Rounds[p.round]
		if p.accepted {
			x.Accepted++
		} else {
			x.Refused++
		}
		x.SlowestPublish = max(x.SlowestPublish, p.took)
	}
	for seq, p := range pubs {
		if _, ok := got[seq]; p.accepted && !ok && p.round >= 0 {
			report.Rounds[p.round].Lost++
		}
	}
	for r, d := range oldest {
		if r >= 0 {
			report.Rounds[r].OldestDelivered = d
		}
	}
	report.Downs, report.Ups = int(downs.Load()), int(ups.Load())
	return &report
}

// probe publishes to room through a every 20 ms until client, a member on
// the other hub, gets one, and returns the time from since.
func probe(t *testing.T, a *node, client net.Conn, room string, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery to %s 30 s after the server's return", room)
		}
		a.hub.Channel(room).Publish(wshub.Text, fmt.Appendf(nil, "probe %d", i))
		if _, err := read(client, 20*time.Millisecond); err == nil {
			return time.Since(since)
		}
	}
}

// openFDs counts the process's open descriptors, or returns 0 where
// /proc is not there.
func openFDs() int {
	fds, _ := os.ReadDir("/proc/self/fd")
	return len(fds)
}

// testFaults checks the report of DefaultFaults: no duplicate, no
// reordering, no message delivered later than BrokerTimeout after its
// publish, publishes bounded by it, every fault reported, and nothing
// left growing.
func testFaults(t *testing.T, h Harness) {
	faults := DefaultFaults
	if h.Freeze == nil {
		faults = nil
		for _, f := range DefaultFaults {
			if f.Kind == "kill" {
				faults = append(faults, f)
			}
		}
	}
	r := Faults(t, h, faults)
	t.Logf("faults:\n%s", r.Table())
	if r.Duplicates != 0 || r.Reordered != 0 {
		t.Errorf("%d duplicates, %d reordered; want none", r.Duplicates, r.Reordered)
	}
	for _, x := range r.Rounds {
		// The receiver's clock reads the age: a little past the bound is
		// the time from the hub's check to the client's read.
		if x.OldestDelivered > faultTimeout+500*time.Millisecond {
			t.Errorf("%s %v: a message was delivered %v after its publish; BrokerTimeout is %v", x.Kind, x.Length, x.OldestDelivered, faultTimeout)
		}
		if x.SlowestPublish > faultTimeout+500*time.Millisecond {
			t.Errorf("%s %v: a publish took %v; BrokerTimeout is %v", x.Kind, x.Length, x.SlowestPublish, faultTimeout)
		}
	}
	// A kill is seen at once; a freeze once a ping goes unanswered, which
	// the adapters notice within two seconds: a shorter one may pass
	// unreported.
	reported := 0
	for _, f := range faults {
		if f.Kind == "kill" || f.Length >= 3*time.Second {
			reported++
		}
	}
	if r.Downs < reported || r.Ups < reported {
		t.Errorf("hub A reported %d downs and %d ups for %d faults it should see", r.Downs, r.Ups, reported)
	}
	if r.Goroutines > 20 || r.FDs > 20 {
		t.Errorf("after the faults: %+d goroutines, %+d descriptors", r.Goroutines, r.FDs)
	}
}

// testStartWithoutServer starts two hubs while the server is down: they
// serve their local members, report the broker away, refuse cross-node
// publishes with an error, and join the server when it comes.
func testStartWithoutServer(t *testing.T, h Harness) {
	h.Stop(t)
	opts := &wshub.Options{BrokerTimeout: faultTimeout}
	a := newNode(t, h, opts, "late")
	b := newNode(t, h, opts, "late")
	waitFor(t, "the broker reported away", func() bool { return !a.hub.Stats().BrokerConnected })
	if n, err := a.hub.Channel("late").Publish(wshub.Text, []byte("alone")); n != 1 || err == nil {
		t.Fatalf("Publish while the server is down = %d, %v; want 1 local member and an error", n, err)
	}
	expect(t, a.client, "alone")
	if st := b.hub.Stats(); st.BrokerPending == 0 {
		t.Errorf("Stats.BrokerPending = 0 with the subscription waiting for the server")
	}
	back := time.Now()
	h.Start(t)
	d := probe(t, a, b.client, "late", back)
	t.Logf("first delivery across %v after the server started", d)
	waitFor(t, "the broker reported back", func() bool {
		st := a.hub.Stats()
		return st.BrokerConnected && st.BrokerReconnects >= 1
	})
}

// TableFaults are the faults of the table the adapters publish: outages
// and hangs from well under a second to longer than BrokerTimeout several
// times over.
var TableFaults = []Fault{
	{"kill", 300 * time.Millisecond},
	{"kill", 1 * time.Second},
	{"kill", 3 * time.Second},
	{"kill", 10 * time.Second},
	{"freeze", 1 * time.Second},
	{"freeze", 3 * time.Second},
	{"freeze", 10 * time.Second},
}

var faultsMD = flag.String("faults-md", "", "FaultTable: write the fault table to this file (see broker/faults.sh)")

// FaultTable runs TableFaults on the harness newHarness makes and writes
// their report to the file -faults-md names, as Markdown under title. It
// skips the test without the flag, before making the harness.
func FaultTable(t *testing.T, newHarness func(*testing.T) Harness, title string) {
	if *faultsMD == "" {
		t.Skip("-faults-md not set")
	}
	r := Faults(t, newHarness(t), TableFaults)
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\nRegenerate: `./broker/faults.sh`\n\n", title)
	b.WriteString("Two hubs on one broker; hub A publishes one message every 10 ms to a room whose member is on hub B; ")
	b.WriteString("the server is killed (SIGKILL, then started again) or frozen (SIGSTOP, then SIGCONT) for the time given, ")
	fmt.Fprintf(&b, "once the stream has recovered from the fault before. Options.BrokerTimeout is %v. ", faultTimeout)
	b.WriteString("A round counts the publishes from its fault to the next one: accepted (no error), refused (the error returned to the caller), ")
	b.WriteString("lost (accepted and never delivered; in brackets those hub B dropped as older than BrokerTimeout), ")
	b.WriteString("the time from the server's return to the first delivery across and to the first delivery to a room joined during the fault, ")
	b.WriteString("the slowest publish call and the oldest message delivered.\n\n")
	b.WriteString(r.Table())
	if err := os.WriteFile(*faultsMD, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
