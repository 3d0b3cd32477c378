package main

import (
	"fmt"
	"log"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// The echo measurement, which the echo, echocpu and tls scenarios share:
// every connection in a closed loop of messages (load.EchoWindow), and the
// server's CPU over the measured window only.

// echoRun is what one measurement of one server's echo measured.
type echoRun struct {
	load.EchoResult
	cpu  time.Duration // server CPU per round trip, utime+stime
	user time.Duration // the part of it in user space, utime
}

// measureEcho loads s through conns, a closed loop of size-byte messages
// on each, for warm and then for window, over which it counts the round
// trips, their latency and s's CPU. Connections whose loop failed are in
// Errors, for the caller to judge.
func measureEcho(s *harness.Server, conns []*load.Conn, size int, warm, window time.Duration) (echoRun, error) {
	var t0, t1 harness.CPUTime
	var err error
	res := load.EchoWindow(conns, size, warm, window, func(start bool) {
		t, cerr := s.CPU()
		if start {
			t0, err = t, cerr
		} else if err == nil {
			t1, err = t, cerr
		}
	})
	if err != nil {
		return echoRun{}, err
	}
	n := time.Duration(max(res.Messages, 1))
	used := t1.Sub(t0)
	return echoRun{EchoResult: res, cpu: used.Total() / n, user: used.User / n}, nil
}

// echoWindow is the echo scenario's measured window.
const echoWindow = 10 * time.Second

// echo measures each library's echo through cmd/server.
func (r *report) echo() error {
	bin, err := r.server()
	if err != nil {
		return err
	}
	ts := libTargets(bin, r.libs, "/echo")
	runs, err := measureEach(1, ts, func(_ int, t target, s *harness.Server) (echoRun, error) {
		cs, err := dial(s.URL(t.path), r.conns)
		if err != nil {
			return echoRun{}, err
		}
		defer load.CloseAll(cs)
		e, err := measureEcho(s, cs, r.size, r.warm, echoWindow)
		if err == nil && e.Errors > 0 {
			err = fmt.Errorf("%d connections failed", e.Errors)
		}
		log.Printf("echo %s: %.0f round trips/s, %.2f µs of server CPU each", t.name, e.Rate(), micros(e.cpu))
		return e, err
	})
	if err != nil {
		return err
	}
	r.echoes = make(map[string]echoRun)
	for i, t := range ts {
		r.echoes[t.name] = runs[i][0]
	}
	return nil
}

func (r *report) writeEcho(p printer) {
	p("%s connections, each in a closed loop of %d-byte binary messages, %v of warm-up then %v measured.\n\n", thousands(r.conns), r.size, r.warm, echoWindow)
	p("| library | round trips/s | ratio | p50 | p99 | server CPU per round trip | ratio |\n|---|---:|---:|---:|---:|---:|---:|\n")
	base := r.echoes["wshub"]
	for _, lib := range r.libs {
		e := r.echoes[lib]
		p("| %s | %.0f | %s | %v | %v | %.2f µs | %s |\n", lib, e.Rate(), ratio(e.Rate(), base.Rate()),
			e.P50.Round(10*time.Microsecond), e.P99.Round(10*time.Microsecond),
			micros(e.cpu), ratio(float64(e.cpu), float64(base.cpu)))
	}
	p("\n")
}
