// Package redisbroker carries wshub publishes between hub processes through
// Redis publish/subscribe, and keeps the histories of the channels that
// have one (wshub.Options.ChannelHistory) in Redis Streams (see
// history.go; Redis 5 or later).
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
//	b := redisbroker.New(rdb, "")
//	defer b.Close() // after the hub
//	hub, err := wshub.New(&wshub.Options{Broker: b})
//
// Each hub channel (and user) is one Redis channel, subscribed while the
// channel has members on this hub, all on one pub/sub connection read by
// one goroutine. When the connection breaks, the goroutine reconnects and
// go-redis subscribes again to every channel. A node starts while Redis is
// down and joins it when it comes. Delivery is at most once, as Redis
// pub/sub's is; a publish while Redis is unreachable returns its error.
//
// The broker is a wshub.BrokerWatcher: it tells the hub when the pub/sub
// connection breaks and when it is back, and it pings Redis when the
// connection has been silent for pingEvery, so that a Redis that hangs is
// reported after at most twice that and the connection made again.
//
// Create the client with ContextTimeoutEnabled: without it go-redis bounds
// a command by its ReadTimeout (3 seconds by default) per attempt, whatever
// its context, so a publish to a Redis that hangs takes that long times
// MaxRetries+1 attempts, past the hub's Options.BrokerTimeout. go-redis's
// retries may send a publish twice when a connection breaks after Redis
// took it: the hub drops the second copy.
package redisbroker

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// pingEvery is how long the pub/sub connection may stay silent before the
// broker pings Redis; an unanswered ping for as long again means Redis
// hangs. maxBackoff bounds the pause between attempts to reconnect, and so
// the time from Redis's return to the broker's.
const (
	pingEvery  = time.Second
	maxBackoff = 500 * time.Millisecond
)

// Broker is a wshub.Broker on a go-redis client. It is safe for concurrent
// use. Close it after the hub.
type Broker struct {
	rdb    redis.UniversalClient
	prefix string

	mu       sync.RWMutex
	ps       *redis.PubSub            // replaced when Redis hangs
	handlers map[string]func([]byte)  // by Redis channel
	pending  map[string]chan struct{} // Subscribes waiting for Redis's confirmation, by channel
	up       func(connected bool)     // Watch's, or nil
	stopped  bool                     // Watch's stop was called
	state    int8                     // -1 unknown, 0 down, 1 up: what up was last told

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
		pending:  make(map[string]chan struct{}),
		state:    -1,
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go b.receive()
	return b
}

// Redis channels are binary-safe: the topic is used as it is.
func (b *Broker) channel(topic string) string { return b.prefix + topic }

// pubsub returns the current pub/sub connection.
func (b *Broker) pubsub() *redis.PubSub {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.ps
}

// receive hands each message to its channel's handler, in the order Redis
// sent them, and watches the connection: an error means it broke, and the
// next call reconnects it and subscribes again (go-redis does both); a
// silence of pingEvery sends a ping, and a ping unanswered for as long
// again means Redis hangs: the connection is replaced.
func (b *Broker) receive() {
	defer close(b.done)
	backoff := 10 * time.Millisecond
	pinged := false
	for {
		ps := b.pubsub()
		m, err := ps.ReceiveTimeout(b.ctx, pingEvery)
		if b.ctx.Err() != nil {
			return
		}
		var ne net.Error
		switch {
		case err == nil:
			backoff, pinged = 10*time.Millisecond, false
			// A reply on the connection: it is up, and go-redis has
			// subscribed again before it read anything.
			b.report(true)
			if sub, ok := m.(*redis.Subscription); ok && sub.Kind == "subscribe" {
				b.mu.Lock()
				if done := b.pending[sub.Channel]; done != nil {
					close(done)
					delete(b.pending, sub.Channel)
				}
				b.mu.Unlock()
			}
			if msg, ok := m.(*redis.Message); ok {
				b.mu.RLock()
				h := b.handlers[msg.Channel]
				b.mu.RUnlock()
				if h != nil {
					h([]byte(msg.Payload))
				}
			}
			continue
		case errors.As(err, &ne) && ne.Timeout() && pinged:
			// No answer to the ping: Redis hangs. A new connection
			// answers once it is back.
			b.report(false)
			b.renew()
			pinged = false
			continue
		case errors.As(err, &ne) && ne.Timeout():
		default:
			b.report(false)
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
		// Silent, or broken: a ping (which reconnects a broken connection,
		// and subscribes it again) tells whether Redis answers.
		pinged = ps.Ping(b.ctx) == nil
		if !pinged {
			b.report(false)
		}
	}
}

// renew replaces the pub/sub connection with a new one, subscribed to the
// same channels.
func (b *Broker) renew() {
	b.mu.Lock()
	if b.ctx.Err() != nil { // Close closes the current one
		b.mu.Unlock()
		return
	}
	old := b.ps
	chans := make([]string, 0, len(b.handlers))
	for ch := range b.handlers {
		chans = append(chans, ch)
	}
	b.ps = b.rdb.Subscribe(b.ctx)
	ps := b.ps
	b.mu.Unlock()
	old.Close()
	if len(chans) > 0 {
		// go-redis keeps the channels even if this fails, and subscribes
		// them when it connects.
		ps.Subscribe(b.ctx, chans...)
	}
}

// report tells Watch's up the connection's state, if it changed.
func (b *Broker) report(connected bool) {
	s := int8(0)
	if connected {
		s = 1
	}
	b.mu.Lock()
	defer b.mu.Unlock() // held across up: no call after stop returns
	if b.up == nil || b.stopped || b.state == s {
		return
	}
	b.state = s
	b.up(connected)
}

// Watch reports the pub/sub connection's state to up: at once, as a ping
// through rdb finds it, then on each change. The broker's goroutine makes
// the calls; stop ends them.
func (b *Broker) Watch(up func(connected bool)) (stop func()) {
	ctx, cancel := context.WithTimeout(b.ctx, pingEvery)
	err := b.rdb.Ping(ctx).Err()
	cancel()
	b.mu.Lock()
	b.up, b.state = up, 0
	if err == nil {
		b.state = 1
	}
	up(err == nil)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
	}
}

// subscribeWait bounds how long Subscribe waits for Redis to confirm.
const subscribeWait = 5 * time.Second

// Subscribe subscribes the pub/sub connection to topic's channel, and
// waits until Redis confirms it, so that what is published after it
// returns reaches this hub (a hub catches a channel's history up from its
// stream then: nothing may slip between).
func (b *Broker) Subscribe(topic string, deliver func(msg []byte)) error {
	ch := b.channel(topic)
	done := make(chan struct{})
	b.mu.Lock()
	b.handlers[ch] = deliver
	b.pending[ch] = done
	ps := b.ps
	b.mu.Unlock()
	err := ps.Subscribe(b.ctx, ch)
	if err == nil {
		t := time.NewTimer(subscribeWait)
		select {
		case <-done:
		case <-t.C:
			err = errors.New("redisbroker: no confirmation of the subscription")
		case <-b.ctx.Done():
			err = b.ctx.Err()
		}
		t.Stop()
	}
	if err != nil {
		b.mu.Lock()
		delete(b.handlers, ch)
		delete(b.pending, ch)
		b.mu.Unlock()
		ps.Unsubscribe(b.ctx, ch) // go-redis kept it, to subscribe on reconnect
		return err
	}
	return nil
}

// Unsubscribe unsubscribes from topic's channel.
func (b *Broker) Unsubscribe(topic string) error {
	ch := b.channel(topic)
	b.mu.Lock()
	delete(b.handlers, ch)
	ps := b.ps
	b.mu.Unlock()
	return ps.Unsubscribe(b.ctx, ch)
}

// Publish publishes msg to topic's channel; it gives up when ctx or the
// broker ends (see the package documentation on ContextTimeoutEnabled).
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
	b.mu.RLock()
	ps := b.ps
	b.mu.RUnlock()
	err := ps.Close()
	<-b.done
	return err
}
