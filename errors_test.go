package wshub

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestTypesPrint(t *testing.T) {
	t.Parallel()
	cases := []struct{ got, want string }{
		{CloseMessageTooBig.String(), "1009 message too big"},
		{CloseCode(4000).String(), "4000"},
		{EventClosed.String(), "closed"},
		{EventAcceptError.String(), "accept-error"},
		{EventKind(9).String(), "EventKind(9)"},
		{(&CloseError{Code: ClosePolicyViolation, Reason: ReasonSlowConsumer}).Error(), "wshub: close 1008: slow consumer"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestStatsJSON(t *testing.T) {
	t.Parallel()
	st := Stats{
		Conns:   3,
		Closes:  map[CloseCode]uint64{CloseNormal: 2},
		Reasons: map[string]uint64{ReasonPongTimeout: 1},
		PongRTT: RTTSummary{Count: 2, Mean: 1500 * time.Microsecond, Max: 2 * time.Millisecond, P50: time.Millisecond, P99: 2 * time.Millisecond},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"conns":3`,
		`"closes":{"1000":2}`,
		`"reasons":{"pong timeout":1}`,
		`"pong_rtt":{"count":2,"mean_ms":1.5,"max_ms":2,"p50_ms":1,"p99_ms":2}`,
		`"buffered_bytes":0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
}
