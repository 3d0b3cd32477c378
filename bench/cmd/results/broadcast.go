package main

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The broadcast measurement, which the broadcast, cluster and deflate
// scenarios share: subscribers in the room of one or more servers, held by
// this process, and for each case 20 messages published through the first
// server three times, each /publish request waited for until every
// subscriber has its messages.

// bcastCase is one case: messages of size bytes, burst of them in each
// /publish request, published one by one or as one batch (wshub's
// Channel.PublishBatch).
type bcastCase struct {
	size, burst int
	batch       bool
}

// bcastCases are the cluster scenario's cases, and the broadcast plot's.
var bcastCases = []bcastCase{{size: 64, burst: 1}, {size: 64, burst: 20}, {size: 1024, burst: 1}, {size: 1024, burst: 20}}

// mode names how the case publishes.
func (c bcastCase) mode() string {
	switch {
	case c.batch:
		return fmt.Sprintf("batches of %d", c.burst)
	case c.burst == 1:
		return "one at a time"
	}
	return fmt.Sprintf("bursts of %d", c.burst)
}

func (c bcastCase) String() string { return fmt.Sprintf("%d B, %s", c.size, c.mode()) }

// bcastResult is what one case measured.
type bcastResult struct {
	rate       float64       // deliveries per second
	cpu        time.Duration // the servers' CPU per delivery
	perWrite   float64       // deliveries per write system call, with bcastOpts.writes
	p50, p99   time.Duration // publish to receipt
	lost       int64         // messages lost or out of order, with bcastOpts.countLoss
	wire       float64       // bytes the subscribers read per delivery, frame headers included
	compressed float64       // the share of deliveries that came compressed (RSV1)
	peakRSS    int64         // the first server's RSS at its highest through all the cases
}

// bcastOpts says what to publish and what to measure.
type bcastOpts struct {
	cases   []bcastCase
	json    bool // publish load.FeedJSON as text, not binary
	deflate bool // subscribers offer permessage-deflate, and must get it
	// ready, if set, is called once every subscriber has a message, before
	// the cases: to sample the servers with their subscribers at rest.
	ready func() error
	// writes, if set, returns the write system calls the servers have
	// made, for deliveries per write.
	writes func() (uint64, error)
	// countLoss reports lost messages in each case's result; otherwise a
	// lost message fails the measurement.
	countLoss bool
}

// measureBroadcast spreads subs subscribers evenly over the servers, runs
// the cases of o, and returns what the subscribers received in each,
// counted from the first request to publish until every subscriber had
// every message.
func measureBroadcast(servers []*harness.Server, subs int, o bcastOpts) ([]bcastResult, error) {
	var cs []*load.Conn
	defer func() { load.CloseAll(cs) }()
	dialer := dial
	if o.deflate {
		dialer = dialDeflate
	}
	for i, s := range servers {
		n := subs / len(servers)
		if i == 0 {
			n += subs % len(servers)
		}
		c, err := dialer(s.URL("/room"), n)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c...)
	}
	recv := load.Receive(cs)
	publish := func(c bcastCase) error {
		q := fmt.Sprintf("/publish?n=%d&size=%d", c.burst, c.size)
		if o.json {
			q += "&json=1"
		}
		if c.batch {
			q += "&batch=1"
		}
		_, err := servers[0].Get(q)
		return err
	}
	// Until one message reaches every subscriber: the last ones to join,
	// and with a broker the other servers' subscriptions, take a moment.
	for try := 0; ; try++ {
		if try == 30 {
			return nil, fmt.Errorf("warm-up: not every subscriber received a message in 30 tries")
		}
		before := recv.Received()
		if err := publish(bcastCase{size: o.cases[0].size, burst: 1}); err != nil {
			return nil, err
		}
		if recv.WaitReceived(before+int64(subs), time.Second) {
			break
		}
		recv.WaitReceived(1<<62, 500*time.Millisecond) // let stragglers land
	}
	if o.ready != nil {
		if err := o.ready(); err != nil {
			return nil, err
		}
	}
	writes := o.writes
	if writes == nil {
		writes = func() (uint64, error) { return 0, nil }
	}
	// The first server's RSS, sampled through the cases.
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v, _ := servers[0].RSS(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	defer func() {
		close(stopSampling)
		<-sampled
	}()
	var out []bcastResult
	for _, c := range o.cases {
		const messages, reps = 20, 3
		lost0 := recv.Lost() + recv.OutOfOrder()
		wire0, comp0 := recv.Wire(), recv.Compressed()
		w0, err := writes()
		if err != nil {
			return nil, err
		}
		recv.ResetLatency()
		cpu0, err := serversCPU(servers)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		for range reps {
			for range messages / c.burst {
				want := recv.Received() + int64(subs*c.burst)
				if err := publish(c); err != nil {
					return nil, err
				}
				if !recv.WaitReceived(want, 60*time.Second) {
					return nil, fmt.Errorf("%v: %d messages missing", c, want-recv.Received())
				}
			}
		}
		elapsed := time.Since(start)
		cpu1, err := serversCPU(servers)
		if err != nil {
			return nil, err
		}
		w1, err := writes()
		if err != nil {
			return nil, err
		}
		deliveries := subs * messages * reps
		lat := recv.Latency()
		res := bcastResult{
			rate:       float64(deliveries) / elapsed.Seconds(),
			cpu:        (cpu1 - cpu0) / time.Duration(deliveries),
			perWrite:   float64(deliveries) / float64(max(w1-w0, 1)),
			p50:        lat.Percentile(0.5),
			p99:        lat.Percentile(0.99),
			lost:       recv.Lost() + recv.OutOfOrder() - lost0,
			wire:       float64(recv.Wire()-wire0) / float64(deliveries),
			compressed: float64(recv.Compressed()-comp0) / float64(deliveries),
		}
		if res.lost > 0 && !o.countLoss {
			return nil, fmt.Errorf("%v: %d messages lost or out of order", c, res.lost)
		}
		out = append(out, res)
	}
	for i := range out {
		out[i].peakRSS = peak.Load() // sampled until now: the last case is over
	}
	if n := recv.BadInflate(); n > 0 {
		return nil, fmt.Errorf("%d compressed messages did not inflate", n)
	}
	if o.deflate && recv.Inflated() == 0 {
		return nil, fmt.Errorf("no compressed message was inflated")
	}
	return out, nil
}

// serversCPU is the servers' CPU time together.
func serversCPU(servers []*harness.Server) (time.Duration, error) {
	var sum time.Duration
	for _, s := range servers {
		t, err := s.CPU()
		if err != nil {
			return 0, err
		}
		sum += t.Total()
	}
	return sum, nil
}
