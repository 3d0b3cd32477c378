package natsbroker

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/wshub/wshub"
	"github.com/wshub/wshub/brokertest"
)

// natsServer is a real nats-server process, built from the module this one
// requires, on a loopback port that stays the same across restarts: a
// process, so that the faults can kill it and freeze it.
type natsServer struct {
	bin   string
	port  int
	store string // JetStream's, kept across restarts
	cmd   *exec.Cmd
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *natsServer) start(t *testing.T) {
	s.cmd = exec.Command(s.bin, "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.store)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port)); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nats-server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *natsServer) stop(*testing.T) {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func (s *natsServer) signal(t *testing.T, sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// buildServer builds nats-server from the module's requirement.
func buildServer(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "nats-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		t.Fatalf("building nats-server: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// harness starts a nats-server process for the test and returns the
// contract's harness on it.
func harness(t *testing.T) brokertest.Harness {
	s := &natsServer{bin: buildServer(t), port: freePort(t), store: t.TempDir()}
	s.start(t)
	t.Cleanup(func() { s.stop(t) })
	return brokertest.Harness{
		NewBroker: func(t *testing.T) wshub.Broker {
			nc, err := nats.Connect(s.url(),
				nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
				nats.ReconnectWait(50*time.Millisecond), nats.Timeout(500*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close) // after the hub: cleanups run last-in first-out
			return New(nc, "")
		},
		Stop:   s.stop,
		Start:  s.start,
		Freeze: func(t *testing.T) { s.signal(t, syscall.SIGSTOP) },
		Thaw:   func(t *testing.T) { s.signal(t, syscall.SIGCONT) },
		DeleteHistory: func(t *testing.T, channel string) {
			nc, err := nats.Connect(s.url())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			name, _ := New(nc, "").stream("c:" + channel)
			if err := js.DeleteStream(context.Background(), name); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestContract(t *testing.T) { brokertest.Run(t, harness(t)) }

// TestFaultTable writes the fault table with -faults-md (see ../faults.sh).
func TestFaultTable(t *testing.T) { brokertest.FaultTable(t, harness, "NATS faults") }
