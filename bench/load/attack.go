package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub/bench/internal/harness"
)

// AttackConfig describes an attack on a server's inbound memory: Conns
// clients each send all but the last byte of a Size-byte binary message and
// hold it for at least Hold, while one control client echoes Echo-byte
// messages in a closed loop. The hold goes on past Hold, up to MaxHold,
// until the server's RSS has not risen by more than 1% (or 10 MB, if more)
// for 3 seconds.
// (Writes that a server does not read stay blocked to the end of the hold.) With Finish the attackers then send
// their last byte and read their message back from the echo server, for up
// to FinishWithin.
type AttackConfig struct {
	URL          string // an echo endpoint, ws://host:port/path
	PID          int    // the server's process, whose RSS is sampled (0: none)
	Conns        int
	Size         int
	Echo         int
	Hold         time.Duration
	MaxHold      time.Duration // 0: Hold
	Finish       bool
	FinishWithin time.Duration // 0: 60 s
}

// AttackResult is what an attack measured.
type AttackResult struct {
	Attackers    int           // connections that upgraded
	Written      int64         // bytes the attackers got into their sockets during the hold
	ClosedInHold int           // attackers the server closed (or reset) during the hold
	HoldError    error         // the first of those closes
	RSSBefore    int64         // server RSS before the attackers connected
	RSSIdle      int64         // server RSS with the attackers connected, before they sent
	RSSPeak      int64         // highest RSS sampled during the hold
	RSSEnd       int64         // RSS at the end of the hold
	PeakAt       time.Duration // when, from the start of the hold, RSSPeak was first seen
	Held         time.Duration // how long the hold lasted
	Echoes       int           // control round trips during the attack
	EchoErrors   int           // control round trips that failed
	P50, P99     time.Duration // control round-trip latency
	Finished     int           // attackers whose whole message came back (Finish)
	FinishedIn   time.Duration // how long the last of those took
	FinishFailed int           // attackers that got an error or no whole message
	FinishError  error         // the first of those errors
}

// Growth is the server's RSS growth under attack, from before the attackers
// connected to the peak, per attacker too.
func (r AttackResult) Growth() (total, perConn float64) {
	total = float64(r.RSSPeak - r.RSSBefore)
	if r.Attackers > 0 {
		perConn = total / float64(r.Attackers)
	}
	return total, perConn
}

// attacker is one attacking connection and what its reader saw.
type attacker struct {
	c       *Conn
	written int       // bytes of the frame written so far
	got     int       // payload bytes echoed back, all checked
	err     error     // why the reader stopped, if it did before the whole message
	ended   time.Time // when the reader stopped
	done    chan struct{}
}

// read reads the server's frames until the whole message of size bytes is
// back and checked, or an error. It runs from the upgrade on, so that a
// server that closes the attacker during the hold is seen. (The attacker
// cannot answer a ping: its own frame is unfinished, and a control frame
// may not go in the middle of one; none of the servers measured pings
// within the hold.)
func (a *attacker) read(size int) {
	defer close(a.done)
	defer func() { a.ended = time.Now() }()
	buf := make([]byte, 32<<10)
	for a.got < size {
		h, err := ws.ReadHeader(a.c.br)
		if err != nil {
			a.err = err
			return
		}
		if h.OpCode == ws.OpClose {
			p := make([]byte, min(h.Length, 125))
			io.ReadFull(a.c.br, p)
			code := 0
			if len(p) >= 2 {
				code = int(p[0])<<8 | int(p[1])
			}
			a.err = fmt.Errorf("server closed the connection: %d %s", code, p[min(2, len(p)):])
			return
		}
		data := h.OpCode == ws.OpBinary || h.OpCode == ws.OpContinuation
		// The echo may come back in fragments (nbio's does); stream it
		// and check it as it comes, without holding it.
		for left := h.Length; left > 0; {
			n, err := a.c.br.Read(buf[:min(left, int64(len(buf)))])
			if data {
				if !checkPatternAt(buf[:n], a.got) {
					a.err = fmt.Errorf("the message came back damaged after %d bytes", a.got)
					return
				}
				a.got += n
			}
			left -= int64(n)
			if err != nil && left > 0 {
				a.err = err
				return
			}
		}
	}
	if a.got > size {
		a.err = fmt.Errorf("%d bytes came back for a %d-byte message", a.got, size)
	}
}

// Attack runs the attack described by cfg.
func Attack(ctx context.Context, cfg AttackConfig) (AttackResult, error) {
	var res AttackResult
	if cfg.FinishWithin == 0 {
		cfg.FinishWithin = 60 * time.Second
	}
	res.RSSBefore = rss(cfg.PID)
	conns, _, err := Dial(ctx, cfg.URL, cfg.Conns)
	if err != nil {
		return res, err
	}
	res.Attackers = len(conns)
	frame := Frame(ws.OpBinary, pattern(cfg.Size))
	atk := make([]*attacker, len(conns))
	for i, c := range conns {
		atk[i] = &attacker{c: c, done: make(chan struct{})}
		c.SetReadDeadline(time.Now().Add(cfg.Hold + cfg.FinishWithin + 10*time.Second))
		go atk[i].read(cfg.Size)
	}
	defer func() {
		for _, a := range atk {
			a.c.Close()
			<-a.done
		}
	}()
	time.Sleep(time.Second) // let the upgrades' own garbage go
	res.RSSIdle = rss(cfg.PID)

	// The attackers: each writes all but the last byte. A server that
	// stops reading leaves the rest in the socket, so the writes end at
	// the hold's deadline.
	start := time.Now()
	maxHold := max(cfg.Hold, cfg.MaxHold)
	holdEnd := start.Add(maxHold)
	var wg sync.WaitGroup
	writeUntil := holdEnd // holdEnd moves when the hold ends early
	for _, a := range atk {
		wg.Go(func() {
			a.c.SetWriteDeadline(writeUntil)
			a.written, _ = a.c.Write(frame[:len(frame)-1])
		})
	}

	// The control client echoes while the attackers hold, and the RSS is
	// sampled.
	ctl, _, err := Dial(ctx, cfg.URL, 1)
	if err != nil {
		return res, err
	}
	defer func() { ctl[0].Close() }() // the control loop may replace it
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
			t0 := time.Now()
			ctl[0].SetDeadline(t0.Add(5 * time.Second))
			_, err := ctl[0].Write(msg)
			var p []byte
			if err == nil {
				p, err = ctl[0].ReadMessage(buf)
			}
			if err != nil || len(p) != cfg.Echo || !checkPatternAt(p, 0) {
				echoErrs++
				if err != nil { // the connection is gone: a new one
					ctl[0].Close()
					if c, _, err := Dial(ctx, cfg.URL, 1); err == nil {
						ctl[0] = c[0]
					}
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			lat = append(lat, time.Since(t0))
		}
	}()
	var risen time.Time // when the RSS last rose by more than 1% (10 MB at least) over the level then
	var level int64
	for {
		now := time.Now()
		r := rss(cfg.PID)
		if r > res.RSSPeak {
			res.RSSPeak, res.PeakAt = r, now.Sub(start)
		}
		if r > level+max(level/100, 10e6) {
			level, risen = r, now
		}
		held := now.Sub(start)
		if held >= maxHold || held >= cfg.Hold && now.Sub(risen) >= 3*time.Second {
			break
		}
		time.Sleep(min(200*time.Millisecond, time.Until(holdEnd)))
	}
	holdEnd = time.Now()
	res.Held = holdEnd.Sub(start)
	res.RSSEnd = rss(cfg.PID)
	close(stop)
	<-echoDone
	for _, a := range atk { // writes still blocked end now
		a.c.SetWriteDeadline(holdEnd)
	}
	wg.Wait()
	for _, a := range atk {
		res.Written += int64(a.written)
		select {
		case <-a.done:
			if a.err != nil && a.ended.Before(holdEnd) {
				res.ClosedInHold++
				if res.HoldError == nil {
					res.HoldError = a.err
				}
			}
		default:
		}
	}
	res.Echoes, res.EchoErrors = len(lat), echoErrs
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50, res.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	if !cfg.Finish {
		return res, nil
	}

	// The attackers finish: what the hold did not get written goes now,
	// the last byte with it; each reader waits for its message.
	start = time.Now()
	deadline := start.Add(cfg.FinishWithin)
	var finished, failed atomic.Int64
	var last atomic.Int64
	var mu sync.Mutex
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		if res.FinishError == nil {
			res.FinishError = err
		}
		mu.Unlock()
	}
	for _, a := range atk {
		wg.Go(func() {
			a.c.SetDeadline(deadline)
			if _, err := a.c.Write(frame[a.written:]); err != nil {
				select {
				case <-a.done: // the reader's error says more
				default:
					fail(fmt.Errorf("write: %w", err))
					return
				}
			}
			<-a.done
			if a.err != nil || a.got != cfg.Size {
				err := a.err
				if errors.Is(err, os.ErrDeadlineExceeded) {
					err = fmt.Errorf("%d of %d bytes back in %v", a.got, cfg.Size, cfg.FinishWithin)
				}
				fail(err)
				return
			}
			finished.Add(1)
			last.Store(int64(time.Since(start)))
		})
	}
	wg.Wait()
	res.Finished, res.FinishFailed = int(finished.Load()), int(failed.Load())
	res.FinishedIn = time.Duration(last.Load())
	return res, nil
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return p
}

// checkPatternAt reports whether p is the pattern from offset off on.
func checkPatternAt(p []byte, off int) bool {
	for i, b := range p {
		if b != byte((off+i)*7) {
			return false
		}
	}
	return true
}

// rss returns the resident memory of process pid, or 0 for none or
// where it cannot be read: the attack goes on without the figure.
func rss(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, _ := harness.RSS(pid)
	return b
}
