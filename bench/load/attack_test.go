package load

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub"
)

// TestAttackFinishes attacks an in-process echo hub with a few clients: the
// control client echoes throughout, every attacker gets all but its last
// byte written and its message back whole once it is finished, and the RSS
// of this process is sampled.
func TestAttackFinishes(t *testing.T) {
	url := echoServer(t, func(int64) bool { return false })
	const conns, size = 20, 256 << 10
	res, err := Attack(context.Background(), AttackConfig{
		URL: url, PID: os.Getpid(), Conns: conns, Size: size, Echo: 64, Hold: 500 * time.Millisecond, Finish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attackers != conns || res.Finished != conns || res.FinishFailed != 0 || res.ClosedInHold != 0 {
		t.Errorf("%d attackers, %d closed in the hold (%v), %d finished, %d failed (%v)",
			res.Attackers, res.ClosedInHold, res.HoldError, res.Finished, res.FinishFailed, res.FinishError)
	}
	if want := int64(conns * (len(Frame(ws.OpBinary, make([]byte, size))) - 1)); res.Written != want {
		t.Errorf("%d bytes written in the hold, want %d", res.Written, want)
	}
	if res.Echoes == 0 || res.EchoErrors != 0 {
		t.Errorf("control: %d echoes, %d failed", res.Echoes, res.EchoErrors)
	}
	if res.RSSBefore == 0 || res.RSSIdle == 0 || res.RSSPeak == 0 || res.RSSEnd == 0 || res.PeakAt > res.Held || res.Held < 500*time.Millisecond {
		t.Errorf("RSS not sampled: %d, %d, %d at %v of %v, %d", res.RSSBefore, res.RSSIdle, res.RSSPeak, res.PeakAt, res.Held, res.RSSEnd)
	}
}

// TestAttackClosed: a server whose message limit is below the attack closes
// every attacker during the hold; that is counted, no message comes back,
// and the control client's small echoes go on.
func TestAttackClosed(t *testing.T) {
	hub, err := wshub.New(&wshub.Options{
		MaxMessageSize: 4 << 10,
		OnMessage:      func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hub}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); hub.Close() })
	res, err := Attack(context.Background(), AttackConfig{
		URL: "ws://" + ln.Addr().String() + "/ws", Conns: 10, Size: 64 << 10, Echo: 64,
		Hold: 500 * time.Millisecond, Finish: true, FinishWithin: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ClosedInHold != 10 || res.HoldError == nil || !strings.Contains(res.HoldError.Error(), "1009") {
		t.Errorf("%d attackers closed in the hold, the first by %v; want 10, by 1009", res.ClosedInHold, res.HoldError)
	}
	if res.Finished != 0 || res.FinishFailed != 10 {
		t.Errorf("%d finished, %d failed; want 0 and 10", res.Finished, res.FinishFailed)
	}
	if res.Echoes == 0 || res.EchoErrors != 0 {
		t.Errorf("control: %d echoes, %d failed", res.Echoes, res.EchoErrors)
	}
}

func TestCheckPatternAt(t *testing.T) {
	p := pattern(1000)
	if !checkPatternAt(p[300:], 300) || checkPatternAt(p[300:], 301) || !checkPatternAt(nil, 5) {
		t.Error("checkPatternAt disagrees with pattern")
	}
}
