package redisbroker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wshub/wshub"
	"github.com/wshub/wshub/brokertest"
)

// redisServer is a real redis-server (the Debian package test.sh installs)
// on a free loopback port that stays the same across restarts, without
// persistence.
type redisServer struct {
	bin  string
	port int
	cmd  *exec.Cmd
}

func (s *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

func (s *redisServer) start(t *testing.T) {
	s.cmd = exec.Command(s.bin, "--port", fmt.Sprint(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes")
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", s.addr()); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) stop(*testing.T) {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func (s *redisServer) signal(t *testing.T, sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// quiet drops go-redis's log lines: one per failed dial while the server is
// down.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// harness starts a redis-server process for the test and returns the
// contract's harness on it.
func harness(t *testing.T) brokertest.Harness {
	redis.SetLogger(quiet{})
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found: test.sh installs it (Debian package redis-server)")
		}
		t.Skip("redis-server not found; ./test.sh installs it")
	}
	s := &redisServer{bin: bin, port: freePort(t)}
	s.start(t)
	t.Cleanup(func() { s.stop(t) })
	return brokertest.Harness{
		NewBroker: func(t *testing.T) wshub.Broker {
			// go-redis's own retries stay on: the hub drops what they send
			// twice.
			rdb := redis.NewClient(&redis.Options{Addr: s.addr(), ContextTimeoutEnabled: true})
			b := New(rdb, "")
			t.Cleanup(func() { // after the hub: cleanups run last-in first-out
				b.Close()
				rdb.Close()
			})
			return b
		},
		Stop:   s.stop,
		Start:  s.start,
		Freeze: func(t *testing.T) { s.signal(t, syscall.SIGSTOP) },
		Thaw:   func(t *testing.T) { s.signal(t, syscall.SIGCONT) },
		DeleteHistory: func(t *testing.T, channel string) {
			rdb := redis.NewClient(&redis.Options{Addr: s.addr()})
			defer rdb.Close()
			b := New(rdb, "")
			defer b.Close()
			keys := b.keys("c:" + channel)
			if err := rdb.Del(context.Background(), keys[0]).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestContract(t *testing.T) { brokertest.Run(t, harness(t)) }

// TestFaultTable writes the fault table with -faults-md (see ../faults.sh).
func TestFaultTable(t *testing.T) { brokertest.FaultTable(t, harness, "Redis faults") }
