// Package wshub is a WebSocket hub for servers that hold very many, mostly
// idle connections in very little memory.
//
// The application registers callbacks in [Options]; the hub owns the rest:
// the epoll or kqueue event loops, the incremental frame parser, buffer
// pools, write queues and timeouts. An idle connection costs no goroutine,
// no buffer and no timer: about two hundred bytes of RSS in total.
//
// # Quick start
//
//	hub, err := wshub.New(&wshub.Options{
//		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
//			c.WriteMessage(typ, data) // echo
//		},
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer hub.Close()
//	mux := http.NewServeMux()
//	mux.Handle("/ws", hub) // or: hub.ListenAndServe(":8080"), without net/http
//	log.Fatal(http.ListenAndServe(":8080", mux))
//
// A [Hub] has two doors to the same connections. As an [http.Handler] it
// mounts on a route of an existing server: it hijacks the connection,
// detaches the socket from net/http and returns at once, so that net/http
// frees its goroutine and buffers. [Hub.Serve] serves a listener of its own:
// the upgrade request is read without blocking in the poller and answered
// by the gobwas zero-copy upgrader. A third door, [Hub.ServeConn], takes a
// connection that another server accepted or read from, fasthttp and Fiber
// say (see the adapters/fiber module) or a net.Pipe in a test, through the
// same checks, and takes its socket over the same way.
//
// # Rooms
//
// A [Channel] is a named group of connections: [Hub.Channel] names it,
// [Channel.Subscribe] and [Channel.Unsubscribe] change its members, and
// [Channel.Publish] (or PublishExcept, to leave out the sender) sends to all
// of them. [Conn.SetUser] files a connection under a user id, and
// [Hub.User] is the channel of that user's connections: private messages,
// or closing every connection of a user. [Hub.Broadcast] reaches every
// connection. Channels exist while they have members.
//
// A channel may remember ([Options.ChannelHistory]): its messages get a
// [Position], which the application puts into its own payload
// ([History].Stamp), and a client that comes back hands its last one to
// [Channel.Recover], which sends what it missed and then the live messages,
// none twice and none missing. With a [HistoryBroker] (both adapters) the
// history is the broker's stream and the positions are the same on every
// hub.
//
// A publish frames the message once into a shared, reference-counted buffer
// and only queues a reference for each member; the event loops write the
// queues out, in parallel, with one writev per connection for all the
// messages queued to it since its last flush. A publish never blocks on a
// member and allocates nothing per member.
//
// # Concurrency
//
// [Hub], [Conn], [Channel] and [Poller] are safe for concurrent use.
// Callbacks run on the goroutine of the event loop that read the message,
// with no hand-off to another goroutine. Callbacks of one connection never
// overlap and come in order: OnOpen, each OnMessage, OnClose; OnClose runs
// exactly once for every OnOpen. The client gets its handshake answer (the
// 101) only when OnOpen returns, so channels it joins there get to it
// every message published after its handshake completed. A callback may
// block: after about a
// millisecond the poller hands its loop to a new goroutine, so the callback
// holds only its own connection, which is not read until it returns (the
// peer sees TCP back-pressure) while other connections go on; at most
// [PollerOptions].Workers goroutines serve the loops, blocked ones included.
// The data passed to OnMessage is valid until it returns.
//
// [Conn.WriteMessage] and [Conn.Close] never block on the network: a frame
// is written at once if the socket takes it, else queued (within
// [Options].MaxQueuedBytes) and flushed, several frames per writev, when the
// socket turns writable; what a connection's OnMessage callbacks write to
// it after the first message is written together when they return. A close
// frame the hub sends is queued after the data before it. The answer to the
// peer's close frame follows at most 64 KiB of the messages queued before
// it (a reply to the peer's last message, say): a backlog beyond that is
// dropped, since the peer reads no more, and counted as [EventDropped]
// with reason "peer closed".
//
// # Memory
//
// An idle connection is a 96-byte [Conn] struct and one slot in a table
// indexed by descriptor; each channel it belongs to adds about 40 bytes.
// Read buffers belong to the loops' goroutines, and whole messages are handed to
// OnMessage straight from them. A connection stores bytes only while a
// frame, a fragmented message or an upgrade request is incomplete: as they
// arrive, never by the length a header announces, and within the hub-wide
// [Options].MaxTotalBufferedBytes; when that budget is spent, connections
// that need more are not read until memory frees (TCP back-pressure). At
// worst one connection holds a 328-byte read state and one message. It
// borrows a write queue only while its socket is full. Every deadline
// (upgrade, incomplete message, close handshake, pong) is one 32-bit tick in
// the Conn, checked by one sweep per [Poller] instead of a timer per
// connection; the same sweep pings connections that have been silent for
// [Options].PingInterval and drops those that stay silent.
//
// # Safety
//
// Defaults suit untrusted peers: messages are limited to 1 MiB and a larger
// one is refused from its header, before any of it is buffered; a message
// that stops arriving is closed after ReadTimeout (slowloris); browsers must
// come from the same origin; frames are validated as RFC 6455 requires
// (masking, reserved bits and opcodes, control frame limits, shortest-form
// lengths, close codes, UTF-8 in text as each fragment arrives), and a
// violation closes the connection with the matching close code; the hub then
// reads through what follows, discarding it, until the peer answers. The
// memory held for incomplete input and the number of channels are bounded
// per hub. Optional limits bound the rest: connections per hub, bytes queued
// for all connections (both refuse new upgrades with 503), messages per second per connection, connection
// lifetime; a slow consumer is closed or has messages dropped, as the hub,
// channel or publish says ([SlowPolicy]). Each enforcement is counted in
// [Hub.Stats] and reported to [Options].OnEvent. Every upgrade the hub
// refuses, whatever the cause (OnUpgrade, the origin, a malformed request,
// a limit), is counted in [Stats].Refused by the HTTP status the client got.
//
// # Shutdown
//
// On SIGTERM, stop the HTTP server first (http.Server.Shutdown does not wait
// for hijacked connections), then call [Hub.Shutdown]: it refuses new
// upgrades, sends every connection a close frame after what is queued for
// it, at [Options].DrainRate if set, and waits for the peers' answers. A
// peer that never answers is dropped after [Options].CloseTimeout (5
// seconds by default), found by a sweep up to a quarter of that late, so
// the context must allow at least 1.25 times CloseTimeout, plus the
// connections divided by DrainRate when that is set. With a 5-second
// context and the default CloseTimeout, one silent peer makes Shutdown
// return context.DeadlineExceeded; the hub is then closed all the same, the
// peers that had not answered dropped as [Hub.Close] drops them. Lower
// CloseTimeout to fit a tighter grace period.
//
// # Compression
//
// With [Options].Compression the hub negotiates permessage-deflate: the
// messages it sends are compressed on their own, once per publish for all
// the members that negotiated it, with pooled compressors, so an idle
// connection owns no compression state (a browser's 512-byte window
// aside, see [Compression]).
//
// # Scale-out
//
// With [Options].Broker, publishes to channels and users reach their members
// on every hub process sharing the broker; adapters for NATS and Redis live
// in their own modules (see [Broker]). [Hub.Broadcast] stays local.
//
// Channels that [Options].ChannelPresence tracks know who is in them, on
// every hub of the broker: [Channel.Presence] counts connections and
// users (a user with three tabs is one) and lists them up to a bound, and
// [Options].OnPresence reports joins and leaves once per tick. Hubs tell
// each other through the broker; one killed is forgotten after 15 ticks.
//
// # Platforms
//
// Linux uses epoll; macOS and the BSDs use kqueue. Elsewhere, and for
// connections without a raw socket such as a net.Pipe, the portable path
// serves the same Conn API with one reader goroutine per connection.
//
// # TLS
//
// wss:// connections run on the loops like plain ones, through ServeHTTP
// under an http.Server that serves a listener wrapped by [Hub.Listener]
// (srv.ServeTLS(hub.Listener(ln), cert, key)), and through [Hub.ServeTLS]:
// crypto/tls runs the handshake on a short-lived goroutine, over a
// transport the hub supplied, then the hub drives the *tls.Conn over that
// transport without blocking, encrypting queued frames per connection when
// the socket has room. A *tls.Conn over any other net.Conn takes the
// portable path ([Stats].Portable counts them).
package wshub
