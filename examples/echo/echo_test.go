package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub/examples/internal/tlsconf"
)

// TestEcho is the test to copy into your own project: the hub served by
// httptest, a common client (gorilla/websocket), messages out and back,
// and the close handshake. Each message comes back unchanged, compressed
// when the client negotiated permessage-deflate.
func TestEcho(t *testing.T) {
	hub, err := newHub(config{deflate: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub) // or your mux, with the hub on a route
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	for _, compress := range []bool{false, true} {
		echoCheck(t, websocket.Dialer{EnableCompression: compress}, url)
	}
}

// TestEchoPerAddrFlags checks -max-conns-per-addr: past the limit a client
// gets 429 with Retry-After.
func TestEchoPerAddrFlags(t *testing.T) {
	hub, err := newHub(config{maxConnsPerAddr: 1, upgradesPerAddr: 100})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	first, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a second connection from the address: %v, %v; want 429 with Retry-After", err, resp)
	}
}

// TestEchoTLS is TestEcho over wss://, on both doors, as -tls serves: the
// certificate is made in memory and the client trusts it blindly.
func TestEchoTLS(t *testing.T) {
	for _, own := range []bool{false, true} {
		url := startEchoTLS(t, own)
		for _, compress := range []bool{false, true} {
			echoCheck(t, websocket.Dialer{
				EnableCompression: compress,
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			}, url)
		}
	}
}

// TestEchoMaxMessage runs the echo as -max-message 67108864 configures it
// and echoes a 16 MiB text and a 16 MiB binary message, whole, on both
// doors over ws:// and wss:// (issue 23: over ws:// the hub cut an 8 MiB
// echo with a close frame inside it; over wss:// it refused every echo of
// 4 MiB or more as a slow consumer). The client reads as fast as it can.
func TestEchoMaxMessage(t *testing.T) {
	const maxMessage = 64 << 20
	opts := hubOptions(config{maxMessage: maxMessage})
	if opts.MaxMessageSize != maxMessage || opts.MaxQueuedBytes < maxMessage+frameHeader {
		t.Fatalf("-max-message %d: MaxMessageSize %d, MaxQueuedBytes %d, want %[1]d and at least %d",
			maxMessage, opts.MaxMessageSize, opts.MaxQueuedBytes, maxMessage+frameHeader)
	}
	if opts.MaxTotalBufferedBytes != 0 && opts.MaxTotalBufferedBytes < maxMessage {
		t.Fatalf("MaxTotalBufferedBytes %d is below the message limit", opts.MaxTotalBufferedBytes)
	}
	if o := hubOptions(config{maxMessage: 1000}); o.MaxQueuedBytes != defaultQueue {
		t.Errorf("-max-message 1000: MaxQueuedBytes %d, want the default %d kept", o.MaxQueuedBytes, defaultQueue)
	}

	// 16 MiB, as conformance suites send; ASCII, so valid as text, and no
	// two neighbouring 1 KiB blocks alike, so that a block lost or moved
	// shows.
	msg := make([]byte, 16<<20)
	for i := range msg {
		msg[i] = 'a' + byte((i+i>>10)%26)
	}
	for _, d := range doorCases {
		t.Run(d.name, func(t *testing.T) {
			args := []string{"-max-message", "67108864", "-addr", "127.0.0.1:0"}
			if d.own {
				args = append(args, "-listener")
			}
			if d.tls {
				args = append(args, "-tls")
			}
			_, cfg, err := parseFlags(flag.NewFlagSet("echo", flag.ContinueOnError), args)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.maxMessage != maxMessage || cfg.own != d.own || (cfg.tls != nil) != d.tls {
				t.Fatalf("flags %q parsed as %+v", args, cfg)
			}
			url := startEchoConfig(t, cfg)
			// No compression: the frames go out as large as the messages.
			dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			c, _, err := dialer.Dial(url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, typ := range []int{websocket.TextMessage, websocket.BinaryMessage} {
				start := time.Now()
				c.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if err := c.WriteMessage(typ, msg); err != nil {
					t.Fatalf("type %d: sending %d bytes: %v (the hub did not read them within 30s)", typ, len(msg), err)
				}
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				got, data, err := c.ReadMessage()
				if err != nil {
					t.Fatalf("type %d: %d bytes sent; reading the echo: %v", typ, len(msg), err)
				}
				if got != typ || !bytes.Equal(data, msg) {
					t.Fatalf("type %d, %d bytes sent; got type %d, %d bytes, first difference at %d",
						typ, len(msg), got, len(data), firstDiff(data, msg))
				}
				t.Logf("type %d: 16 MiB echoed in %v", typ, time.Since(start).Round(time.Millisecond))
			}
			c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Errorf("the close ended with %v, want 1000 echoed", err)
			}
		})
	}
}

// firstDiff returns the index of the first byte where a and b differ, or
// the shorter length.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// echoCheck dials url with dialer, sends a text and a 300 kB binary
// message, checks that they come back unchanged, and closes with 4000,
// which the hub must echo.
func echoCheck(t *testing.T, dialer websocket.Dialer, url string) {
	t.Helper()
	compress := dialer.EnableCompression
	c, resp, err := dialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if got := strings.Contains(ext, "permessage-deflate"); got != compress {
		t.Errorf("%s, compression %v: the hub answered extensions %q", url, compress, ext)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, m := range []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello")},
		{websocket.BinaryMessage, bytes.Repeat([]byte("wshub "), 50_000)}, // 300 kB
	} {
		if err := c.WriteMessage(m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Errorf("%s, compression %v: sent type %d, %d bytes; got type %d, %d bytes", url, compress, m.typ, len(m.data), typ, len(data))
		}
	}
	// The client closes with 4000: the hub answers with the same code.
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"))
	_, _, err = c.ReadMessage()
	if ce := (*websocket.CloseError)(nil); !errors.As(err, &ce) || ce.Code != 4000 {
		t.Errorf("%s, compression %v: the close ended with %v, want 4000 echoed", url, compress, err)
	}
}

// startEcho runs the example's serve on a free loopback port until the test
// ends, and returns its WebSocket URL.
func startEcho(t *testing.T, own bool) string {
	t.Helper()
	return startEchoConfig(t, config{own: own, deflate: true})
}

// startEchoTLS is startEcho over wss://, with a certificate made in memory
// as -tls makes it; it returns the wss:// URL.
func startEchoTLS(t *testing.T, own bool) string {
	t.Helper()
	cfg, err := tlsconf.Config("", "")
	if err != nil {
		t.Fatal(err)
	}
	return startEchoConfig(t, config{own: own, deflate: true, tls: cfg})
}

// startEchoConfig runs serve with cfg on a free loopback port until the
// test ends, and returns its ws:// or wss:// URL.
func startEchoConfig(t *testing.T, cfg config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	if cfg.tls != nil {
		return "wss://" + ln.Addr().String() + "/ws"
	}
	return "ws://" + ln.Addr().String() + "/ws"
}

// doorCase is a way the interoperability tests reach the echo: either
// door, ws:// or wss://.
type doorCase struct {
	name     string
	own, tls bool
}

var doorCases = []doorCase{
	{"net/http", false, false},
	{"own listener", true, false},
	{"net/http wss", false, true},
	{"own listener wss", true, true},
}

// start runs the echo the case's way and returns its URL.
func (d doorCase) start(t *testing.T) string {
	t.Helper()
	if d.tls {
		return startEchoTLS(t, d.own)
	}
	return startEcho(t, d.own)
}

// need returns the path of a tool the test needs. Outside CI a missing tool
// skips the test; in CI (CI=true) it fails it, because ./test.sh installs
// every tool and a silent skip would hide a broken install.
func need(t *testing.T, env, fallback string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		path = fallback
	}
	if _, err := os.Stat(path); err != nil {
		if p, err2 := exec.LookPath(path); err2 == nil {
			return p
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (%v): run ./test.sh, which installs it", path, err)
		}
		t.Skipf("%s not found: run ./test.sh to install it", path)
	}
	return path
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestNodeWSClient(t *testing.T) {
	modules := need(t, "WSHUB_NODE_MODULES", filepath.Join(repoRoot(t), ".tools", "node", "node_modules"))
	node := need(t, "WSHUB_NODE", "node")
	for _, d := range doorCases {
		t.Run(d.name, func(t *testing.T) {
			url := d.start(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "testdata/client.js", url)
			cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node client: %v\n%s", err, out)
			}
			var r struct {
				OK       bool   `json:"ok"`
				Code     int    `json:"code"`
				Reason   string `json:"reason"`
				Messages int    `json:"messages"`
				Deflate  bool   `json:"deflate"`
			}
			if err := json.Unmarshal([]byte(lastLine(out)), &r); err != nil {
				t.Fatalf("node client printed %q: %v", out, err)
			}
			if !r.OK || r.Code != 4000 || r.Messages != 6 || !r.Deflate {
				t.Errorf("node client result %+v, want ok, close 4000 echoed, 6 messages, permessage-deflate", r)
			}
		})
	}
}

func TestChromium(t *testing.T) {
	chromium := need(t, "WSHUB_CHROMIUM", "/usr/bin/chromium")
	page, err := os.ReadFile("testdata/page.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doorCases {
		t.Run(d.name, func(t *testing.T) {
			wsURL := d.start(t)
			results := make(chan []byte, 1)
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.Write(page)
			})
			mux.HandleFunc("/result", func(w http.ResponseWriter, r *http.Request) {
				var b strings.Builder
				buf := make([]byte, 4096)
				for {
					n, err := r.Body.Read(buf)
					b.Write(buf[:n])
					if err != nil {
						break
					}
				}
				select {
				case results <- []byte(b.String()):
				default:
				}
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: mux}
			go srv.Serve(ln)
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// The page is http://, the echo wss:// with a self-signed
			// certificate that Chromium is told to trust.
			cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
				"--disable-background-networking", "--no-first-run", "--disable-dev-shm-usage",
				"--ignore-certificate-errors", "--user-data-dir="+t.TempDir(),
				"http://"+ln.Addr().String()+"/?ws="+wsURL)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
			}()
			select {
			case res := <-results:
				var r struct {
					OK       bool `json:"ok"`
					Code     int  `json:"code"`
					Clean    bool `json:"clean"`
					Messages int  `json:"messages"`
				}
				if err := json.Unmarshal(res, &r); err != nil {
					t.Fatalf("page reported %q: %v", res, err)
				}
				if !r.OK {
					t.Errorf("page result %+v, want all 3 echoes and a clean close 1000", r)
				}
			case <-ctx.Done():
				t.Fatalf("the page reported nothing in time; chromium said:\n%s", out.String())
			}
		})
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
