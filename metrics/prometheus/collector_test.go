package wshubprom_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/wshub/wshub"
	wshubprom "github.com/wshub/wshub/metrics/prometheus"
)

// exported names the metric each field of wshub.Stats is exported as: the
// test fails when Stats gains a field the collector does not export.
var exported = map[string]string{
	"Conns":           "wshub_connections",
	"Upgrading":       "wshub_connections_upgrading",
	"Portable":        "wshub_connections_portable",
	"Channels":        "wshub_channels",
	"Users":           "wshub_users",
	"Subscriptions":   "wshub_subscriptions",
	"QueuedBytes":     "wshub_queued_bytes",
	"MessagesIn":      "wshub_messages_received_total",
	"BytesIn":         "wshub_received_bytes_total",
	"MessagesOut":     "wshub_messages_sent_total",
	"BytesOut":        "wshub_sent_bytes_total",
	"Writes":          "wshub_writes_total",
	"Dropped":         "wshub_messages_dropped_total",
	"Refused":         "wshub_upgrades_refused_total",
	"Rejected":        "wshub_upgrades_rejected_total",
	"BufferedBytes":   "wshub_buffered_bytes",
	"ReadsPaused":     "wshub_read_pauses_total",
	"Paused":          "wshub_connections_paused",
	"Deflating":       "wshub_connections_deflating",
	"Compressed":      "wshub_messages_compressed_total",
	"ChannelsRefused": "wshub_channels_refused_total",
	"AcceptErrors":    "wshub_accept_errors_total",
	"Handshaking":     "wshub_tls_handshakes_running",
	"HandshakeErrors": "wshub_tls_handshake_errors_total",
	"Closes":          "wshub_closes_total",
	"Reasons":         "wshub_limit_closes_total",
	"PingsSent":       "wshub_pings_sent_total",
	"PongRTT":         "wshub_pong_rtt_seconds", // and wshub_pong_rtt_max_seconds
	"BrokerTopics":    "wshub_broker_topics",
	"BrokerOut":       "wshub_broker_messages_published_total",
	"BrokerIn":        "wshub_broker_messages_received_total",
	"BrokerErrors":    "wshub_broker_errors_total",

	"BrokerConnected":  "wshub_broker_connected",
	"BrokerSince":      "wshub_broker_state_since_seconds",
	"BrokerReconnects": "wshub_broker_reconnects_total",
	"BrokerRefused":    "wshub_broker_publishes_refused_total",
	"BrokerPending":    "wshub_broker_subscriptions_pending",
	"BrokerDuplicates": "wshub_broker_duplicates_total",
	"BrokerLate":       "wshub_broker_late_total",

	"Histories":    "wshub_histories",
	"HistoryBytes": "wshub_history_bytes",
	"Recovered":    "wshub_messages_recovered_total",
	"HistoryGaps":  "wshub_history_gaps_total",
	"ClientAddrs":  "wshub_client_addrs",
	"Conflated":    "wshub_messages_conflated_total",
	"Expiring":     "wshub_connections_expiring",
	"Extended":     "wshub_expiries_extended_total",
}

// scenario runs a hub with real clients through net/http: three
// connections (one refused by OnUpgrade with 401 before them, a fourth
// refused for MaxConns), one room, one user, six
// messages echoed, one connection closed by its client with 1000, and
// pings answered. It returns the hub, the URL of a promhttp handler serving
// the collector, and the registry.
func scenario(t *testing.T) (*wshub.Hub, string) {
	t.Helper()
	opened := make(chan struct{}, 3)
	var n atomic.Int32
	hub, err := wshub.New(&wshub.Options{
		MaxConns:     3,
		PingInterval: 50 * time.Millisecond,
		OnUpgrade: func(r *http.Request) (any, error) {
			if r.URL.Query().Has("deny") {
				return nil, &wshub.UpgradeError{Status: http.StatusUnauthorized, Reason: "log in"}
			}
			return nil, nil
		},
		OnOpen: func(c *wshub.Conn) {
			c.Hub().Channel("room").Subscribe(c)
			if n.Add(1) == 1 {
				c.SetUser("ann")
			}
			opened <- struct{}{}
		},
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(wshubprom.New(hub, nil)) // the one line
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
	})
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	if _, _, _, err := ws.Dial(context.Background(), wsURL+"?deny"); err != ws.StatusError(http.StatusUnauthorized) {
		t.Fatalf("a denied connection got %v, want 401", err)
	}
	var conns []net.Conn
	for range 3 {
		nc, _, _, err := ws.Dial(context.Background(), wsURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		conns = append(conns, nc)
		<-opened
	}
	if _, _, _, err := ws.Dial(context.Background(), wsURL); err == nil {
		t.Fatal("a fourth connection passed MaxConns")
	}
	for _, nc := range conns {
		for range 2 {
			if err := wsutil.WriteClientText(nc, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			// Reading answers the hub's pings as well.
			if p, err := wsutil.ReadServerText(nc); err != nil || string(p) != "hi" {
				t.Fatalf("echo: %q, %v", p, err)
			}
		}
	}
	// The last client stays silent but for pongs until it has answered.
	pongs := make(chan struct{})
	go func() {
		defer close(pongs)
		conns[2].SetReadDeadline(time.Now().Add(10 * time.Second))
		for hub.Stats().PongRTT.Count == 0 {
			if _, err := wsutil.ReadServerText(conns[2]); err != nil {
				return
			}
		}
	}()
	waitFor(t, func() bool { return hub.Stats().PongRTT.Count > 0 })
	conns[2].SetReadDeadline(time.Now()) // ends the reader
	<-pongs
	conns[2].SetReadDeadline(time.Time{})
	ws.WriteFrame(conns[1], ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	waitFor(t, func() bool { return hub.Stats().Conns == 2 })
	return hub, srv.URL + "/metrics"
}

func TestScrape(t *testing.T) {
	t.Parallel()
	_, url := scenario(t)
	// What the scenario fixes exactly, compared in the exposition format.
	const want = `
# HELP wshub_connections Open WebSocket connections.
# TYPE wshub_connections gauge
wshub_connections 2
# HELP wshub_channels Channels with members, user channels not included.
# TYPE wshub_channels gauge
wshub_channels 1
# HELP wshub_subscriptions Channel memberships, user channels included.
# TYPE wshub_subscriptions gauge
wshub_subscriptions 3
# HELP wshub_messages_received_total Complete messages received.
# TYPE wshub_messages_received_total counter
wshub_messages_received_total 6
# HELP wshub_received_bytes_total Payload bytes of the messages received.
# TYPE wshub_received_bytes_total counter
wshub_received_bytes_total 12
# HELP wshub_messages_sent_total Messages sent or queued, one per connection.
# TYPE wshub_messages_sent_total counter
wshub_messages_sent_total 6
# HELP wshub_sent_bytes_total Bytes of the messages sent, on the wire, headers included.
# TYPE wshub_sent_bytes_total counter
wshub_sent_bytes_total 24
# HELP wshub_upgrades_rejected_total Upgrades refused with 503 for MaxConns or MaxTotalQueuedBytes: the hub's limits only, part of wshub_upgrades_refused_total{status="503"}.
# TYPE wshub_upgrades_rejected_total counter
wshub_upgrades_rejected_total 1
# HELP wshub_upgrades_refused_total Upgrade requests answered with an HTTP error instead of 101, by status, on every door: OnUpgrade's refusals, the origin check, malformed requests, 426, and 503s for limits or shutdown.
# TYPE wshub_upgrades_refused_total counter
wshub_upgrades_refused_total{status="400"} 0
wshub_upgrades_refused_total{status="401"} 1
wshub_upgrades_refused_total{status="403"} 0
wshub_upgrades_refused_total{status="426"} 0
wshub_upgrades_refused_total{status="431"} 0
wshub_upgrades_refused_total{status="503"} 1
# HELP wshub_closes_total Connections that ended, by the close code OnClose reported (1006 for those lost without a close frame).
# TYPE wshub_closes_total counter
wshub_closes_total{code="1000"} 1
`
	if err := testutil.ScrapeAndCompare(url, strings.NewReader(want),
		"wshub_connections", "wshub_channels", "wshub_subscriptions",
		"wshub_messages_received_total", "wshub_received_bytes_total",
		"wshub_messages_sent_total", "wshub_sent_bytes_total",
		"wshub_upgrades_rejected_total", "wshub_upgrades_refused_total", "wshub_closes_total"); err != nil {
		t.Error(err)
	}

	// Every Stats field is in the scrape, with a conventional type.
	families := scrape(t, url)
	for _, f := range reflect.VisibleFields(reflect.TypeFor[wshub.Stats]()) {
		name, ok := exported[f.Name]
		if !ok {
			t.Errorf("Stats.%s is not exported by the collector", f.Name)
			continue
		}
		mf := families[name]
		if mf == nil {
			t.Errorf("Stats.%s: %s missing from the scrape", f.Name, name)
			continue
		}
		wantType := dto.MetricType_GAUGE
		switch {
		case strings.HasSuffix(name, "_total"):
			wantType = dto.MetricType_COUNTER
		case f.Name == "PongRTT":
			wantType = dto.MetricType_SUMMARY
		}
		if mf.GetType() != wantType {
			t.Errorf("%s is a %v, want a %v", name, mf.GetType(), wantType)
		}
	}
	if m := families["wshub_users"].GetMetric()[0]; m.GetGauge().GetValue() != 1 {
		t.Errorf("wshub_users = %v, want 1", m.GetGauge().GetValue())
	}
	if m := families["wshub_pings_sent_total"].GetMetric()[0]; m.GetCounter().GetValue() < 1 {
		t.Errorf("wshub_pings_sent_total = %v, want pings", m.GetCounter().GetValue())
	}
	s := families["wshub_pong_rtt_seconds"].GetMetric()[0].GetSummary()
	if s.GetSampleCount() < 1 || len(s.GetQuantile()) != 2 {
		t.Errorf("wshub_pong_rtt_seconds: %d samples, %d quantiles; want pongs, p50 and p99", s.GetSampleCount(), len(s.GetQuantile()))
	}
	if got := len(families["wshub_limit_closes_total"].GetMetric()); got != 9 {
		t.Errorf("wshub_limit_closes_total has %d reasons, want the hub's 9 from zero", got)
	}
}

// scrape fetches url and parses the text exposition format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return families
}

// TestLint runs Prometheus's own linter (what promtool check metrics runs)
// over the collector's metrics.
func TestLint(t *testing.T) {
	t.Parallel()
	hub, err := wshub.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	problems, err := testutil.CollectAndLint(wshubprom.New(hub, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestPromtool checks a live scrape with promtool check metrics, where
// Debian's prometheus package has installed it (./test.sh does not).
func TestPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	_, url := scenario(t)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestOptions checks the namespace and constant labels, with which two hubs
// register side by side.
func TestOptions(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	for _, name := range []string{"chat", "feed"} {
		hub, err := wshub.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hub.Close()
		reg.MustRegister(wshubprom.New(hub, &wshubprom.Options{Namespace: "app", ConstLabels: prometheus.Labels{"hub": name}}))
	}
	const want = `
# HELP app_connections Open WebSocket connections.
# TYPE app_connections gauge
app_connections{hub="chat"} 0
app_connections{hub="feed"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "app_connections"); err != nil {
		t.Error(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
