package wshubprom_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wshub/wshub"
	wshubprom "github.com/wshub/wshub/metrics/prometheus"
)

// A hub exported at /metrics next to its WebSocket route. One client
// connects; another, without a token, is refused by OnUpgrade with 401,
// which the scrape shows in wshub_upgrades_refused_total. The hub's own
// refusal statuses are there at zero from the start.
func ExampleNew() {
	hub, err := wshub.New(&wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			if r.URL.Query().Get("token") == "" {
				return nil, &wshub.UpgradeError{Status: http.StatusUnauthorized, Reason: "log in"}
			}
			return nil, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()

	// In a service: prometheus.MustRegister(wshubprom.New(hub, nil)) and
	// promhttp.Handler() on the default registry.
	reg := prometheus.NewRegistry()
	reg.MustRegister(wshubprom.New(hub, nil))
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	conn, _, _, err := ws.Dial(context.Background(), wsURL+"?token=ann")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	_, _, _, err = ws.Dial(context.Background(), wsURL)
	fmt.Println("without a token:", err)

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if l := lines.Text(); strings.HasPrefix(l, "wshub_connections ") || strings.HasPrefix(l, "wshub_upgrades_refused_total{") {
			fmt.Println(l)
		}
	}
	// Output:
	// without a token: unexpected HTTP response status: 401
	// wshub_connections 1
	// wshub_upgrades_refused_total{status="400"} 0
	// wshub_upgrades_refused_total{status="401"} 1
	// wshub_upgrades_refused_total{status="403"} 0
	// wshub_upgrades_refused_total{status="426"} 0
	// wshub_upgrades_refused_total{status="431"} 0
	// wshub_upgrades_refused_total{status="503"} 0
}
