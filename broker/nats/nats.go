// Package natsbroker carries wshub publishes between hub processes through
// NATS core publish/subscribe, and keeps the histories of the channels
// that have one (wshub.Options.ChannelHistory) in JetStream streams (see
// history.go): those need a server with JetStream on (nats-server -js).
//
//	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
//	hub, err := wshub.New(&wshub.Options{Broker: natsbroker.New(nc, "")})
//
// Each hub channel (and user) is one NATS subject, subscribed while the
// channel has members on this hub. The nats.Conn stays the caller's: close
// it after the hub. Connect it with RetryOnFailedConnect, so that a node
// starts while NATS is down and joins it when it comes, and MaxReconnects(-1),
// so that it never gives up; its reconnect logic restores the
// subscriptions when the server comes back.
//
// The broker is a wshub.BrokerWatcher: it tells the hub when the
// connection is lost and when it is back (nats.go's status changes), and
// it sends the server a ping every half second, so that a server that
// hangs, which nats.go notices only after its own ping interval (two
// minutes by default), is reported within a second and a half. The hub
// then refuses publishes until the server answers again; those nats.go
// accepted before go out when it does, and the other hubs drop the ones
// older than their Options.BrokerTimeout by then. The connection itself is
// kept: nats.go gives it up for another server after its own ping
// interval (nats.PingInterval and nats.MaxPingsOutstanding choose).
// Delivery is at most once, as NATS core's is; a publish while the
// connection is down returns an error instead of being buffered, so that
// the hub's caller knows.
package natsbroker

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrDisconnected is returned by Publish while the NATS connection is down.
var ErrDisconnected = errors.New("natsbroker: not connected to NATS")

// Broker is a wshub.Broker on a NATS connection. It is safe for concurrent
// use.
type Broker struct {
	nc     *nats.Conn
	prefix string

	mu   sync.Mutex
	subs map[string]*nats.Subscription

	hs streams // the channels' histories, in JetStream (history.go)
}

// New returns a broker that publishes and subscribes on nc, under subjects
// that start with prefix and a dot ("wshub" if prefix is empty): hubs that
// share a prefix share their channels.
func New(nc *nats.Conn, prefix string) *Broker {
	if prefix == "" {
		prefix = "wshub"
	}
	js, _ := jetstream.New(nc) // fails only for a nil nc
	return &Broker{
		nc:     nc,
		prefix: prefix,
		subs:   make(map[string]*nats.Subscription),
		hs:     streams{js: js, known: make(map[string]streamState)},
	}
}

// subject maps a topic, any bytes, to a valid NATS subject: base64url uses
// only characters allowed in a subject token, never '.', '*' or '>'.
func (b *Broker) subject(topic string) string {
	return b.prefix + "." + base64.RawURLEncoding.EncodeToString([]byte(topic))
}

// Subscribe subscribes to topic's subject and waits until the server has
// registered the subscription, so that publishes from other hubs after it
// returns reach this one.
func (b *Broker) Subscribe(topic string, deliver func(msg []byte)) error {
	sub, err := b.nc.Subscribe(b.subject(topic), func(m *nats.Msg) { deliver(m.Data) })
	if err != nil {
		return err
	}
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		sub.Unsubscribe()
		return err
	}
	b.mu.Lock()
	if old := b.subs[topic]; old != nil {
		old.Unsubscribe()
	}
	b.subs[topic] = sub
	b.mu.Unlock()
	return nil
}

// Unsubscribe removes the subscription to topic.
func (b *Broker) Unsubscribe(topic string) error {
	b.mu.Lock()
	sub := b.subs[topic]
	delete(b.subs, topic)
	b.mu.Unlock()
	if sub == nil {
		return nil
	}
	return sub.Unsubscribe()
}

// Publish publishes msg to topic's subject. It returns ErrDisconnected
// while the connection is down or reconnecting, rather than let nats.go
// buffer the message for a reconnect that may never come.
// nats.go's Publish does not block (it buffers), so ctx is only checked
// before.
func (b *Broker) Publish(ctx context.Context, topic string, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !b.nc.IsConnected() {
		return ErrDisconnected
	}
	return b.nc.Publish(b.subject(topic), msg)
}

// The liveness check of Watch: a ping every pingEvery, which the server
// must answer within pingTimeout.
// A publish accepted while the server hangs, before the check notices,
// waits in nats.go's buffer and the socket's: the sooner the check, the
// fewer.
const (
	pingEvery   = 500 * time.Millisecond
	pingTimeout = time.Second
)

// Watch reports the connection's state to up: at once, then on each change
// nats.go reports, and as lost while the server does not answer a ping
// within pingTimeout. It runs a goroutine until stop.
func (b *Broker) Watch(up func(connected bool)) (stop func()) {
	changes := b.nc.StatusChanged()
	done := make(chan struct{})
	exited := make(chan struct{})
	up(b.nc.IsConnected())
	go func() {
		defer close(exited)
		tick := time.NewTicker(pingEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-changes:
				// Events may be dropped while the channel is full: the
				// connection's state, read now, is what counts.
			case <-tick.C:
				if !b.nc.IsConnected() {
					continue
				}
				if err := b.nc.FlushTimeout(pingTimeout); err != nil && b.nc.IsConnected() {
					// Connected, yet no answer: the server hangs. The
					// hub refuses publishes until it answers again.
					up(false)
					continue
				}
			}
			up(b.nc.IsConnected())
		}
	}()
	return func() {
		b.nc.RemoveStatusListener(changes)
		close(done)
		<-exited
	}
}
