// Package natsbroker carries wshub publishes between hub processes through
// NATS core publish/subscribe.
//
//	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
//	hub, err := wshub.New(&wshub.Options{Broker: natsbroker.New(nc, "")})
//
// Each hub channel (and user) is one NATS subject, subscribed while the
// channel has members on this hub. The nats.Conn stays the caller's: close
// it after the hub. Its reconnect logic restores the subscriptions when the
// server comes back. Delivery is at most once, as NATS core's is; a publish
// while the connection is down returns an error instead of being buffered,
// so that the hub's caller knows.
package natsbroker

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
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
}

// New returns a broker that publishes and subscribes on nc, under subjects
// that start with prefix and a dot ("wshub" if prefix is empty): hubs that
// share a prefix share their channels.
func New(nc *nats.Conn, prefix string) *Broker {
	if prefix == "" {
		prefix = "wshub"
	}
	return &Broker{nc: nc, prefix: prefix, subs: make(map[string]*nats.Subscription)}
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
