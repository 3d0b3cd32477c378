package wshub

import (
	"errors"
	"strconv"
)

// The errors the hub's methods return, to compare with errors.Is. How a
// connection ended is a *CloseError; an upgrade OnUpgrade refuses is an
// *UpgradeError.
var (
	// ErrHubClosed is returned by Serve and ListenAndServe after Close or
	// Shutdown, and by New when given a closed Poller.
	ErrHubClosed = errors.New("wshub: hub closed")

	// ErrSlowConsumer is returned by a write to a connection whose queue
	// of unsent bytes would exceed Options.MaxQueuedBytes; the message is
	// not sent. Under SlowClose (the default) the connection is closed
	// with ClosePolicyViolation, ReasonSlowConsumer: its queued messages
	// are dropped and the close frame goes out in their place. Under
	// SlowDropNewest only the new message is dropped.
	ErrSlowConsumer = errors.New("wshub: slow consumer: write queue full")

	// ErrMessageTooBig is returned by a write or publish of a message whose
	// frame is larger than Options.MaxQueuedBytes, before any of it is
	// written or queued: the connection (or the channel's members) are
	// untouched and stay usable. Such a frame could not wait in a queue
	// whole, and once its first byte is on the wire nothing else may be
	// written until its last; refusing it up front keeps MaxQueuedBytes a
	// true bound and every frame whole. Raise MaxQueuedBytes to send
	// larger messages.
	ErrMessageTooBig = errors.New("wshub: message larger than MaxQueuedBytes")

	// ErrTooManySubscriptions is returned by Channel.Subscribe when the
	// connection already belongs to Options.MaxSubscriptions channels.
	ErrTooManySubscriptions = errors.New("wshub: too many subscriptions")

	// ErrTooManyChannels is returned by Channel.Subscribe when the channel
	// does not exist yet and the hub has Options.MaxChannels channels.
	ErrTooManyChannels = errors.New("wshub: too many channels")

	// ErrOtherHub is returned by Channel.Subscribe for a connection of
	// another hub.
	ErrOtherHub = errors.New("wshub: connection of another hub")

	// ErrMessageType is returned for a MessageType other than Text or
	// Binary.
	ErrMessageType = errors.New("wshub: message type must be Text or Binary")

	// ErrSlowPolicy is returned by Channel.PublishWith for an unknown
	// SlowPolicy.
	ErrSlowPolicy = errors.New("wshub: unknown SlowPolicy")
)

// The reasons the hub gives when it closes a connection for a limit or a
// timeout: the Reason of the *CloseError OnClose receives and of the
// EventClosed event, and the keys of Stats.Reasons.
const (
	ReasonSlowConsumer     = "slow consumer"
	ReasonRateLimit        = "rate limit exceeded"
	ReasonReadTimeout      = "read timeout"
	ReasonPongTimeout      = "pong timeout"
	ReasonHandshakeTimeout = "handshake timeout"
	ReasonIdleTimeout      = "idle timeout"
	ReasonMaxLifetime      = "max lifetime"
	ReasonEmptyFragments   = "too many empty fragments"

	// ReasonExpired is the reason of a connection closed with
	// CloseUnauthorized because its credentials expired (Conn.SetExpiry).
	ReasonExpired = "credentials expired"

	// ReasonPeerClosed is the reason of an EventDropped for a message that
	// was still queued, behind 64 KiB of others, when the peer's close
	// frame came: the hub answers the close soon rather than after the
	// backlog.
	ReasonPeerClosed = "peer closed"
)

// CloseError describes how a connection ended when a close code is known: the
// code and reason the peer sent, or the ones the hub sent when it closed the
// connection itself (a protocol error, a timeout, a slow consumer, Close).
type CloseError struct {
	Code   CloseCode
	Reason string

	// ByPeer tells who ended the connection. It is true when the peer did:
	// its close frame came first (Code and Reason are what it sent), or its
	// connection ended without one (CloseAbnormal, "connection lost"). It
	// is false when the hub did, whatever the peer did next: Conn.Close,
	// Shutdown, a protocol error, a limit or a timeout (Code and Reason are
	// what the hub sent, or CloseAbnormal where it sent nothing).
	ByPeer bool
}

// Error returns "wshub: close CODE: REASON".
func (e *CloseError) Error() string {
	s := "wshub: close " + strconv.Itoa(int(e.Code))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}
