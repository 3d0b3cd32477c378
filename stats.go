package wshub

import (
	"encoding/json"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SlowPolicy is what happens to a message for a connection that does not
// read fast enough: one whose queue of unsent bytes the message would push
// past Options.MaxQueuedBytes.
type SlowPolicy uint8

const (
	// SlowDefault defers to the channel's policy, then the hub's.
	SlowDefault SlowPolicy = iota
	// SlowClose closes the connection with ClosePolicyViolation, "slow
	// consumer"; a write returns ErrSlowConsumer. The hub's default.
	SlowClose
	// SlowDropNewest drops the new message for that connection and keeps
	// what is queued; a write returns ErrSlowConsumer.
	SlowDropNewest
	// SlowDropOldest drops the oldest queued messages that are not partly
	// written yet until the new one fits; if it cannot fit, it is dropped.
	SlowDropOldest
	// SlowConflate keeps, for a member with a backlog, only the newest
	// message of the channel: a new one replaces the channel's message
	// still waiting in the member's queue, and goes behind what was
	// queued meanwhile, so that what the member gets, of every channel,
	// is in the order it was published (Stats.Conflated counts the
	// replaced). For latest-value feeds: a price, a position, a dashboard
	// tile. A member that keeps up gets every message. Past the bound
	// with nothing of the channel's to replace, the new message is
	// dropped, as by SlowDropNewest. For channels only (ChannelPolicy,
	// PublishOptions.Policy), not Options.SlowConsumer.
	SlowConflate
)

// String returns the policy's name.
func (p SlowPolicy) String() string {
	switch p {
	case SlowDefault:
		return "default"
	case SlowClose:
		return "close"
	case SlowDropNewest:
		return "drop-newest"
	case SlowDropOldest:
		return "drop-oldest"
	case SlowConflate:
		return "conflate"
	}
	return "unknown"
}

// EventKind tells what an Event reports.
type EventKind uint8

const (
	// EventRejected: an upgrade was refused with 503 because of MaxConns or
	// MaxTotalQueuedBytes, or with 429 because of MaxConnsPerAddr or
	// UpgradesPerAddr (503 when the table of addresses is full). Conn is
	// nil; Reason says which. Other refusals
	// (OnUpgrade's, the origin check's, malformed requests) are the
	// application's or the client's doing, not a limit: they are counted in
	// Stats.Refused only.
	EventRejected EventKind = iota + 1
	// EventDropped: a message for Conn was dropped by SlowDropNewest or
	// SlowDropOldest (Reason "slow consumer"), or was still queued, behind
	// 64 KiB of others, when the peer's close frame came (Reason "peer
	// closed").
	EventDropped
	// EventClosed: the hub closed Conn for a limit or a timeout; Reason is
	// the reason OnClose will report ("slow consumer", "rate limit
	// exceeded", "read timeout", "pong timeout", "handshake timeout",
	// "idle timeout", "max lifetime", "credentials expired").
	EventClosed
	// EventAcceptError: the hub's own listener failed to accept a
	// connection, for example because the process ran out of descriptors
	// (EMFILE); Serve retries with back-off. Conn is nil; Reason is the
	// error's text.
	EventAcceptError
	// EventBrokerDown: the connection to Options.Broker was lost, or stopped
	// answering; publishes to other hubs fail until EventBrokerUp. Conn is
	// nil. Reported once per change, with a BrokerWatcher as the adapter
	// tells it, otherwise when a publish or a subscription first fails.
	EventBrokerDown
	// EventBrokerUp: the broker is back, after EventBrokerDown; the topics
	// the hub could not subscribe meanwhile are subscribed now. Conn is nil.
	EventBrokerUp
	// EventBrokerLate: messages from the broker arrived more than
	// Options.BrokerTimeout after their publish, held up by a broker that
	// hung, and were dropped (Stats.BrokerLate). Reported at most once a
	// second; Reason gives the latest one's delay. Conn is nil.
	EventBrokerLate
)

// String returns the kind's name: "rejected", "dropped", "closed",
// "accept-error", "broker-down", "broker-up" or "broker-late".
func (k EventKind) String() string {
	switch k {
	case EventRejected:
		return "rejected"
	case EventDropped:
		return "dropped"
	case EventClosed:
		return "closed"
	case EventAcceptError:
		return "accept-error"
	case EventBrokerDown:
		return "broker-down"
	case EventBrokerUp:
		return "broker-up"
	case EventBrokerLate:
		return "broker-late"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// An Event reports a limit the hub enforced; see Options.OnEvent.
type Event struct {
	Kind   EventKind
	Conn   *Conn
	Reason string
}

// Stats is a snapshot of a hub's state and counters since it was created.
// It encodes to JSON with snake_case names, close codes as keys of "closes",
// HTTP statuses as keys of "refused", and the pong round trips in
// milliseconds.
// Counters are read one by one while the hub runs, so they may be off by the
// events that happen during the call.
type Stats struct {
	Conns         int   `json:"conns"`         // open connections
	Upgrading     int   `json:"upgrading"`     // own-listener connections in their TLS handshake or still sending their request
	Channels      int   `json:"channels"`      // channels with members, user channels not included
	Users         int   `json:"users"`         // users with connections (Conn.SetUser)
	Subscriptions int   `json:"subscriptions"` // channel memberships, user channels included
	QueuedBytes   int64 `json:"queued_bytes"`  // bytes queued for all connections, not yet written

	// Portable is the connections, upgrading ones included, served on the
	// portable path, by a goroutine each: all of them where the system has
	// no epoll or kqueue, else those without a raw socket, such as a
	// *tls.Conn that net/http accepted on a listener other than
	// Hub.Listener's.
	Portable int `json:"portable"`

	MessagesIn  uint64 `json:"messages_in"`  // complete messages received
	BytesIn     uint64 `json:"bytes_in"`     // their payload bytes
	MessagesOut uint64 `json:"messages_out"` // messages sent or queued, one per connection
	BytesOut    uint64 `json:"bytes_out"`    // their bytes on the wire, headers included

	// Writes counts the system calls that wrote frames to sockets (write,
	// writev): MessagesOut / Writes is how many messages a call carried,
	// which is what coalescing a burst buys (see Channel.PublishBatch).
	Writes uint64 `json:"writes"`

	Dropped uint64 `json:"dropped"` // messages dropped for slow consumers, or queued when the peer closed (see EventDropped)

	// Refused counts the upgrade requests the hub answered with an HTTP
	// error instead of 101 Switching Protocols, by status, on every door
	// (ServeHTTP, Serve, ServeTLS, ServeConn): an *UpgradeError of
	// OnUpgrade's with its status (401, 429, ...), 403 for another error of
	// OnUpgrade's or the origin check, 400 and the like for malformed
	// requests, 426 without "Upgrade: websocket", 503 past MaxConns or
	// MaxTotalQueuedBytes or after Close or Shutdown. Requests that another
	// server refuses before they reach the hub (net/http's own 400s, a
	// router's 401) are that server's and not counted. It encodes to JSON
	// with the statuses as keys: {"401": 3, "503": 1}.
	Refused map[int]uint64 `json:"refused"`
	// Rejected counts the refusals the hub's limits caused: the 503s of
	// MaxConns and MaxTotalQueuedBytes and the 429s (and 503s) of the
	// per-address limits, each reported to OnEvent as EventRejected; the
	// 503s of a hub shutting down are not in it.
	Rejected uint64 `json:"rejected"`

	// BufferedBytes is the memory held for incomplete inbound frames,
	// messages and upgrade requests (see Options.MaxTotalBufferedBytes);
	// ReadsPaused counts the times a connection stopped being read because
	// the budget was spent, and Paused the connections stopped now.
	BufferedBytes int64  `json:"buffered_bytes"`
	ReadsPaused   uint64 `json:"reads_paused"`
	Paused        int    `json:"paused"`

	// Deflating is the open connections that negotiated permessage-deflate
	// (Options.Compression). Compressed counts the messages the hub sent
	// compressed: once per publish, however many members take it, and once
	// per Conn.WriteMessage. It is not the messages sent to deflating
	// connections: those shorter than Compression.Threshold, and those
	// deflate did not make shorter, went out as they were and are not in it.
	Deflating  int    `json:"deflating"`
	Compressed uint64 `json:"compressed"`

	ChannelsRefused uint64 `json:"channels_refused"` // subscriptions refused for Options.MaxChannels
	AcceptErrors    uint64 `json:"accept_errors"`    // failed accepts on the hub's own listeners

	// Handshaking is the TLS handshakes ServeTLS runs now (at most
	// Options.MaxHandshakes); HandshakeErrors counts those that failed or
	// outlasted HandshakeTimeout.
	Handshaking     int    `json:"handshaking"`
	HandshakeErrors uint64 `json:"handshake_errors"`

	// Closes counts the connections that ended, by the code OnClose
	// reported (CloseAbnormal for those lost without a close frame).
	Closes map[CloseCode]uint64 `json:"closes"`
	// Reasons counts the connections the hub itself closed for a limit or
	// a timeout, by the reason of EventClosed.
	Reasons map[string]uint64 `json:"reasons"`

	PingsSent uint64     `json:"pings_sent"`
	PongRTT   RTTSummary `json:"pong_rtt"`

	// With Options.Broker: topics subscribed, messages published to the
	// broker and received from it (other hubs' publishes), and failures
	// (refused publishes, subscriptions that had to be retried).
	BrokerTopics int    `json:"broker_topics"`
	BrokerOut    uint64 `json:"broker_out"`
	BrokerIn     uint64 `json:"broker_in"`
	BrokerErrors uint64 `json:"broker_errors"`
	// The broker's health: whether it is connected (see BrokerWatcher)
	// and since when; how often it came back; publishes to other hubs
	// that failed (their callers got the error); topics whose
	// subscription waits for the broker; messages dropped because they
	// were delivered already (a client library's retry, a redelivery)
	// or arrived later than Options.BrokerTimeout after their publish.
	BrokerConnected  bool      `json:"broker_connected"`
	BrokerSince      time.Time `json:"broker_since"`
	BrokerReconnects uint64    `json:"broker_reconnects"`
	BrokerRefused    uint64    `json:"broker_refused"`
	BrokerPending    int       `json:"broker_pending"`
	BrokerDuplicates uint64    `json:"broker_duplicates"`
	BrokerLate       uint64    `json:"broker_late"`

	// Channel histories (Options.ChannelHistory): how many there are, the
	// bytes they hold (counted against MaxHistoryBytes), and the messages
	// Channel.Recover sent from them. With a HistoryBroker, HistoryGaps
	// counts the messages of the streams that this hub's members missed:
	// gone from the stream by the time the hub asked for them, or lost
	// with the broker.
	Histories    int    `json:"histories"`
	HistoryBytes int64  `json:"history_bytes"`
	Recovered    uint64 `json:"recovered"`
	HistoryGaps  uint64 `json:"history_gaps"`

	// Conflated counts the queued messages that SlowConflate replaced with
	// a newer one of the same channel.
	Conflated uint64 `json:"conflated"`

	// ClientAddrs is how many client addresses the per-address limits
	// remember (Options.MaxConnsPerAddr, UpgradesPerAddr).
	ClientAddrs int `json:"client_addrs"`

	// Expiring is the open connections with an expiry (Conn.SetExpiry);
	// Extended counts the expiries Options.OnExpiring pushed back. Those
	// closed when theirs passed are Reasons["credentials expired"].
	Expiring int    `json:"expiring"`
	Extended uint64 `json:"extended"`
}

// RTTSummary summarizes the time from the hub's pings to their pongs, with
// millisecond resolution. Percentiles are upper bounds taken from
// power-of-two buckets.
type RTTSummary struct {
	Count    uint64
	Mean     time.Duration
	Max      time.Duration
	P50, P99 time.Duration
}

// MarshalJSON encodes the summary with its durations in milliseconds, which
// dashboards read: {"count":…,"mean_ms":…,"max_ms":…,"p50_ms":…,"p99_ms":…}.
func (r RTTSummary) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return json.Marshal(struct {
		Count uint64  `json:"count"`
		Mean  float64 `json:"mean_ms"`
		Max   float64 `json:"max_ms"`
		P50   float64 `json:"p50_ms"`
		P99   float64 `json:"p99_ms"`
	}{r.Count, ms(r.Mean), ms(r.Max), ms(r.P50), ms(r.P99)})
}

var closeReasons = [...]string{ReasonSlowConsumer, ReasonRateLimit, ReasonReadTimeout, ReasonPongTimeout, ReasonHandshakeTimeout, ReasonIdleTimeout, ReasonMaxLifetime, ReasonEmptyFragments, ReasonExpired}

// rttBuckets is the number of power-of-two millisecond buckets of the pong
// round-trip histogram: the last holds everything from 2^14 ms (16 s) on.
const rttBuckets = 16

// counters are a hub's statistics. The message counters are updated on every
// message by runners and publishers, so each group sits on its own cache
// line to keep cores from contending over unrelated counters.
type counters struct {
	msgsIn, bytesIn   atomic.Uint64
	_                 [48]byte
	msgsOut, bytesOut atomic.Uint64
	writes            atomic.Uint64 // system calls that wrote frames
	_                 [40]byte
	queued            atomic.Int64 // bytes in all the hub's write queues
	_                 [56]byte

	open          atomic.Int64 // admitted or open connections, see Hub.reserve
	portable      atomic.Int64 // connections on the portable path
	subscriptions atomic.Int64
	dropped       atomic.Uint64
	rejected      atomic.Uint64
	readsPaused   atomic.Uint64
	deflating     atomic.Int64  // open connections that negotiated permessage-deflate
	compressed    atomic.Uint64 // messages compressed, once per publish

	handshaking     atomic.Int64  // TLS handshakes in progress on ServeTLS
	handshakeErrors atomic.Uint64 // ... that failed
	chRefused       atomic.Uint64
	acceptErrors    atomic.Uint64
	pings           atomic.Uint64
	// copied counts the bytes reassembly copied into stored buffers: the
	// payload read into the owner's buffer and appended, and what each
	// growth of a buffer moved. Tests read it to prove reassembly linear.
	copied  atomic.Uint64
	reasons [len(closeReasons)]atomic.Uint64
	// refused counts refused upgrades by HTTP status, 400 to 599.
	refused [200]atomic.Uint64

	brokerTopics                      atomic.Int64
	brokerOut, brokerIn, brokerErrors atomic.Uint64
	brokerReconnects, brokerRefused   atomic.Uint64
	brokerDuplicates, brokerLate      atomic.Uint64
	brokerPending                     atomic.Int64
	recovered, historyGaps            atomic.Uint64
	conflated                         atomic.Uint64
	expiring                          atomic.Int64  // connections with an expiry
	extended                          atomic.Uint64 // expiries OnExpiring pushed back

	rttCount, rttSum, rttMax atomic.Uint64 // milliseconds
	rtt                      [rttBuckets]atomic.Uint64

	closesMu sync.Mutex
	closes   map[CloseCode]uint64
}

func (s *counters) received(size int) {
	s.msgsIn.Add(1)
	s.bytesIn.Add(uint64(size))
}

func (s *counters) sent(msgs, bytes int) {
	s.msgsOut.Add(uint64(msgs))
	s.bytesOut.Add(uint64(bytes))
}

func (s *counters) closed(code CloseCode) {
	s.closesMu.Lock()
	if s.closes == nil {
		s.closes = make(map[CloseCode]uint64)
	}
	s.closes[code]++
	s.closesMu.Unlock()
}

func (s *counters) pongRTT(ms uint32) {
	s.rttCount.Add(1)
	s.rttSum.Add(uint64(ms))
	for {
		m := s.rttMax.Load()
		if uint64(ms) <= m || s.rttMax.CompareAndSwap(m, uint64(ms)) {
			break
		}
	}
	s.rtt[min(bits.Len32(ms), rttBuckets-1)].Add(1)
}

// rttSummary computes the summary from the histogram.
func (s *counters) rttSummary() RTTSummary {
	var r RTTSummary
	r.Count = s.rttCount.Load()
	if r.Count == 0 {
		return r
	}
	ms := time.Millisecond
	r.Mean = time.Duration(s.rttSum.Load()/r.Count) * ms
	r.Max = time.Duration(s.rttMax.Load()) * ms
	var hist [rttBuckets]uint64
	total := uint64(0)
	for i := range hist {
		hist[i] = s.rtt[i].Load()
		total += hist[i]
	}
	quantile := func(q float64) time.Duration {
		rank := uint64(q*float64(total) + 0.5)
		seen := uint64(0)
		for i, n := range hist {
			seen += n
			if seen >= max(rank, 1) {
				// Bucket i holds round trips below 2^i ms.
				return min(time.Duration(1<<i)*ms, r.Max)
			}
		}
		return r.Max
	}
	r.P50, r.P99 = quantile(0.50), quantile(0.99)
	return r
}

// Stats returns a snapshot of the hub's state and counters.
func (h *Hub) Stats() Stats {
	s := &h.stats
	st := Stats{
		Conns:       int(s.open.Load()),
		Portable:    int(s.portable.Load()),
		QueuedBytes: s.queued.Load(),
		MessagesIn:  s.msgsIn.Load(),
		BytesIn:     s.bytesIn.Load(),
		MessagesOut: s.msgsOut.Load(),
		BytesOut:    s.bytesOut.Load(),
		Writes:      s.writes.Load(),
		Dropped:     s.dropped.Load(),
		Rejected:    s.rejected.Load(),

		ReadsPaused:     s.readsPaused.Load(),
		Deflating:       int(s.deflating.Load()),
		Compressed:      s.compressed.Load(),
		ChannelsRefused: s.chRefused.Load(),
		AcceptErrors:    s.acceptErrors.Load(),
		Handshaking:     int(s.handshaking.Load()),
		HandshakeErrors: s.handshakeErrors.Load(),
		PingsSent:       s.pings.Load(),
		PongRTT:         s.rttSummary(),
		Closes:          make(map[CloseCode]uint64),
		Reasons:         make(map[string]uint64),
		Refused:         make(map[int]uint64),
	}
	for i := range s.refused {
		if n := s.refused[i].Load(); n > 0 {
			st.Refused[400+i] = n
		}
	}
	st.Subscriptions = int(s.subscriptions.Load())
	st.BufferedBytes = h.inbound.used.Load()
	st.Paused = int(h.inbound.waiting.Load())
	st.BrokerTopics = int(s.brokerTopics.Load())
	st.BrokerOut, st.BrokerIn, st.BrokerErrors = s.brokerOut.Load(), s.brokerIn.Load(), s.brokerErrors.Load()
	st.BrokerReconnects, st.BrokerRefused = s.brokerReconnects.Load(), s.brokerRefused.Load()
	st.BrokerDuplicates, st.BrokerLate = s.brokerDuplicates.Load(), s.brokerLate.Load()
	st.BrokerPending = int(s.brokerPending.Load())
	st.Recovered, st.Conflated = s.recovered.Load(), s.conflated.Load()
	st.Expiring, st.Extended = int(s.expiring.Load()), s.extended.Load()
	st.HistoryGaps = s.historyGaps.Load()
	h.histMu.Lock()
	st.Histories, st.HistoryBytes = len(h.histories), int64(h.historyBytes)
	st.ClientAddrs = h.perAddr.len()
	h.histMu.Unlock()
	if br := h.bridge; br != nil {
		st.BrokerConnected = br.up.Load()
		st.BrokerSince = time.Unix(0, br.since.Load())
	}
	st.Upgrading = max(0, int(h.conns.Load())-st.Conns)
	h.chMu.RLock()
	st.Channels, st.Users = len(h.channels), len(h.users)
	h.chMu.RUnlock()
	s.closesMu.Lock()
	for code, n := range s.closes {
		st.Closes[code] = n
	}
	s.closesMu.Unlock()
	for i, r := range closeReasons {
		if n := s.reasons[i].Load(); n > 0 {
			st.Reasons[r] = n
		}
	}
	return st
}

// refusal counts an upgrade request answered with status instead of 101.
// Every status the hub answers with is in [400, 599]: authorize replaces
// OnUpgrade's others with 403, and gobwas answers its own refusals with
// 4xx, or 500 when it has no status.
func (h *Hub) refusal(status int) {
	if i := status - 400; i >= 0 && i < len(h.stats.refused) {
		h.stats.refused[i].Add(1)
	}
}

// event counts what the hub enforced and reports it to OnEvent.
func (h *Hub) event(kind EventKind, c *Conn, reason string) {
	switch kind {
	case EventRejected:
		h.stats.rejected.Add(1)
	case EventDropped:
		h.stats.dropped.Add(1)
	case EventAcceptError:
		h.stats.acceptErrors.Add(1)
	case EventClosed:
		for i, r := range closeReasons {
			if r == reason {
				h.stats.reasons[i].Add(1)
			}
		}
	}
	if f := h.opts.OnEvent; f != nil {
		f(Event{Kind: kind, Conn: c, Reason: reason})
	}
}
