package wshub

import (
	"context"
	"log/slog"
)

// LogEvents returns an Options.OnEvent that writes each event to l, where
// Go services already look: one record per event, its message "wshub: "
// and the kind, with the attributes "event" (the kind), "reason" and, for
// an event about a connection, "conn", its Data when that is a string or
// an fmt.Stringer (OnEvent may not call other methods of the Conn).
//
// Levels follow what an operator must do: EventAcceptError is an error
// (the process is out of descriptors); EventRejected, EventBrokerDown and
// EventBrokerLate are warnings; EventClosed and EventBrokerUp are
// information; EventDropped, one per message dropped for a slow member,
// is debug. Records below l's level cost a call to Enabled.
func LogEvents(l *slog.Logger) func(Event) {
	return func(e Event) {
		level := eventLevel(e.Kind)
		ctx := context.Background()
		if !l.Enabled(ctx, level) {
			return
		}
		attrs := []slog.Attr{slog.String("event", e.Kind.String())}
		if e.Reason != "" {
			attrs = append(attrs, slog.String("reason", e.Reason))
		}
		if e.Conn != nil {
			switch d := e.Conn.Data().(type) {
			case string:
				attrs = append(attrs, slog.String("conn", d))
			case interface{ String() string }:
				attrs = append(attrs, slog.String("conn", stringOf(d)))
			}
		}
		l.LogAttrs(ctx, level, "wshub: "+e.Kind.String(), attrs...)
	}
}

// eventLevel is the level LogEvents gives an event of kind k.
func eventLevel(k EventKind) slog.Level {
	switch k {
	case EventAcceptError:
		return slog.LevelError
	case EventRejected, EventBrokerDown, EventBrokerLate:
		return slog.LevelWarn
	case EventDropped:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// stringOf returns s.String(), or "<nil>" if it panics, as fmt prints it:
// a nil *T whose String reads its fields is an easy mistake, and events
// come with the connection's lock held, on a loop's goroutine.
func stringOf(s interface{ String() string }) (str string) {
	defer func() {
		if recover() != nil {
			str = "<nil>"
		}
	}()
	return s.String()
}
