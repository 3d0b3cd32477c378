//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package wshub

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAcceptErrorsAreCountedAndSurvived runs a hub in a child process whose
// descriptor limit is low, fills its table until accept fails with EMFILE,
// and checks the failures are counted and reported and that the listener
// serves again once descriptors are free.
func TestAcceptErrorsAreCountedAndSurvived(t *testing.T) {
	if os.Getenv("WSHUB_ACCEPT_CHILD") == "1" {
		acceptChild()
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptErrorsAreCountedAndSurvived$", "-test.v")
	cmd.Env = append(os.Environ(), "WSHUB_ACCEPT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CHILD OK") {
		t.Fatalf("child did not finish:\n%s", out)
	}
	t.Logf("%s", grepLines(string(out), "CHILD"))
}

func grepLines(s, word string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// acceptChild is the child of TestAcceptErrorsAreCountedAndSurvived. It
// prints CHILD OK, or CHILD FAIL and exits 1.
func acceptChild() {
	fail := func(format string, args ...any) {
		fmt.Printf("CHILD FAIL: "+format+"\n", args...)
		os.Exit(1)
	}
	const limit = 64
	events := make(chan Event, 1024)
	h, err := New(&Options{
		OnEvent: func(e Event) {
			if e.Kind == EventAcceptError {
				select {
				case events <- e:
				default:
				}
			}
		},
		OnMessage: func(c *Conn, typ MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		fail("%v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("%v", err)
	}
	// The clients connect before the limit is lowered, and wait in the
	// listener's backlog: the hub's accepts, not the clients' dials, are
	// what runs out of descriptors, however the two would have raced.
	var clients []net.Conn
	for range limit + 16 {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			fail("dial: %v", err)
		}
		clients = append(clients, nc)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fail("setrlimit: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Serve(ln) }()
	var e Event
	select {
	case e = <-events:
	case <-time.After(5 * time.Second):
		fail("no EventAcceptError after %d clients", len(clients))
	}
	if !strings.Contains(e.Reason, "too many open files") || h.Stats().AcceptErrors == 0 {
		fail("event %q, Stats.AcceptErrors %d", e.Reason, h.Stats().AcceptErrors)
	}
	// Free descriptors: the listener recovers and a new client upgrades.
	for _, nc := range clients {
		nc.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			nc.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprint(nc, upgradeRequest(ln.Addr().String()))
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			nc.Close()
			if err == nil && resp.StatusCode == 101 {
				break
			}
		}
		if time.Now().After(deadline) {
			fail("no upgrade after the descriptors were freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.Close()
	if err := <-done; !errors.Is(err, ErrHubClosed) {
		fail("Serve returned %v", err)
	}
	fmt.Printf("CHILD OK: %d accept errors counted, e.g. %q\n", h.Stats().AcceptErrors, e.Reason)
}
