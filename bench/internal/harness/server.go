package harness

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Process is how to start a server: its binary and arguments. Start adds
// -addr, a free loopback port, and the flags the fields ask for.
type Process struct {
	Bin  string
	Args []string
	// HTTPPort gives the HTTP routes (/publish, /stats) a port of their
	// own, passed as -http: cmd/server -listener serves only WebSockets
	// on -addr.
	HTTPPort bool
	// TLS adds -tls: the server speaks wss:// and, on -addr, https://,
	// with a self-signed certificate that the harness trusts blindly.
	TLS bool
	// StatsLines is for a server without a /stats route that prints its
	// memory instead (examples/echo): Start adds -stats and Memory reads
	// the lines.
	StatsLines bool
}

// statsInterval is how often a StatsLines server prints a line: Memory
// waits for one.
const statsInterval = 500 * time.Millisecond

// Server is a running server process, started by Start.
type Server struct {
	Addr     string // the WebSocket routes
	HTTPAddr string // the HTTP routes: Addr, but for HTTPPort

	p        Process
	cmd      *exec.Cmd
	client   *http.Client
	stderr   tail
	latest   atomic.Pointer[statsLine] // StatsLines: the last line printed
	printed  atomic.Int64              // StatsLines: the lines printed so far
	exited   chan struct{}             // closed once the process has exited
	started  atomic.Bool               // it listened: an exit now is news
	stopping atomic.Bool               // Stop killed it: its exit is no news
}

// Start starts p and waits until it listens. Its stderr is kept, not
// shown: it is in the error if the server does not start, and logged if
// it exits by itself after.
func Start(p Process) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: addr, HTTPAddr: addr, p: p, exited: make(chan struct{})}
	args := append(slices.Clone(p.Args), "-addr", addr)
	if p.HTTPPort {
		if s.HTTPAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "-http", s.HTTPAddr)
	}
	if p.TLS {
		args = append(args, "-tls")
	}
	if p.StatsLines {
		args = append(args, "-stats", statsInterval.String())
	}
	s.cmd = exec.Command(p.Bin, args...)
	s.cmd.Stderr = &s.stderr
	if p.StatsLines {
		s.cmd.Stdout = &lineWriter{line: s.statsLine}
	}
	s.client = &http.Client{Timeout: 30 * time.Second}
	if p.TLS {
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go s.wait()
	for _, a := range []string{s.Addr, s.HTTPAddr} {
		if err := waitListening(a, 10*time.Second, s.exited); err != nil {
			s.Stop()
			return nil, fmt.Errorf("%s: %v; its stderr:\n%s", s, err, s.stderr.String())
		}
	}
	s.started.Store(true)
	return s, nil
}

// waitListening waits up to d until addr accepts TCP connections, and
// gives up as soon as exited is closed: a server that exits at start is
// not waited for.
func waitListening(addr string, d time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("nothing listens on " + addr)
}

// String names the server by its command line, for errors and logs.
func (s *Server) String() string {
	return filepath.Base(s.cmd.Path) + " " + strings.Join(s.cmd.Args[1:], " ")
}

func (s *Server) wait() {
	err := s.cmd.Wait()
	if s.started.Load() && !s.stopping.Load() {
		log.Printf("%s exited by itself (%v); its stderr:\n%s", s, err, s.stderr.String())
	}
	close(s.exited)
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	s.stopping.Store(true)
	s.cmd.Process.Kill()
	<-s.exited
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// CPU is the CPU time the server has used.
func (s *Server) CPU() (CPUTime, error) { return CPU(s.PID()) }

// RSS is the server's resident memory.
func (s *Server) RSS() (int64, error) { return RSS(s.PID()) }

// URL is the ws:// (wss:// with TLS) URL of path on the server.
func (s *Server) URL(path string) string {
	if s.p.TLS {
		return "wss://" + s.Addr + path
	}
	return "ws://" + s.Addr + path
}

// Get requests path, with its query, from the server's HTTP routes and
// returns the body; a status other than 200 is an error.
func (s *Server) Get(path string) ([]byte, error) {
	scheme := "http://"
	if s.p.TLS && !s.p.HTTPPort {
		scheme = "https://"
	}
	resp, err := s.client.Get(scheme + s.HTTPAddr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", path, resp.Status)
	}
	return b, err
}

// Memory is what a server holds, sampled after it has collected garbage
// and returned freed memory to the system, so that RSS shows what is live.
type Memory struct {
	RSS        int64 // resident bytes, from /proc/PID/statm
	Heap       int64 // Go heap: HeapAlloc from /stats, heap_inuse from -stats lines
	Goroutines int
}

// Memory samples the server while it holds conns connections. A server
// with a /stats route collects when asked, and its RSS is read after the
// answer. A StatsLines server collects before each line it prints: Memory
// waits (up to 15 s) for a line printed at conns connections, with the
// RSS read as that line arrived.
func (s *Server) Memory(conns int) (Memory, error) {
	if s.p.StatsLines {
		return s.memoryFromLines(conns)
	}
	b, err := s.Get("/stats")
	if err != nil {
		return Memory{}, err
	}
	var st struct {
		Heap       int64 `json:"heap"`
		Goroutines int   `json:"goroutines"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return Memory{}, fmt.Errorf("/stats: %v", err)
	}
	rss, err := s.RSS()
	if err != nil {
		return Memory{}, err
	}
	return Memory{RSS: rss, Heap: st.Heap, Goroutines: st.Goroutines}, nil
}

// statsLine is one line of examples/echo -stats, with the RSS read as it
// came and its number.
type statsLine struct {
	conns int
	Memory
	n int64
}

// parseStatsLine parses a -stats line: "conns=N ... heap_inuse=H ...
// goroutines=G".
func parseStatsLine(text string) statsLine {
	var l statsLine
	for _, f := range strings.Fields(text) {
		k, v, _ := strings.Cut(f, "=")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "conns":
			l.conns = int(n)
		case "heap_inuse":
			l.Heap = n
		case "goroutines":
			l.Goroutines = int(n)
		}
	}
	return l
}

// statsLine keeps a -stats line, with the RSS read as it came: the server
// has just returned freed memory.
func (s *Server) statsLine(text string) {
	l := parseStatsLine(text)
	l.RSS, _ = s.RSS()
	l.n = s.printed.Add(1)
	s.latest.Store(&l)
}

// memoryFromLines waits for a line printed at conns connections after the
// call, up to 15 s.
func (s *Server) memoryFromLines(conns int) (Memory, error) {
	before := s.printed.Load()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if l := s.latest.Load(); l != nil && l.n > before && l.conns == conns {
			return l.Memory, nil
		}
		select {
		case <-s.exited:
			return Memory{}, fmt.Errorf("%s exited", s)
		case <-time.After(statsInterval / 10):
		}
	}
	return Memory{}, fmt.Errorf("%s: no -stats line at %d connections", s, conns)
}

// freeAddr returns a loopback address with a port free now, for a server
// to listen on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tailSize is how much of a server's stderr is kept: its last words.
const tailSize = 4 << 10

// tail keeps the last tailSize bytes written to it: a server's stderr,
// shown only when it fails, since a healthy one can be noisy (net/http
// logs every TLS handshake that WaitPort's probe cuts short).
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailSize {
		t.b = append(t.b[:0], t.b[len(t.b)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lineWriter calls line with each complete line written to it. Only
// exec's copying goroutine writes to it.
type lineWriter struct {
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	w.buf = append(w.buf[:0:0], w.buf...)
	return len(p), nil
}
