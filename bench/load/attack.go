package load

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// AttackConfig describes an attack on a server's inbound memory: Conns
// clients each send all but the last byte of a Size-byte binary message and
// hold it for Hold, while one control client echoes Echo-byte messages in a
// closed loop. With Finish the attackers then send their last byte and read
// their message back from the echo server.
type AttackConfig struct {
	URL    string // an echo endpoint, ws://host:port/path
	PID    int    // the server's process, whose RSS is sampled (0: none)
	Conns  int
	Size   int
	Echo   int
	Hold   time.Duration
	Finish bool
}

// AttackResult is what an attack measured.
type AttackResult struct {
	Attackers    int           // connections that upgraded
	Written      int64         // bytes the attackers got into their sockets
	RSSBefore    int64         // server RSS before the attack
	RSSPeak      int64         // highest RSS sampled during the hold
	Echoes       int           // control round trips during the attack
	EchoErrors   int           // control round trips that failed
	P50, P99     time.Duration // control round-trip latency
	Finished     int           // attackers whose whole message came back (Finish)
	FinishedIn   time.Duration // how long that took
	FinishFailed int           // attackers that got an error instead
	FinishError  error         // the first of those errors
}

// Growth is the server's RSS growth under attack, per attacker too.
func (r AttackResult) Growth() (total, perConn float64) {
	total = float64(r.RSSPeak - r.RSSBefore)
	if r.Attackers > 0 {
		perConn = total / float64(r.Attackers)
	}
	return total, perConn
}

// Attack runs the attack described by cfg.
func Attack(ctx context.Context, cfg AttackConfig) (AttackResult, error) {
	var res AttackResult
	res.RSSBefore = rss(cfg.PID)
	conns, _, err := Dial(ctx, cfg.URL, cfg.Conns)
	if err != nil {
		return res, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	res.Attackers = len(conns)
	frame := Frame(ws.OpBinary, pattern(cfg.Size))

	// The attackers: each writes all but the last byte. A server that
	// stops reading leaves the rest in the socket, so the writes end at
	// the hold's deadline.
	sent := make([]int, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetWriteDeadline(time.Now().Add(cfg.Hold))
			sent[i], _ = c.Write(frame[:len(frame)-1])
		})
	}

	// The control client echoes while the attackers hold, and the RSS is
	// sampled.
	ctl, _, err := Dial(ctx, cfg.URL, 1)
	if err != nil {
		return res, err
	}
	defer ctl[0].Close()
	stop := make(chan struct{})
	var lat []time.Duration
	var echoErrs int
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		msg := Frame(ws.OpBinary, pattern(cfg.Echo))
		buf := make([]byte, cfg.Echo)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			ctl[0].SetDeadline(start.Add(5 * time.Second))
			_, err := ctl[0].Write(msg)
			var p []byte
			if err == nil {
				p, err = ctl[0].ReadMessage(buf)
			}
			if err != nil || len(p) != cfg.Echo {
				echoErrs++
				time.Sleep(10 * time.Millisecond)
				continue
			}
			lat = append(lat, time.Since(start))
		}
	}()
	deadline := time.Now().Add(cfg.Hold)
	for time.Now().Before(deadline) {
		res.RSSPeak = max(res.RSSPeak, rss(cfg.PID))
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	<-echoDone
	wg.Wait()
	for _, n := range sent {
		res.Written += int64(n)
	}
	res.Echoes, res.EchoErrors = len(lat), echoErrs
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50, res.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	if !cfg.Finish {
		return res, nil
	}

	// The attackers finish; each reads its message back.
	start := time.Now()
	var finished, failed atomic.Int64
	var firstErr sync.Once
	fail := func(err error) {
		failed.Add(1)
		firstErr.Do(func() { res.FinishError = err })
	}
	for i, c := range conns {
		wg.Go(func() {
			c.SetDeadline(time.Now().Add(60 * time.Second))
			// What the hold did not get written goes now, the last byte
			// with it.
			if _, err := c.Write(frame[sent[i]:]); err != nil {
				fail(fmt.Errorf("write: %w", err))
				return
			}
			// The echo may come back in fragments (nbio's does).
			var p []byte
			var err error
			for err == nil && len(p) < cfg.Size {
				var part []byte
				part, err = c.ReadMessage(nil)
				p = append(p, part...)
			}
			if err == nil && (len(p) != cfg.Size || !checkPattern(p)) {
				err = fmt.Errorf("a %d-byte message came back damaged", len(p))
			}
			if err != nil {
				fail(err)
				return
			}
			finished.Add(1)
		})
	}
	wg.Wait()
	res.Finished, res.FinishFailed = int(finished.Load()), int(failed.Load())
	res.FinishedIn = time.Since(start)
	return res, nil
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return p
}

func checkPattern(p []byte) bool {
	for i, b := range p {
		if b != byte(i*7) {
			return false
		}
	}
	return true
}

// rss returns the resident memory of process pid, or 0.
func rss(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
