package load

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wshub/wshub"
)

// TestEchoAgainstWshub runs the echo loop against an in-process hub and
// checks that it counts round trips and no errors.
func TestEchoAgainstWshub(t *testing.T) {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hub}
	go srv.Serve(ln)
	defer srv.Close()

	conns, lat, err := Dial(context.Background(), "ws://"+ln.Addr().String()+"/ws", 20)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(conns)
	if len(lat) != 20 || lat[0] <= 0 {
		t.Fatalf("upgrade latencies %v, want 20 positive ones", lat)
	}
	r := Echo(conns, 300, 100*time.Millisecond, 500*time.Millisecond)
	if r.Errors != 0 || r.Messages == 0 || r.P99 < r.P50 {
		t.Fatalf("echo result %+v, want round trips and no errors", r)
	}
}
