// Package wshubprom exports a wshub.Hub's statistics to Prometheus, in one
// line:
//
//	prometheus.MustRegister(wshubprom.New(hub, nil))
//
// The collector takes one wshub.Hub.Stats snapshot per scrape and exposes
// every field of it (see the table in the package's README section of the
// repository, or Describe): gauges for what is open now, counters with the
// _total suffix for what happened since the hub started, closes by code and
// by the hub's reason and refused upgrades by HTTP status as labels, and the
// pong round trip as a summary.
// Nothing is counted on the hub's paths for the collector's sake: a hub that
// is never scraped costs nothing more.
package wshubprom

import (
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wshub/wshub"
)

// Options configures a Collector. The zero value, or nil, is the default.
type Options struct {
	// Namespace prefixes every metric name; "wshub" by default, which
	// gives wshub_connections and the like.
	Namespace string
	// ConstLabels are added to every metric, to tell several hubs of one
	// process apart, for example {"hub": "chat"}. None by default.
	ConstLabels prometheus.Labels
}

// A Collector is a prometheus.Collector for one hub. It is safe for
// concurrent use, as Prometheus requires; each Collect reads one snapshot
// of the hub's statistics.
type Collector struct {
	hub     *wshub.Hub
	metrics []metric
	closes  *prometheus.Desc // by code
	reasons *prometheus.Desc // by the hub's reason
	refused *prometheus.Desc // by HTTP status
	rtt     *prometheus.Desc
}

// metric is one number of wshub.Stats.
type metric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*wshub.Stats) float64
}

// reasons are the hub's close reasons, exported at zero before they occur
// so that rate() and alerts see them from the start.
var reasons = []string{
	wshub.ReasonSlowConsumer, wshub.ReasonRateLimit, wshub.ReasonReadTimeout,
	wshub.ReasonPongTimeout, wshub.ReasonHandshakeTimeout, wshub.ReasonIdleTimeout,
	wshub.ReasonMaxLifetime, wshub.ReasonEmptyFragments, wshub.ReasonExpired,
}

// statuses are the HTTP statuses the hub itself refuses upgrades with,
// exported at zero before they occur, as reasons are; the statuses of the
// application's refusals (OnUpgrade's 401, say) appear with their first.
var statuses = []int{400, 403, 426, 431, 503}

// New returns a collector of hub's statistics; opts may be nil.
func New(hub *wshub.Hub, opts *Options) *Collector {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Namespace == "" {
		o.Namespace = "wshub"
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(o.Namespace, "", name), help, labels, o.ConstLabels)
	}
	gauge := func(name, help string, f func(*wshub.Stats) float64) metric {
		return metric{desc(name, help), prometheus.GaugeValue, f}
	}
	counter := func(name, help string, f func(*wshub.Stats) float64) metric {
		return metric{desc(name, help), prometheus.CounterValue, f}
	}
	return &Collector{
		hub: hub,
		metrics: []metric{
			gauge("connections", "Open WebSocket connections.", func(s *wshub.Stats) float64 { return float64(s.Conns) }),
			gauge("connections_upgrading", "Connections of the hub's own listener still sending their upgrade request.", func(s *wshub.Stats) float64 { return float64(s.Upgrading) }),
			gauge("channels", "Channels with members, user channels not included.", func(s *wshub.Stats) float64 { return float64(s.Channels) }),
			gauge("users", "Users with connections (Conn.SetUser).", func(s *wshub.Stats) float64 { return float64(s.Users) }),
			gauge("subscriptions", "Channel memberships, user channels included.", func(s *wshub.Stats) float64 { return float64(s.Subscriptions) }),
			gauge("queued_bytes", "Bytes queued for all connections, not yet written.", func(s *wshub.Stats) float64 { return float64(s.QueuedBytes) }),
			counter("messages_received_total", "Complete messages received.", func(s *wshub.Stats) float64 { return float64(s.MessagesIn) }),
			counter("received_bytes_total", "Payload bytes of the messages received.", func(s *wshub.Stats) float64 { return float64(s.BytesIn) }),
			counter("messages_sent_total", "Messages sent or queued, one per connection.", func(s *wshub.Stats) float64 { return float64(s.MessagesOut) }),
			counter("sent_bytes_total", "Bytes of the messages sent, on the wire, headers included.", func(s *wshub.Stats) float64 { return float64(s.BytesOut) }),
			counter("writes_total", "System calls that wrote frames to sockets; messages sent per write is what coalescing buys.", func(s *wshub.Stats) float64 { return float64(s.Writes) }),
			counter("messages_dropped_total", "Messages dropped for slow consumers.", func(s *wshub.Stats) float64 { return float64(s.Dropped) }),
			counter("upgrades_rejected_total", "Upgrades refused with 503 for MaxConns or MaxTotalQueuedBytes: the hub's limits only, part of wshub_upgrades_refused_total{status=\"503\"}.", func(s *wshub.Stats) float64 { return float64(s.Rejected) }),
			gauge("buffered_bytes", "Memory held for incomplete inbound frames, messages and upgrade requests (MaxTotalBufferedBytes).", func(s *wshub.Stats) float64 { return float64(s.BufferedBytes) }),
			counter("read_pauses_total", "Times a connection stopped being read because the inbound budget was spent.", func(s *wshub.Stats) float64 { return float64(s.ReadsPaused) }),
			gauge("connections_paused", "Connections not read now because the inbound budget is spent.", func(s *wshub.Stats) float64 { return float64(s.Paused) }),
			gauge("connections_portable", "Connections served by a goroutine each (the portable path): on the loops with Hub.Listener, wss:// through net/http is not among them.", func(s *wshub.Stats) float64 { return float64(s.Portable) }),
			gauge("connections_deflating", "Open connections that negotiated permessage-deflate.", func(s *wshub.Stats) float64 { return float64(s.Deflating) }),
			counter("messages_compressed_total", "Messages sent compressed (permessage-deflate), once per publish however many members take it; those under Compression.Threshold or that deflate does not shrink go out plain and are not counted.", func(s *wshub.Stats) float64 { return float64(s.Compressed) }),
			counter("channels_refused_total", "Subscriptions refused for MaxChannels.", func(s *wshub.Stats) float64 { return float64(s.ChannelsRefused) }),
			counter("accept_errors_total", "Failed accepts on the hub's own listeners.", func(s *wshub.Stats) float64 { return float64(s.AcceptErrors) }),
			gauge("tls_handshakes_running", "TLS handshakes ServeTLS runs now (at most MaxHandshakes).", func(s *wshub.Stats) float64 { return float64(s.Handshaking) }),
			counter("tls_handshake_errors_total", "TLS handshakes on ServeTLS that failed or outlasted HandshakeTimeout.", func(s *wshub.Stats) float64 { return float64(s.HandshakeErrors) }),
			counter("pings_sent_total", "Pings the hub sent to silent connections.", func(s *wshub.Stats) float64 { return float64(s.PingsSent) }),
			gauge("pong_rtt_max_seconds", "Longest time from a ping to its pong.", func(s *wshub.Stats) float64 { return s.PongRTT.Max.Seconds() }),
			gauge("broker_topics", "Broker topics subscribed.", func(s *wshub.Stats) float64 { return float64(s.BrokerTopics) }),
			counter("broker_messages_published_total", "Messages published to the broker.", func(s *wshub.Stats) float64 { return float64(s.BrokerOut) }),
			counter("broker_messages_received_total", "Messages received from the broker: other hubs' publishes.", func(s *wshub.Stats) float64 { return float64(s.BrokerIn) }),
			counter("broker_errors_total", "Broker failures: refused publishes, subscriptions retried.", func(s *wshub.Stats) float64 { return float64(s.BrokerErrors) }),
			gauge("broker_connected", "1 while the broker is connected, 0 while it is away.", func(s *wshub.Stats) float64 { return b2f(s.BrokerConnected) }),
			gauge("broker_state_since_seconds", "Unix time of the broker's last change of state (connected or away).", func(s *wshub.Stats) float64 { return float64(s.BrokerSince.UnixNano()) / 1e9 }),
			counter("broker_reconnects_total", "Times the broker came back after it was away.", func(s *wshub.Stats) float64 { return float64(s.BrokerReconnects) }),
			counter("broker_publishes_refused_total", "Publishes to other hubs that failed: the broker was away, refused them or did not take them within BrokerTimeout.", func(s *wshub.Stats) float64 { return float64(s.BrokerRefused) }),
			gauge("broker_subscriptions_pending", "Topics whose subscription waits for the broker.", func(s *wshub.Stats) float64 { return float64(s.BrokerPending) }),
			counter("broker_duplicates_total", "Messages from the broker dropped because they were delivered already.", func(s *wshub.Stats) float64 { return float64(s.BrokerDuplicates) }),
			gauge("client_addrs", "Client addresses the per-address limits remember (MaxConnsPerAddr, UpgradesPerAddr).", func(s *wshub.Stats) float64 { return float64(s.ClientAddrs) }),
			counter("messages_conflated_total", "Queued messages SlowConflate replaced with a newer one of the same channel.", func(s *wshub.Stats) float64 { return float64(s.Conflated) }),
			gauge("connections_expiring", "Open connections with a credential expiry (Conn.SetExpiry); those closed when it passed are wshub_limit_closes_total{reason=\"credentials expired\"}.", func(s *wshub.Stats) float64 { return float64(s.Expiring) }),
			counter("expiries_extended_total", "Connection expiries that OnExpiring pushed back.", func(s *wshub.Stats) float64 { return float64(s.Extended) }),
			gauge("histories", "Channels that keep a history (Options.ChannelHistory).", func(s *wshub.Stats) float64 { return float64(s.Histories) }),
			gauge("history_bytes", "Bytes the channels' histories hold, counted against MaxHistoryBytes.", func(s *wshub.Stats) float64 { return float64(s.HistoryBytes) }),
			counter("messages_recovered_total", "Messages Channel.Recover sent from a history to members that came back.", func(s *wshub.Stats) float64 { return float64(s.Recovered) }),
			counter("history_gaps_total", "Messages of channels' broker streams this hub's members missed: gone from the stream when asked for, or lost with the broker.", func(s *wshub.Stats) float64 { return float64(s.HistoryGaps) }),
			counter("broker_late_total", "Messages from the broker dropped because they arrived more than BrokerTimeout after their publish.", func(s *wshub.Stats) float64 { return float64(s.BrokerLate) }),
		},
		closes:  desc("closes_total", "Connections that ended, by the close code OnClose reported (1006 for those lost without a close frame).", "code"),
		reasons: desc("limit_closes_total", "Connections the hub closed for a limit or a timeout, by reason.", "reason"),
		refused: desc("upgrades_refused_total", "Upgrade requests answered with an HTTP error instead of 101, by status, on every door: OnUpgrade's refusals, the origin check, malformed requests, 426, and 503s for limits or shutdown.", "status"),
		rtt:     desc("pong_rtt_seconds", "Time from the hub's pings to their pongs; quantiles are upper bounds from power-of-two millisecond buckets."),
	}
}

// Describe sends the descriptions of every metric the collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
	ch <- c.closes
	ch <- c.reasons
	ch <- c.refused
	ch <- c.rtt
}

// Collect takes one snapshot of the hub's statistics and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.hub.Stats()
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(&s))
	}
	for code, n := range s.Closes {
		ch <- prometheus.MustNewConstMetric(c.closes, prometheus.CounterValue, float64(n), strconv.Itoa(int(code)))
	}
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(c.reasons, prometheus.CounterValue, float64(s.Reasons[r]), r)
	}
	for r, n := range s.Reasons {
		if !slices.Contains(reasons, r) { // one this package does not know yet
			ch <- prometheus.MustNewConstMetric(c.reasons, prometheus.CounterValue, float64(n), r)
		}
	}
	for _, st := range statuses {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(s.Refused[st]), strconv.Itoa(st))
	}
	for st, n := range s.Refused {
		if !slices.Contains(statuses, st) {
			ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(n), strconv.Itoa(st))
		}
	}
	rtt := s.PongRTT
	ch <- prometheus.MustNewConstSummary(c.rtt, rtt.Count, rtt.Mean.Seconds()*float64(rtt.Count),
		map[float64]float64{0.5: rtt.P50.Seconds(), 0.99: rtt.P99.Seconds()})
}

// b2f is 1 for true and 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
