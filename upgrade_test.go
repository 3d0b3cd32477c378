package wshub

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMalformedRequestsGetTheSameAnswer sends each malformed upgrade request
// through every door and checks that each answers with the same status, at
// once: the own listener as net/http does for the ServeHTTP door.
func TestMalformedRequestsGetTheSameAnswer(t *testing.T) {
	t.Parallel()
	key := "Sec-WebSocket-Key: " + testKey + "\r\n"
	good := "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 13\r\n"
	cases := []struct {
		name string
		req  string
		want int
		// viaHTTP is net/http's answer where the own listener is stricter.
		viaHTTP int
	}{
		{name: "valid", req: "GET /ws HTTP/1.1\r\n" + good + "\r\n", want: 101},
		{name: "LF line endings", req: strings.ReplaceAll("GET /ws HTTP/1.1\r\n"+good+"\r\n", "\r\n", "\n"), want: 400, viaHTTP: 101},
		{name: "NUL in a header", req: "GET /ws HTTP/1.1\r\nX-A: a\x00b\r\n" + good + "\r\n", want: 400},
		{name: "control byte in a header", req: "GET /ws HTTP/1.1\r\nX-A: a\x01b\r\n" + good + "\r\n", want: 400},
		{name: "space in a header name", req: "GET /ws HTTP/1.1\r\nX A: b\r\n" + good + "\r\n", want: 400},
		{name: "header without colon", req: "GET /ws HTTP/1.1\r\nXA\r\n" + good + "\r\n", want: 400},
		{name: "garbage request line", req: "HELLO\r\n\r\n", want: 400},
		{name: "no Upgrade", req: "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\n", want: 426},
		{name: "Upgrade: h2c", req: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\n", want: 426},
		{name: "no Connection", req: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\n", want: 400},
		{name: "no Host", req: "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\n", want: 400},
		{name: "no key", req: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", want: 400},
		{name: "bad key", req: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n", want: 400},
		{name: "version 8", req: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 8\r\n\r\n", want: 426},
		{name: "POST", req: "POST /ws HTTP/1.1\r\n" + good + "\r\n", want: 405},
		{name: "HTTP/1.0", req: "GET /ws HTTP/1.0\r\n" + good + "\r\n", want: 505},
	}
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			_, addr := startHub(t, &Options{HandshakeTimeout: 10 * time.Second}, d)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					want := tc.want
					if !d.own && tc.viaHTTP != 0 {
						want = tc.viaHTTP
					}
					c := dial(t, addr)
					c.write([]byte(tc.req))
					start := time.Now()
					if got := c.readResponse(); got != want {
						t.Errorf("status %d, want %d", got, want)
					}
					if took := time.Since(start); took > 3*time.Second {
						t.Errorf("answered after %v: it waited for a timeout", took)
					}
				})
			}
		})
	}
}

// TestRejectionsCarryHeadersAndBody checks that an UpgradeError's headers
// and body reach the client through both doors alike, and that the hub's
// own 503 asks the client to retry later.
func TestRejectionsCarryHeadersAndBody(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxConns = 1
			opts.OnUpgrade = func(r *http.Request) (any, error) {
				if r.URL.Query().Get("token") == "" {
					return nil, &UpgradeError{
						Status: http.StatusUnauthorized,
						Reason: "no token",
						Header: http.Header{"Www-Authenticate": {`Bearer realm="ws"`}, "Content-Type": {"application/json"}},
						Body:   []byte(`{"error":"no token"}`),
					}
				}
				return nil, nil
			}
			_, addr := startHub(t, opts, d)
			resp := rawUpgrade(t, addr, "/ws")
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="ws"` ||
				resp.Header.Get("Content-Type") != "application/json" || resp.body != `{"error":"no token"}` {
				t.Errorf("401: got %d %v %q", resp.StatusCode, resp.Header, resp.body)
			}
			c := dial(t, addr) // takes the one connection
			c.write([]byte(strings.Replace(upgradeRequest(addr), "GET /ws ", "GET /ws?token=1 ", 1)))
			if got := c.readResponse(); got != 101 {
				t.Fatalf("with a token: status %d", got)
			}
			<-rec.opened
			resp = rawUpgrade(t, addr, "/ws?token=1")
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(resp.body, "too many connections") {
				t.Errorf("503: got %d %v %q", resp.StatusCode, resp.Header, resp.body)
			}
		})
	}
}

type response struct {
	*http.Response
	body string
}

// rawUpgrade sends an upgrade request for path and returns the answer.
func rawUpgrade(t *testing.T, addr, path string) response {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := strings.Replace(upgradeRequest(addr), "GET /ws ", "GET "+path+" ", 1)
	nc.Write([]byte(req))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return response{resp, string(b)}
}

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
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fail("setrlimit: %v", err)
	}
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
	done := make(chan error, 1)
	go func() { done <- h.Serve(ln) }()
	// Each client takes a descriptor here and, accepted, one more in the
	// hub: the table fills before the clients run out.
	var clients []net.Conn
	for len(clients) < limit {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break // this side ran out first: enough are queued
		}
		clients = append(clients, nc)
	}
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
