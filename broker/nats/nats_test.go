package natsbroker

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/wshub/wshub"
	"github.com/wshub/wshub/brokertest"
)

// natsServer is a real nats-server, in-process, on a loopback port that
// stays the same across restarts.
type natsServer struct {
	opts *server.Options
	srv  *server.Server
}

func (s *natsServer) start(t *testing.T) {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	s.srv = srv
	s.opts.Port = srv.Addr().(*net.TCPAddr).Port // the same one after a restart
}

func TestContract(t *testing.T) {
	s := &natsServer{opts: &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true}}
	s.start(t)
	t.Cleanup(func() { s.srv.Shutdown() })
	url := s.srv.ClientURL()
	brokertest.Run(t, brokertest.Harness{
		NewBroker: func(t *testing.T) wshub.Broker {
			nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close) // after the hub: cleanups run last-in first-out
			return New(nc, "")
		},
		Stop: func(t *testing.T) {
			s.srv.Shutdown()
			s.srv.WaitForShutdown()
		},
		Start: s.start,
	})
}
