// Package redisbroker carries wshub publishes between hub processes through
// Redis publish/subscribe.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	b := redisbroker.New(rdb, "")
//	defer b.Close() // after the hub
//	hub, err := wshub.New(&wshub.Options{Broker: b})
//
// Each hub channel (and user) is one Redis channel, subscribed while the
// channel has members on this hub, all on one pub/sub connection read by
// one goroutine. When the connection breaks, the goroutine reconnects and
// go-redis subscribes again to every channel. Delivery is at most once, as
// Redis pub/sub's is; a publish while Redis is unreachable returns its error.
package redisbroker

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Broker is a wshub.Broker on a go-redis client. It is safe for concurrent
// use. Close it after the hub.
type Broker struct {
	rdb    redis.UniversalClient
	prefix string
	ps     *redis.PubSub

	mu       sync.RWMutex
	handlers map[string]func([]byte) // by Redis channel

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a broker on rdb whose Redis channels start with prefix and a
// colon ("wshub" if prefix is empty): hubs that share a prefix share their
// channels. It starts the goroutine that reads the pub/sub connection.
func New(rdb redis.UniversalClient, prefix string) *Broker {
	if prefix == "" {
		prefix = "wshub"
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		rdb:      rdb,
		prefix:   prefix + ":",
		ps:       rdb.Subscribe(ctx),
		handlers: make(map[string]func([]byte)),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go b.receive()
	return b
}

// Redis channels are binary-safe: the topic is used as it is.
func (b *Broker) channel(topic string) string { return b.prefix + topic }

// receive hands each message to its channel's handler, in the order Redis
// sent them. An error means the connection broke: go-redis reconnects, and
// subscribes again, on the next call.
func (b *Broker) receive() {
	defer close(b.done)
	backoff := 10 * time.Millisecond
	for {
		m, err := b.ps.ReceiveMessage(b.ctx)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		b.mu.RLock()
		h := b.handlers[m.Channel]
		b.mu.RUnlock()
		if h != nil {
			h([]byte(m.Payload))
		}
	}
}

// Subscribe subscribes the pub/sub connection to topic's channel.
func (b *Broker) Subscribe(topic string, deliver func(msg []byte)) error {
	ch := b.channel(topic)
	b.mu.Lock()
	b.handlers[ch] = deliver
	b.mu.Unlock()
	if err := b.ps.Subscribe(b.ctx, ch); err != nil {
		b.mu.Lock()
		delete(b.handlers, ch)
		b.mu.Unlock()
		return err
	}
	return nil
}

// Unsubscribe unsubscribes from topic's channel.
func (b *Broker) Unsubscribe(topic string) error {
	ch := b.channel(topic)
	b.mu.Lock()
	delete(b.handlers, ch)
	b.mu.Unlock()
	return b.ps.Unsubscribe(b.ctx, ch)
}

// Publish publishes msg to topic's channel; it gives up when ctx or the
// broker ends.
func (b *Broker) Publish(ctx context.Context, topic string, msg []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.ctx, cancel)() // Close ends a publish under way too
	return b.rdb.Publish(ctx, b.channel(topic), msg).Err()
}

// Close closes the pub/sub connection and waits for its goroutine. It does
// not close rdb.
func (b *Broker) Close() error {
	b.cancel()
	err := b.ps.Close()
	<-b.done
	return err
}
