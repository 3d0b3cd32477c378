// Command consumer is a program outside the wshub repository that depends
// on its released modules as a user's program would, with no replace
// directive: `go run . check` in internal/release copies it to a temporary
// directory, requires the published modules at their release version from
// a module proxy made from the working tree, builds it and runs it.
//
// It echoes one message through a hub over a real WebSocket, reads the
// hub's Prometheus metrics, and builds the adapters and brokers against the
// same core.
package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wshub/wshub"
	wshubfiber "github.com/wshub/wshub/adapters/fiber"
	wshubfiber3 "github.com/wshub/wshub/adapters/fiber/fiber3"
	natsbroker "github.com/wshub/wshub/broker/nats"
	redisbroker "github.com/wshub/wshub/broker/redis"
	wshubprom "github.com/wshub/wshub/metrics/prometheus"
	"github.com/wshub/wshub/wsjson"
)

// The brokers implement the core's interface: they go with this core.
var (
	_ wshub.Broker = (*natsbroker.Broker)(nil)
	_ wshub.Broker = (*redisbroker.Broker)(nil)
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run() error {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			wsjson.Write(c, map[string]string{"echo": string(data)})
		},
	})
	if err != nil {
		return err
	}
	defer hub.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(wshubprom.New(hub, nil))
	_ = wshubfiber.Handler(hub)
	_ = wshubfiber3.Handler(hub)

	srv := httptest.NewServer(hub)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wsutil.WriteClientText(conn, []byte("hello")); err != nil {
		return err
	}
	reply, err := wsutil.ReadServerText(conn)
	if err != nil {
		return err
	}
	if string(reply) != `{"echo":"hello"}` {
		return fmt.Errorf("reply %s", reply)
	}
	fmt.Printf("echo: %s\n", reply)

	families, err := reg.Gather()
	if err != nil {
		return err
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			values[f.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if values["wshub_connections"] != 1 || values["wshub_messages_received_total"] != 1 {
		return fmt.Errorf("metrics: %v", values)
	}
	fmt.Printf("metrics: %d families, wshub_connections %v, wshub_messages_received_total %v\n",
		len(families), values["wshub_connections"], values["wshub_messages_received_total"])

	info, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Errorf("no build info")
	}
	for _, d := range info.Deps {
		if strings.HasPrefix(d.Path, "github.com/wshub/") {
			fmt.Printf("built with %s %s\n", d.Path, d.Version)
		}
	}
	return nil
}
