package load

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestAttackFinishes attacks an in-process echo hub with a few clients: the
// control client echoes throughout, every attacker's message comes back
// whole once it is finished, and the RSS of this process is sampled.
func TestAttackFinishes(t *testing.T) {
	url := echoServer(t, func(int64) bool { return false })
	res, err := Attack(context.Background(), AttackConfig{
		URL: url, PID: os.Getpid(), Conns: 20, Size: 256 << 10, Echo: 64, Hold: 500 * time.Millisecond, Finish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attackers != 20 || res.Finished != 20 || res.FinishFailed != 0 {
		t.Errorf("%d attackers, %d finished, %d failed (%v)", res.Attackers, res.Finished, res.FinishFailed, res.FinishError)
	}
	if res.Echoes == 0 || res.EchoErrors != 0 {
		t.Errorf("control: %d echoes, %d failed", res.Echoes, res.EchoErrors)
	}
	if res.RSSBefore == 0 || res.RSSPeak == 0 {
		t.Errorf("RSS not sampled: %d, %d", res.RSSBefore, res.RSSPeak)
	}
}
