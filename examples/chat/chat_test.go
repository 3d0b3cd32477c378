package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub/examples/internal/tlsconf"
)

// startChat serves the chat's routes with httptest until the test ends and
// returns the URL of its WebSocket.
func startChat(t *testing.T) string {
	t.Helper()
	c, err := newChat()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.routes())
	t.Cleanup(func() {
		srv.Close()
		c.hub.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// client is a chat client: a gorilla/websocket connection that speaks the
// chat's JSON events.
type client struct {
	*websocket.Conn
	t *testing.T
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, t: t}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(raw)); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next event that is not a periodic SERVER_MSG or a
// join/leave notice, failing on anything that is not a JSON object with an
// event field.
func (c *client) next() event {
	c.t.Helper()
	return c.until(func(e event) bool {
		switch e.Event {
		case "SERVER_MSG", "USER_JOINED", "USER_LEFT", "ONLINE":
			return false
		}
		return true
	})
}

// until returns the first event that ok accepts, skipping the others.
func (c *client) until(ok func(event) bool) event {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			c.t.Fatalf("read (%s): %v", c.LocalAddr(), err)
		}
		var e event
		if err := json.Unmarshal(b, &e); err != nil || e.Event == "" {
			c.t.Fatalf("server sent %q: not a JSON object with an event", b)
		}
		if ok(e) {
			return e
		}
	}
}

func (c *client) expect(event, field, want string) event {
	c.t.Helper()
	e := c.next()
	got := map[string]string{"name": e.Name, "message": e.Message, "error": e.Error, "user": e.User}[field]
	if e.Event != event || !strings.Contains(got, want) {
		c.t.Fatalf("got %+v, want %s with %s containing %q", e, event, field, want)
	}
	return e
}

// closeCode reads until the server's close frame, which gorilla answers,
// and returns its code and reason.
func (c *client) closeCode() (int, string) {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
	}
}

func TestProtocol(t *testing.T) {
	url := startChat(t)
	ann := dial(t, url)
	ann.expect("NAME_SET", "name", "guest-")
	bob := dial(t, url)
	bob.expect("NAME_SET", "name", "guest-")

	ann.send(`{"event":"SET_NAME","new_name":"ann"}`)
	ann.expect("NAME_SET", "name", "ann")
	ann.expect("CHAT_MSG", "message", "is now ann")
	bob.expect("CHAT_MSG", "message", "is now ann")
	bob.send(`{"event":"SET_NAME","new_name":"ann"}`)
	bob.expect("ERROR", "error", "taken")
	bob.send(`{"event":"SET_NAME","new_name":"no spaces please"}`)
	bob.expect("ERROR", "error", "names are")
	bob.send(`{"event":"SET_NAME","new_name":"bob"}`)
	bob.expect("NAME_SET", "name", "bob")
	ann.expect("CHAT_MSG", "message", "is now bob")
	bob.expect("CHAT_MSG", "message", "is now bob")

	ann.send(`{"event":"SAY","message":"hi all"}`)
	ann.expect("CHAT_MSG", "message", "hi all")
	if e := bob.expect("CHAT_MSG", "message", "hi all"); e.User != "ann" || e.Room != "global" {
		t.Errorf("got %+v, want ann in global", e)
	}
	ann.send(`not json`)
	ann.expect("ERROR", "error", "JSON")
	ann.send(`{"event":"DANCE"}`)
	ann.expect("ERROR", "error", "unknown event")
	ann.send(`{"event":"SAY","message":"` + strings.Repeat("x", maxMessage+1) + `"}`)
	ann.expect("ERROR", "error", "at most")
	ann.send(`{"event":"SAY","room":"go","message":"not a member"}`)
	ann.expect("ERROR", "error", "join the room")

	joined := func(user string) func(event) bool {
		return func(e event) bool { return e.Event == "USER_JOINED" && e.User == user && e.Room == "go" }
	}
	ann.send(`{"event":"JOIN","room":"go"}`)
	ann.until(joined("ann")) // ann is in the room
	bob.send(`{"event":"JOIN","room":"go"}`)
	bob.until(joined("bob")) // bob too
	ann.until(joined("bob")) // and ann has read past the notice
	ann.send(`{"event":"SAY","room":"go","message":"gophers only"}`)
	ann.expect("CHAT_MSG", "message", "gophers only")
	if e := bob.expect("CHAT_MSG", "message", "gophers only"); e.Room != "go" {
		t.Errorf("got %+v, want room go", e)
	}
	ann.send(`{"event":"PRIVATE","to":"bob","message":"psst"}`)
	if e := bob.expect("CHAT_MSG", "message", "psst"); !e.Private || e.User != "ann" {
		t.Errorf("got %+v, want a private message from ann", e)
	}
	ann.expect("CHAT_MSG", "message", "psst") // the sender's copy
	ann.send(`{"event":"PRIVATE","to":"nobody","message":"hello?"}`)
	ann.expect("ERROR", "error", "nobody is called")

	bob.send(`{"event":"LEAVE"}`)
	bob.expect("BYE", "", "")
	bob.send(`{"event":"SAY","message":"still here?"}`)
	bob.expect("ERROR", "error", "left the chat")
	ann.send(`{"event":"PRIVATE","to":"bob","message":"gone?"}`)
	ann.expect("ERROR", "error", "nobody is called bob")
	// A frame over the hub's limit closes with 1009.
	ann.send(string(make([]byte, 9<<10)))
	if code, _ := ann.closeCode(); code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized frame ended with %d, want 1009", code)
	}
}

// need returns the path of a tool the test needs. Outside CI a missing tool
// skips the test; in CI (CI=true) it fails it, because ./test.sh installs it.
func need(t *testing.T, env, fallback string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		path = fallback
	}
	if p, err := exec.LookPath(path); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found: run ./test.sh, which installs it", path)
	}
	t.Skipf("%s not found: run ./test.sh to install it", path)
	return ""
}

func chromium(ctx context.Context, bin string, t *testing.T, args ...string) *exec.Cmd {
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}
	return exec.CommandContext(ctx, bin, append(base, args...)...)
}

// TestBrowser has headless Chromium open three chat pages: names are set,
// one says something and the others show it, a private message reaches
// only its recipient, and a reloaded page reconnects. On failure it saves a
// screenshot of the pages and logs its path.
func TestBrowser(t *testing.T) {
	bin := need(t, "WSHUB_CHROMIUM", "chromium")
	results := make(chan []byte, 1)
	runBrowser(t, bin, startHarness(t, results)+"/testdata/harness.html", results)
}

// TestBrowserTLS is TestBrowser over https:// and wss://: the chat's serve
// with a certificate made in memory, as -tls runs it (net/http's ServeTLS;
// the hub upgrades the hijacked *tls.Conn), Chromium told to trust it.
func TestBrowserTLS(t *testing.T) {
	bin := need(t, "WSHUB_CHROMIUM", "chromium")
	results := make(chan []byte, 1)
	runBrowser(t, bin, startHarnessTLS(t, results)+"/testdata/harness.html", results, "--ignore-certificate-errors")
}

// runBrowser has Chromium run the harness at url and fails the test unless
// it reports success on results.
func runBrowser(t *testing.T, bin, url string, results <-chan []byte, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := chromium(ctx, bin, t, append(args, url)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	select {
	case b := <-results:
		json.Unmarshal(b, &res)
	case <-ctx.Done():
		res.Error = "the harness reported nothing; chromium said:\n" + out.String()
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !res.OK {
		shot := filepath.Join(os.TempDir(), "wshub-chat-failure.png")
		screenshot(t, bin, url+"?run=2", shot, args...)
		t.Fatalf("browser test failed: %s (screenshot: %s)", res.Error, shot)
	}
	// WSHUB_SCREENSHOT=path keeps a picture of a run, as in the README.
	if shot := os.Getenv("WSHUB_SCREENSHOT"); shot != "" {
		screenshot(t, bin, url+"?run=2", shot, args...)
	}
}

// startHarness serves the chat, plus the files under testdata at
// /testdata/ and a /result endpoint for the harness's reports, until the
// test ends, and returns the server's http:// URL.
func startHarness(t *testing.T, results chan<- []byte) string {
	t.Helper()
	c, err := newChat()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(harnessMux(c, results))
	t.Cleanup(func() {
		srv.Close()
		c.hub.Close()
	})
	return srv.URL
}

// startHarnessTLS is startHarness through the chat's own serve with a
// self-signed certificate, as -tls serves; it returns the https:// URL.
func startHarnessTLS(t *testing.T, results chan<- []byte) string {
	t.Helper()
	c, err := newChat()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconf.Config("", "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.serve(ctx, ln, harnessMux(c, results), config{tls: cfg}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String()
}

// harnessMux routes the chat, the files under testdata at /testdata/, and
// a /result endpoint for the harness's reports, which go to results.
func harnessMux(c *chat, results chan<- []byte) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", c.routes())
	mux.Handle("/testdata/", http.StripPrefix("/testdata/", http.FileServer(http.Dir("testdata"))))
	var (
		mu      sync.Mutex
		count   int
		counted = make(chan struct{}) // closed, and replaced, on each report
	)
	mux.HandleFunc("/result", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		count++
		close(counted)
		counted = make(chan struct{})
		mu.Unlock()
		select {
		case results <- b:
		default:
		}
	})
	// /done?n=N answers once N results came in: the harness loads it as
	// an image, so that the page's load event, which a screenshot waits
	// for, comes after its run.
	mux.HandleFunc("/done", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for {
			mu.Lock()
			got, next := count, counted
			mu.Unlock()
			if got >= n {
				break
			}
			select {
			case <-next:
			case <-r.Context().Done(): // the browser is gone
				return
			}
		}
		w.Header().Set("Content-Type", "image/gif")
		w.Write([]byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"))
	})
	return mux
}

// screenshot runs the harness again in a fresh browser and saves what the
// three pages show after it.
func screenshot(t *testing.T, bin, url, path string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append(args, "--screenshot="+path, "--window-size=1500,520", "--hide-scrollbars", url)
	if out, err := chromium(ctx, bin, t, args...).CombinedOutput(); err != nil {
		t.Logf("screenshot: %v\n%s", err, out)
	}
}

func TestGuestNamesCannotBeTaken(t *testing.T) {
	url := startChat(t)
	ann := dial(t, url)
	first := ann.expect("NAME_SET", "name", "guest-").Name
	// Today's next guest name, and any other, is refused to SET_NAME.
	for _, name := range []string{first, "guest-2", "guest-99", "Guest-3"} {
		ann.send(`{"event":"SET_NAME","new_name":"` + name + `"}`)
		ann.expect("ERROR", "error", "guest names are given by the server")
	}
	// So the next visitor's guest name is its own: a private message to it
	// reaches exactly one connection.
	bob := dial(t, url)
	second := bob.expect("NAME_SET", "name", "guest-").Name
	if second == first {
		t.Fatalf("two guests are both %s", first)
	}
	ann.send(`{"event":"PRIVATE","to":"` + second + `","message":"for you only"}`)
	bob.expect("CHAT_MSG", "message", "for you only")
	ann.expect("CHAT_MSG", "message", "for you only") // the sender's copy
	ann.send(`{"event":"SAY","message":"marker"}`)
	ann.expect("CHAT_MSG", "message", "marker") // and nothing else before it
}

func TestNamesAreUnique(t *testing.T) {
	url := startChat(t)
	const n = 20
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, url)
		clients[i].expect("NAME_SET", "name", "guest-")
	}
	// Twenty ask for the same name at once: one gets it.
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.WriteMessage(websocket.TextMessage, []byte(`{"event":"SET_NAME","new_name":"zed"}`)) })
	}
	wg.Wait()
	won := 0
	var holder *client
	for _, c := range clients {
		switch e := c.until(func(e event) bool { return e.Event == "NAME_SET" || e.Event == "ERROR" }); {
		case e.Event == "NAME_SET" && e.Name == "zed":
			won++
			holder = c
		case e.Event == "ERROR" && strings.Contains(e.Error, "taken"):
		default:
			t.Errorf("got %+v", e)
		}
	}
	if won != 1 {
		t.Fatalf("%d connections got the name zed, want 1", won)
	}
	// When its holder leaves, the name is free again.
	holder.Close()
	other := clients[0]
	if other == holder {
		other = clients[1]
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		other.send(`{"event":"SET_NAME","new_name":"zed"}`)
		e := other.until(func(e event) bool { return e.Event == "NAME_SET" || e.Event == "ERROR" })
		if e.Event == "NAME_SET" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the name of a closed connection was not freed: %+v", e)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFloodingClientIsClosed(t *testing.T) {
	url := startChat(t)
	reader := dial(t, url)
	reader.expect("NAME_SET", "name", "guest-")
	flood := dial(t, url)
	flood.expect("NAME_SET", "name", "guest-")
	for i := range 500 {
		// Writes fail once the hub has closed the connection.
		if flood.WriteMessage(websocket.TextMessage, []byte(`{"event":"SAY","message":"spam `+strconv.Itoa(i)+`"}`)) != nil {
			break
		}
	}
	if code, reason := flood.closeCode(); code != websocket.ClosePolicyViolation || reason != "rate limit exceeded" {
		t.Fatalf("the flood ended with %d %q, want 1008 rate limit exceeded", code, reason)
	}
	// The reader got the burst the limit lets through, and is still here.
	reader.send(`{"event":"SAY","message":"still reading"}`)
	spam := 0
	reader.until(func(e event) bool {
		if strings.HasPrefix(e.Message, "spam") {
			spam++
		}
		return e.Message == "still reading"
	})
	if spam < 40 || spam > 100 {
		t.Errorf("the reader got %d of the flood, want the burst of 40 and what a second refills", spam)
	}
}

func TestHugeHeaderIsRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, config{}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 64 KiB header: status %d, want 431", resp.StatusCode)
	}
}

// TestPageComesBack: a page that comes back with the last position it saw
// gets the global room's events it missed, in order, then RECOVERED, then
// the live ones; from a position of another epoch, RECOVERED alone.
func TestPageComesBack(t *testing.T) {
	url := startChat(t)
	ann := dial(t, url)
	ann.expect("NAME_SET", "name", "guest-")
	bob := dial(t, url)
	bob.expect("NAME_SET", "name", "guest-")
	ann.send(`{"event":"SAY","message":"before"}`)
	ann.expect("CHAT_MSG", "message", "before")
	var seen struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	bob.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := bob.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var e event
		json.Unmarshal(b, &e)
		if e.Event == "CHAT_MSG" && e.Message == "before" {
			json.Unmarshal(b, &seen)
			break
		}
	}
	if seen.Offset == 0 || seen.Epoch == "" {
		t.Fatalf("the global room's event carries no position: %+v", seen)
	}
	bob.Close()
	ann.send(`{"event":"SAY","message":"while away 1"}`)
	ann.send(`{"event":"SAY","message":"while away 2"}`)
	ann.expect("CHAT_MSG", "message", "while away 1")
	ann.expect("CHAT_MSG", "message", "while away 2")

	back := dial(t, url+"?offset="+strconv.FormatUint(seen.Offset, 10)+"&epoch="+seen.Epoch)
	var missed []string
	back.until(func(e event) bool {
		if e.Event == "CHAT_MSG" {
			missed = append(missed, e.Message)
		}
		if e.Event == "RECOVERED" && !e.Recovered {
			t.Fatal("not recovered")
		}
		return e.Event == "RECOVERED"
	})
	if strings.Join(missed, ",") != "while away 1,while away 2" {
		t.Fatalf("missed %q", missed)
	}
	back.expect("NAME_SET", "name", "guest-")
	ann.send(`{"event":"SAY","message":"live"}`)
	back.expect("CHAT_MSG", "message", "live")

	lost := dial(t, url+"?offset=1&epoch=restarted")
	if e := lost.until(func(e event) bool { return e.Event == "RECOVERED" || e.Event == "CHAT_MSG" }); e.Event != "RECOVERED" || e.Recovered {
		t.Fatalf("from another epoch: %+v", e)
	}
}
