package wshub

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogEvents(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := LogEvents(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	c := &Conn{data: "ann"}
	log(Event{Kind: EventClosed, Conn: c, Reason: ReasonRateLimit})
	log(Event{Kind: EventDropped, Conn: c, Reason: ReasonSlowConsumer}) // debug: below the level
	log(Event{Kind: EventAcceptError, Reason: "accept: too many open files"})
	log(Event{Kind: EventBrokerDown, Reason: "broker connection lost"})
	got := buf.String()
	for _, want := range []string{
		`level=INFO msg="wshub: closed" event=closed reason="rate limit exceeded" conn=ann`,
		`level=ERROR msg="wshub: accept-error" event=accept-error reason="accept: too many open files"`,
		`level=WARN msg="wshub: broker-down" event=broker-down reason="broker connection lost"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "dropped") {
		t.Errorf("a debug record was written at level info:\n%s", got)
	}
}

// session is an application's connection data whose String reads a field.
type session struct{ name string }

func (s *session) String() string { return s.name }

// TestLogEventsNilStringer: a nil *session as a connection's data is logged
// as <nil>, as fmt would, not a panic on the loop that sent the event.
func TestLogEventsNilStringer(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := LogEvents(slog.New(slog.NewTextHandler(&buf, nil)))
	log(Event{Kind: EventClosed, Conn: &Conn{data: (*session)(nil)}})
	log(Event{Kind: EventClosed, Conn: &Conn{data: &session{name: "bob"}}})
	if got := buf.String(); !strings.Contains(got, "conn=<nil>") || !strings.Contains(got, "conn=bob") {
		t.Fatalf("logged %q", got)
	}
}
