package wshub

import (
	"fmt"
	"math"
	"net/http"
	"time"
)

// Options configures a Hub. A nil *Options, and any zero field, means the
// documented default. Options are read once by New; changing them later has
// no effect.
//
// Callbacks are optional; nil means "do nothing". Unless said otherwise, a
// callback runs on the goroutine of the event loop that read the
// connection (or on the connection's own goroutine on the portable path).
// Callbacks of one connection never run concurrently and come in order:
// OnOpen, then OnMessage for each message, then OnClose. A callback may
// block; its loop is then handed to another goroutine within about a
// millisecond, and its connection is not read meanwhile (see
// PollerOptions.Workers). Callbacks may call any method of the Hub and Conn
// except Hub.Close and Hub.Shutdown, which wait for callbacks to return.
type Options struct {
	// OnUpgrade sees every upgrade request before it is accepted: its path,
	// headers, cookies and remote address. A non-nil error rejects it: an
	// *UpgradeError with its status, headers and body (a 401 with
	// WWW-Authenticate, a JSON error), any other error with 403 Forbidden.
	// The value returned is what Conn.Data returns: keep there whatever of
	// the request the connection needs later (user, path, query, chosen
	// headers) and an id for logs, if you want one (a counter, or the
	// request id of your middleware); the hub keeps nothing of the request
	// and no id, so that an idle connection stays small.
	//
	// For requests served by ServeHTTP it runs on the net/http handler's
	// goroutine and gets the original *http.Request, with its context:
	// values that middleware put there are available. For the hub's own
	// listener it runs on an event loop's goroutine, with a request built from the
	// handshake: Method, URL, RequestURI, Host, RemoteAddr and the headers
	// other than Host, Upgrade, Connection and the Sec-WebSocket-* ones,
	// which the upgrader checks itself; its context is
	// context.Background().
	OnUpgrade func(r *http.Request) (data any, err error)

	// OnOpen is called once a connection is upgraded, before any OnMessage
	// and before the client has its answer: the 101 leaves when OnOpen
	// returns, followed by what OnOpen wrote. A client whose connection
	// joins channels in OnOpen therefore gets every message published to
	// them after its handshake completed, and the messages a client sends
	// at once reach OnMessage after OnOpen. The client waits for OnOpen:
	// keep it short, and do slow work (a database query) in OnUpgrade,
	// before the connection exists, or in a goroutine of its own. What
	// OnOpen writes waits in the connection's queue until it returns, so
	// it must fit in MaxQueuedBytes in all.
	OnOpen func(c *Conn)

	// OnMessage is called for each complete message. data is valid only
	// until OnMessage returns: copy it to keep it. Text messages are valid
	// UTF-8.
	OnMessage func(c *Conn, typ MessageType, data []byte)

	// OnClose is called exactly once for every connection that was opened,
	// after its last OnMessage, when the socket is closed. err, never nil,
	// says how it ended: the code and reason the peer sent, or the ones the
	// hub sent (a protocol error, a limit or timeout with one of the Reason
	// constants, Conn.Close, shutdown), or CloseAbnormal with a reason when
	// the connection was lost without a close frame.
	OnClose func(c *Conn, err *CloseError)

	// CheckOrigin decides whether a browser's upgrade request may proceed;
	// false rejects it with 403 Forbidden. The default accepts requests
	// without an Origin header (non-browser clients) and those whose Origin
	// host equals the request's Host, which stops other sites' pages from
	// connecting with the user's cookies.
	CheckOrigin func(r *http.Request) bool

	// MaxMessageSize is the largest message, in bytes, a peer may send,
	// counting all its fragments. A larger one closes the connection with
	// CloseMessageTooBig as soon as its frame header is read, before any of
	// it is buffered. Zero means 1 MiB.
	//
	// Reassembly costs time and memory linear in the bytes received,
	// whatever the fragment sizes: buffers grow with what arrived, doubling
	// across fragments. A message may contain at most 16 empty fragments
	// besides its final frame; one more closes the connection with
	// ClosePolicyViolation, "too many empty fragments" (counted in
	// Stats.Reasons), since such frames carry nothing and cost work.
	MaxMessageSize int64

	// MaxQueuedBytes bounds the bytes queued for one connection because its
	// socket did not take them. What a write that would exceed it does is
	// SlowConsumer's choice: by default the message is not sent, the
	// connection's queued messages are dropped and it is closed with
	// ClosePolicyViolation, "slow consumer" (the close frame goes out in
	// their place), and the write returns ErrSlowConsumer. A frame partly
	// written is always finished first: nothing is ever written inside it.
	//
	// It is also the largest frame the hub sends: a write or publish of a
	// larger message returns ErrMessageTooBig before anything is written,
	// and the connection stays usable. A hub that echoes or relays what
	// peers send sets it to at least MaxMessageSize plus 14 (a frame
	// header). Zero means 4 MiB.
	MaxQueuedBytes int

	// FlushDelay is how long the event loops may wait before they write
	// what a publish (Channel.Publish and its kin, Hub.Broadcast) queued,
	// so that the publishes of that time reach each member in one writev:
	// throughput bought with latency, for feeds that publish in bursts from
	// many goroutines. Zero, the default, asks the loops at once; even so,
	// publishes that follow each other while the loops write are written
	// together, and Channel.PublishBatch sends known batches in one writev
	// whatever this says. Conn.WriteMessage is never delayed. On a Poller
	// shared by several hubs a loop writes at the earliest time one of
	// them asked for. At most 10 ms.
	FlushDelay time.Duration

	// MaxSubscriptions bounds the channels one connection may belong to;
	// Subscribe beyond it returns ErrTooManySubscriptions. The channel of
	// Conn.SetUser does not count. Zero means 1024.
	MaxSubscriptions int

	// MaxChannels bounds the channels of the hub (user channels, one per
	// user of Conn.SetUser, do not count: connections bound those).
	// Subscribe to a channel that does not exist yet returns
	// ErrTooManyChannels while the hub has this many, counted in
	// Stats.ChannelsRefused. A channel costs about 200 bytes plus 40 per
	// member, so the default caps what clients that each join many
	// distinct channels can make the hub hold at about 20 MB. Zero means
	// 100,000.
	MaxChannels int

	// MaxTotalBufferedBytes is a budget for the bytes the hub holds for
	// what peers send: frames and fragmented messages that are not
	// complete yet, and own-listener upgrade requests still arriving.
	// Messages that arrive whole in one read are handed to OnMessage
	// straight from the read buffer of their loop's goroutine and need none of it.
	//
	// When a connection would need more than the budget has left, the hub
	// stops reading it (its peer sees TCP back-pressure; the connection is
	// not closed) and resumes it, in the order connections stopped, when
	// memory is freed. So that a budget held by stalled peers cannot stop
	// every large message, one stopped connection at a time may exceed the
	// budget by up to one message (MaxMessageSize) to finish its message.
	// A peer that holds part of the budget and stalls is still closed at
	// ReadTimeout, whose clock (and the heartbeat) stops while the hub keeps
	// the connection waiting: the hub's wait is not the peer's slowness.
	// Stats.BufferedBytes, Stats.Paused and Stats.ReadsPaused show it at
	// work.
	//
	// The default, 64 MiB, or 4 x MaxMessageSize if that is larger, lets
	// 64 clients each send a 1 MiB message at the same moment and keeps a
	// default hub under a few hundred MB whatever its peers send; without
	// a budget, 2,000 clients each holding an unfinished 1 MiB message
	// took 3.4 GB. Memory held for inbound data stays below the budget
	// plus one message plus 32 KiB per runner (at most Workers reads in flight);
	// portable connections may add 4 KiB each. Negative means no budget.
	MaxTotalBufferedBytes int64

	// HandshakeTimeout is the time a client of the hub's own listener has
	// to send its upgrade request, and before it, on ServeTLS, to complete
	// its TLS handshake. Zero means 10 seconds.
	HandshakeTimeout time.Duration

	// MaxHandshakes bounds the TLS handshakes ServeTLS runs at once, each
	// on a goroutine of its own with its buffers (tens of KB): further
	// connections wait in the listener's backlog. Zero means 1024. The
	// ServeHTTP door's handshakes are net/http's.
	MaxHandshakes int

	// ReadTimeout bounds how long a message may go without progress once
	// its first byte was read, fragments included: the clock starts with
	// the message and starts again each time another 16 KiB of its payload
	// has arrived. A message smaller than that must arrive whole within
	// ReadTimeout; a large upload must keep to about 16 KiB per ReadTimeout
	// (550 bytes/s at the default), which the slowest mobile links pass
	// many times over, so a 1 MiB upload at 30 kB/s completes. A peer that
	// sends part of a frame and stops, or trickles (slowloris), or sends
	// only pings and empty fragments, is closed with ClosePolicyViolation,
	// "read timeout". It does not limit idle time between messages. Zero
	// means 30 seconds.
	ReadTimeout time.Duration

	// CloseTimeout is how long the hub waits for the peer's answer to its
	// close frame, or for queued frames to drain before it, before dropping
	// the connection. Zero means 5 seconds.
	CloseTimeout time.Duration

	// PingInterval is how long a connection may be silent before the hub
	// pings it; proxies and load balancers drop idle WebSockets (nginx after
	// 60 s by default) unless something crosses them. A connection that
	// sends anything is not pinged. Zero means 25 seconds; negative turns
	// pings off.
	PingInterval time.Duration

	// PongTimeout is how long a pinged connection has to answer, with a
	// pong or anything else, before it is dropped as dead (power loss, NAT
	// expiry): OnClose reports CloseAbnormal, "pong timeout". Zero means 10
	// seconds.
	PongTimeout time.Duration

	// IdleTimeout closes a connection that has sent nothing for this long,
	// pongs included, with CloseGoingAway, "idle timeout". Zero means no
	// limit: pings alone keep live peers and drop dead ones.
	IdleTimeout time.Duration

	// MaxLifetime closes a connection this long after it connected, with
	// CloseGoingAway, "max lifetime", so that long-lived clients reconnect
	// and spread over new servers after a deploy or scale-out. Each
	// connection's lifetime is shortened by a random 0-10% so that those
	// opened together do not all reconnect together; it is measured in
	// steps of 256 ms. Zero means no limit.
	MaxLifetime time.Duration

	// SlowConsumer is what happens to a message for a connection whose
	// queue it would push past MaxQueuedBytes. SlowClose (the default)
	// closes the connection; SlowDropNewest drops the message for it;
	// SlowDropOldest drops its oldest queued messages to make room.
	// ChannelPolicy and PublishOptions.Policy override it for channels and
	// publishes. Drops and closes are counted in Stats and reported to
	// OnEvent, never silent.
	SlowConsumer SlowPolicy

	// ChannelPolicy, if set, chooses the slow-consumer policy of each
	// channel from its name when the channel is created; SlowDefault means
	// the hub's. SlowConflate is for channels only: it keeps a slow
	// member's newest message of the channel. User channels (Hub.User) use
	// the hub's policy.
	ChannelPolicy func(channel string) SlowPolicy

	// MaxConnsPerAddr bounds the connections of one client address (see
	// ClientAddr), those being upgraded included: the next upgrade is
	// refused with 429 Too Many Requests and Retry-After, counted in
	// Stats.Refused and reported as EventRejected. On the own listener,
	// with ClientAddr nil, it also bounds the address's upgrades whose
	// request has not come yet: one more socket is closed at once,
	// unanswered (Stats.Rejected). It costs a map entry per connection
	// while set. Zero means no bound.
	MaxConnsPerAddr int

	// UpgradesPerAddr bounds the upgrades per second of one client
	// address, with bursts of as many (at least one); past it the upgrade
	// is refused with 429 and a Retry-After saying when the next one may
	// come. Zero means no bound.
	//
	// The hub remembers at most 65,536 client addresses for these limits,
	// forgetting those with no connection and a full allowance first; when
	// every one still counts, an upgrade from a new address is refused with
	// 503. Stats.ClientAddrs says how many it holds.
	UpgradesPerAddr float64

	// ClientAddr, if set, returns the client address of an upgrade request
	// for MaxConnsPerAddr and UpgradesPerAddr: for a service behind a
	// proxy, the forwarded address it trusts (say the last hop of
	// X-Forwarded-For that its own proxy added). Nil means the peer's
	// address. Either way an IPv6 address counts by its /64, what one
	// subscriber is given.
	ClientAddr func(r *http.Request) string

	// OnExpiring, if set, is asked about each connection whose expiry
	// (Conn.SetExpiry, a token's exp) is ExpiryNotice away, once per
	// expiry set: it returns a later expiry to keep the connection (from
	// a refreshed token), or the zero Time to let it end at the one it
	// has. It may instead ask the client for a fresh token, return the
	// zero Time, and call Conn.SetExpiry when the answer comes. A
	// connection still expired at the sweep after its expiry is closed
	// with CloseUnauthorized, ReasonExpired.
	//
	// It runs on a goroutine of the Poller's, started while notices are
	// due, one call at a time, possibly while the connection's other
	// callbacks run; it may call any method of the Hub and Conn except
	// Hub.Close and Hub.Shutdown. A slow one holds up the next
	// connections' notices (not the hub's timeouts or pings), whose
	// expiries wait to be asked about, up to ExpiryNotice past them: to
	// ask a service over the network, do so on a goroutine of your own
	// and call SetExpiry.
	OnExpiring func(c *Conn) time.Time

	// ExpiryNotice is how long before a connection's expiry OnExpiring
	// is asked about it, at the poller's sweep, within about a second;
	// at once if less is left. Zero means 10 seconds, time for a client
	// to be asked for a fresh token and answer.
	ExpiryNotice time.Duration

	// ChannelHistory, if set, chooses from its name what a channel keeps of
	// its messages for members that come back after a reconnect (see
	// Channel.Recover and PublishOptions.Positioned); the zero History
	// keeps nothing. It is called on a channel's first publish or
	// recovery; user channels (Hub.User) keep none. Each kept message
	// holds a reference to the frame the members' queues share.
	ChannelHistory func(channel string) History

	// ChannelPresence, if set, chooses from its name whether a channel
	// tracks who is in it, and how many users it lists (see Presence and
	// Channel.Presence): its connections and their users (Conn.SetUser),
	// counted across the hubs of the Broker. It is called when a channel
	// is created here, or when another hub first tells of it, with the
	// hub's locks held: it must not call the hub. Every hub of a Broker
	// must answer alike. User channels have no presence. Nil means none,
	// and presence then costs nothing.
	ChannelPresence func(channel string) Presence

	// OnPresence, if set, is told once per PresenceInterval, for each
	// tracked channel, of the users whose first connection joined it and
	// of those whose last one left it since the last call, across the hubs,
	// sorted: a user who left and came back meanwhile is in neither list.
	// It runs on the hub's presence goroutine, one call at a time, and
	// may call the hub (publish the news, read Channel.Presence) but for
	// Close and Shutdown, which wait for it; the next tick waits for it.
	// The slices are the callee's.
	OnPresence func(channel string, joined, left []string)

	// PresenceInterval is the tick of presence: how often the joins and
	// leaves of a tick are sent to the other hubs and reported to
	// OnPresence. Each channel's digest goes every 5 ticks, and a hub not
	// heard of about a channel for 15 ticks is forgotten from it: that is
	// how long the members of a hub that died are still counted. Every hub
	// of a Broker must use the same. Zero means 1 second; less than a
	// millisecond is refused.
	PresenceInterval time.Duration

	// MaxHistoryBytes bounds what all the channels' histories keep
	// together, their frames and what the hub counts for each message and
	// history besides. A channel whose message would pass it drops its
	// own oldest first; a channel whose history would not fit at all keeps
	// none. Zero means 64 MiB.
	MaxHistoryBytes int

	// MaxTotalQueuedBytes is a budget for the bytes queued for all of the
	// hub's connections together. While it is exceeded, new upgrades are
	// refused with 503 Service Unavailable (counted in Stats.Rejected):
	// the server is not keeping up with the clients it has. Zero means no
	// budget.
	MaxTotalQueuedBytes int64

	// MaxConns bounds the hub's open connections; upgrades beyond it are
	// refused with 503 Service Unavailable and counted in Stats.Rejected.
	// Zero means no limit.
	MaxConns int

	// MessageRate limits the messages (and pings) one connection may send
	// per second, on average, with bursts of up to MessageBurst; a client
	// that sends faster is closed with ClosePolicyViolation, "rate limit
	// exceeded". It is a token bucket with millisecond resolution: at most
	// 1000 messages per second, and MessageBurst/MessageRate at most 65
	// seconds. Zero means no limit.
	MessageRate float64

	// MessageBurst is the burst MessageRate allows. Zero means
	// max(1, MessageRate).
	MessageBurst int

	// OnEvent, if set, is told of each limit the hub enforces: an upgrade
	// refused for MaxConns or MaxTotalQueuedBytes, a message dropped for a
	// slow consumer, a connection closed by the hub for a limit or a
	// timeout, a failed accept on the own listener. Counters in Stats are
	// kept either way.
	//
	// It runs synchronously where the event happens, sometimes with a
	// connection's or channel's lock held (a publish that drops a message
	// for one member holds the channel's): it must return quickly and must
	// not call methods of the Hub, its Channels or its Conns other than
	// Conn.Data and Conn.Hub. The hub does not defer it to a goroutine or
	// a queue of its own because peers decide how many events there are:
	// a queue would be memory an attacker sizes, a goroutine would report
	// late and out of order. To act on an event (close a connection,
	// publish an alert), hand it to a goroutine of your own.
	OnEvent func(Event)

	// DrainRate paces Shutdown: it closes this many connections per second,
	// in random order with jittered gaps, so that clients do not all
	// reconnect at once. Zero closes them all at once. Either way the
	// close reason advises a delay before reconnecting, "server shutting
	// down; retry after 3s": 1 s with DrainRate; without it, drawn for
	// each connection from 1 s to 1 s more per 1,000 connections (30 s at
	// most), so that they come back at about 1,000 a second.
	DrainRate int

	// DrainCode is the close code Shutdown sends: CloseGoingAway (the
	// default) or CloseServiceRestart, which tells clients to reconnect
	// after a short wait.
	DrainCode CloseCode

	// Subprotocols are the application protocols the hub speaks, in its
	// order of preference, at most 15. A client that offers some in
	// Sec-WebSocket-Protocol gets the first of this list it offered, in the
	// 101 and in Conn.Subprotocol. A client that offers none of them is
	// upgraded without one, as RFC 6455 says, and a browser then fails the
	// connection itself; OnUpgrade may refuse it earlier by looking at the
	// request. Nil means no subprotocol is ever selected.
	Subprotocols []string

	// Compression, if set, offers permessage-deflate (RFC 7692) to
	// clients that ask for it. The hub compresses each message it sends on
	// its own (server_no_context_takeover), so a publish compresses once
	// for every member that negotiated it, and no idle connection owns a
	// compressor. A client that keeps its compression context, as browsers
	// do, is asked for a 512-byte window, which the hub keeps for the
	// connection (charged to MaxTotalBufferedBytes: 100,000 browsers hold
	// 51 MB of it, so raise the budget with them); a client that would
	// keep 32 KiB is served uncompressed. A compressed message may
	// decompress to at most MaxMessageSize; more closes the connection with
	// CloseMessageTooBig. Nil, the default, means off: JSON shrinks 3-10
	// times, but each message costs compression CPU (once per publish), and
	// a browser connection 512 bytes more at rest.
	//
	// Not every message to such a client is compressed: those shorter than
	// Compression.Threshold (128 bytes by default) are sent as they are,
	// and so are those that deflate does not make shorter, whatever
	// Threshold says; a publish is compressed only while some open
	// connection negotiated permessage-deflate. Stats.Compressed counts the
	// messages that went out compressed, once per publish.
	Compression *Compression

	// Broker, if set, carries publishes to the hub's channels and users to
	// other hub processes and theirs to this one (see Broker). Nil means
	// the hub is on its own.
	Broker Broker

	// BrokerTimeout bounds the time a publish waits for Broker to take a
	// message for the other hubs (a publish's own context may end it
	// sooner), and the age of a message from the other hubs still worth
	// delivering: one that arrives later after its publish, held up by a
	// broker that hung, is dropped and counted in Stats.BrokerLate. The
	// hubs' clocks must agree to well within it. Zero or negative means 5
	// seconds.
	BrokerTimeout time.Duration

	// Poller serves the hub's connections. Nil means a poller of the hub's
	// own with default PollerOptions, closed with the hub.
	Poller *Poller

	// portable, for tests, serves every connection on the portable path.
	portable bool
}

// withDefaults returns a copy of o with zero fields set to their defaults,
// or an error for values that make no sense.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.MaxMessageSize == 0 {
		r.MaxMessageSize = 1 << 20
	}
	if r.MaxQueuedBytes == 0 {
		r.MaxQueuedBytes = 4 << 20
	}
	if r.MaxSubscriptions == 0 {
		r.MaxSubscriptions = 1024
	}
	if r.MaxChannels == 0 {
		r.MaxChannels = 100_000
	}
	if r.MaxTotalBufferedBytes == 0 {
		r.MaxTotalBufferedBytes = max(64<<20, 4*r.MaxMessageSize)
	}
	if r.HandshakeTimeout == 0 {
		r.HandshakeTimeout = 10 * time.Second
	}
	if r.MaxHistoryBytes == 0 {
		r.MaxHistoryBytes = 64 << 20
	}
	if r.PresenceInterval == 0 {
		r.PresenceInterval = time.Second
	}
	if r.BrokerTimeout <= 0 {
		r.BrokerTimeout = 5 * time.Second
	}
	if r.MaxHandshakes == 0 {
		r.MaxHandshakes = 1024
	}
	if r.ReadTimeout == 0 {
		r.ReadTimeout = 30 * time.Second
	}
	if r.CloseTimeout == 0 {
		r.CloseTimeout = 5 * time.Second
	}
	if r.PingInterval == 0 {
		r.PingInterval = 25 * time.Second
	}
	if r.PongTimeout == 0 {
		r.PongTimeout = 10 * time.Second
	}
	if r.SlowConsumer == SlowDefault {
		r.SlowConsumer = SlowClose
	}
	if r.DrainCode == 0 {
		r.DrainCode = CloseGoingAway
	}
	if r.ExpiryNotice == 0 {
		r.ExpiryNotice = 10 * time.Second
	}
	if math.IsNaN(r.MessageRate) || math.IsNaN(r.UpgradesPerAddr) || math.IsInf(r.UpgradesPerAddr, 0) {
		return r, fmt.Errorf("wshub: MessageRate %v or UpgradesPerAddr %v is not a number", r.MessageRate, r.UpgradesPerAddr)
	}
	if r.MessageRate > 0 && r.MessageBurst == 0 {
		r.MessageBurst = max(1, int(r.MessageRate))
	}
	if r.MaxTotalBufferedBytes > 0 && r.MaxTotalBufferedBytes < r.MaxMessageSize {
		return r, fmt.Errorf("wshub: MaxTotalBufferedBytes %d is below MaxMessageSize %d", r.MaxTotalBufferedBytes, r.MaxMessageSize)
	}
	if r.MaxMessageSize < 0 || r.MaxQueuedBytes < 0 || r.MaxSubscriptions < 0 || r.MaxChannels < 0 ||
		r.MaxTotalQueuedBytes < 0 || r.MaxHistoryBytes < 0 || r.MaxConnsPerAddr < 0 || r.UpgradesPerAddr < 0 || r.MaxConns < 0 || r.DrainRate < 0 || r.MessageBurst < 0 || r.MaxHandshakes < 0 {
		return r, fmt.Errorf("wshub: negative size, count or rate in Options")
	}
	if r.SlowConsumer > SlowDropOldest {
		return r, fmt.Errorf("wshub: unknown SlowConsumer policy %d", r.SlowConsumer)
	}
	if len(r.Subprotocols) > 15 {
		return r, fmt.Errorf("wshub: %d Subprotocols, at most 15", len(r.Subprotocols))
	}
	for _, p := range r.Subprotocols {
		if !isToken([]byte(p)) {
			return r, fmt.Errorf("wshub: subprotocol %q is not an HTTP token", p)
		}
	}
	if z := r.Compression; z != nil {
		c := *z
		if c.Level == 0 {
			c.Level = 1 // flate.BestSpeed
		}
		if c.Threshold == 0 {
			c.Threshold = 128
		}
		if c.Level < 1 || c.Level > 9 || c.Threshold < 0 {
			return r, fmt.Errorf("wshub: Compression level %d or threshold %d out of range", c.Level, c.Threshold)
		}
		r.Compression = &c
	}
	if r.PresenceInterval < time.Millisecond {
		return r, fmt.Errorf("wshub: PresenceInterval %v under a millisecond", r.PresenceInterval)
	}
	if r.FlushDelay < 0 || r.FlushDelay > maxFlushDelay {
		return r, fmt.Errorf("wshub: FlushDelay %v out of range [0, %v]", r.FlushDelay, maxFlushDelay)
	}
	if r.DrainCode != CloseGoingAway && r.DrainCode != CloseServiceRestart {
		return r, fmt.Errorf("wshub: DrainCode %d is neither CloseGoingAway nor CloseServiceRestart", r.DrainCode)
	}
	if r.MessageRate < 0 || r.MessageRate > 1000 {
		return r, fmt.Errorf("wshub: MessageRate %v out of range [0, 1000]", r.MessageRate)
	}
	if r.MessageRate > 0 && r.msgCost()*uint32(r.MessageBurst) > maxCredit {
		return r, fmt.Errorf("wshub: MessageBurst/MessageRate over %v", time.Duration(maxCredit)*time.Millisecond)
	}
	for _, d := range []time.Duration{r.HandshakeTimeout, r.ReadTimeout, r.CloseTimeout, r.PongTimeout, max(r.PingInterval, 0), max(r.IdleTimeout, 0), r.MaxLifetime, r.ExpiryNotice} {
		if d < 0 || d > maxTimeout {
			return r, fmt.Errorf("wshub: timeout %v out of range (0, %v]", d, maxTimeout)
		}
	}
	return r, nil
}

// maxFlushDelay bounds Options.FlushDelay: past a few milliseconds a delay
// costs latency that no coalescing pays back.
const maxFlushDelay = 10 * time.Millisecond

// maxCredit bounds a connection's rate-limit credit, in milliseconds: it is
// kept in 16 bits (see Conn.credit).
const maxCredit = 1<<16 - 1

// msgCost is the credit one message costs under MessageRate: the average
// time between two messages, in milliseconds.
func (o *Options) msgCost() uint32 {
	return uint32(max(1, math.Round(1000/o.MessageRate)))
}

// finestTimeout is the shortest timeout, which sets the sweep period.
func (o *Options) finestTimeout() time.Duration {
	d := min(o.HandshakeTimeout, o.ReadTimeout, o.CloseTimeout, o.PongTimeout)
	if o.PingInterval > 0 {
		d = min(d, o.PingInterval)
	}
	if o.IdleTimeout > 0 {
		d = min(d, o.IdleTimeout)
	}
	if o.MaxLifetime > 0 {
		d = min(d, o.MaxLifetime)
	}
	return d
}
