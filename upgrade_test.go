package wshub

import (
	"bufio"
	"io"
	"net/http"
	"strings"
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
		// viaHTTP is net/http's answer where the own listener is stricter;
		// viaReader the answer behind an accept loop that parses requests
		// with http.ReadRequest, which is laxer than net/http's server.
		viaHTTP, viaReader int
	}{
		{name: "valid", req: "GET /ws HTTP/1.1\r\n" + good + "\r\n", want: 101},
		{name: "LF line endings", req: strings.ReplaceAll("GET /ws HTTP/1.1\r\n"+good+"\r\n", "\r\n", "\n"), want: 400, viaHTTP: 101},
		{name: "NUL in a header", req: "GET /ws HTTP/1.1\r\nX-A: a\x00b\r\n" + good + "\r\n", want: 400},
		{name: "control byte in a header", req: "GET /ws HTTP/1.1\r\nX-A: a\x01b\r\n" + good + "\r\n", want: 400},
		{name: "space in a header name", req: "GET /ws HTTP/1.1\r\nX A: b\r\n" + good + "\r\n", want: 400, viaReader: 101},
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
		{name: "Content-Length: 0", req: "GET /ws HTTP/1.1\r\nContent-Length: 0\r\n" + good + "\r\n", want: 101},
		{name: "a body by Content-Length", req: "GET /ws HTTP/1.1\r\nContent-Length: 10\r\n" + good + "\r\n0123456789", want: 400},
		{name: "a chunked body", req: "GET /ws HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" + good + "\r\na\r\n0123456789\r\n0\r\n\r\n", want: 400},
		{name: "a body and no Upgrade", req: "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nContent-Length: 2\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\nab", want: 426},
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
					if d.handoff == handoffRequest && tc.viaReader != 0 {
						want = tc.viaReader
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
	nc, err := dialNet(addr)
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

func TestSubprotocols(t *testing.T) {
	t.Parallel()
	cases := []struct{ offer, want string }{
		{"chat.v2, chat.v1", "chat.v1"}, // the hub's preference
		{"chat.v2", "chat.v2"},
		{"other", ""}, // none of the hub's: upgraded without one
		{"", ""},
	}
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.Subprotocols = []string{"chat.v1", "chat.v2"}
			_, addr := startHub(t, opts, d)
			for _, tc := range cases {
				c := dial(t, addr)
				var extra []string
				if tc.offer != "" {
					extra = append(extra, "Sec-WebSocket-Protocol: "+tc.offer)
				}
				c.write([]byte(upgradeRequest(addr, extra...)))
				c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(c.br, nil)
				if err != nil || resp.StatusCode != 101 {
					t.Fatalf("%q: %v %v", tc.offer, resp, err)
				}
				if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tc.want {
					t.Errorf("%q: answered %q, want %q", tc.offer, got, tc.want)
				}
				if got := (<-rec.opened).Subprotocol(); got != tc.want {
					t.Errorf("%q: Conn.Subprotocol() = %q, want %q", tc.offer, got, tc.want)
				}
			}
		})
	}
	if _, err := New(&Options{Subprotocols: []string{"bad proto"}}); err == nil {
		t.Error("a subprotocol with a space was accepted")
	}
}
