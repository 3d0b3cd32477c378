// Package wsjson sends values as JSON text messages through a wshub hub:
// to one connection, or to a channel or every connection, encoded once
// however many receive it.
//
//	wsjson.Write(c, Reply{OK: true})
//	wsjson.Publish(hub.Channel("prices"), Tick{Symbol: "ACME", Price: 12.5})
//
// To read, decode the data OnMessage receives with encoding/json: the hub
// hands over whole messages, so there is nothing for a helper to add.
//
// Values are encoded into pooled buffers, which the hub copies into its own
// frames before these functions return. Encoding errors are returned before
// anything is sent.
package wsjson

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/wshub/wshub"
)

// maxPooled bounds the buffers kept for reuse: one huge value must not
// pin its buffer for ever.
const maxPooled = 64 << 10

// buffer is a pooled buffer with an encoder that writes to it.
type buffer struct {
	bytes.Buffer
	enc *json.Encoder
}

var buffers = sync.Pool{New: func() any {
	b := new(buffer)
	b.enc = json.NewEncoder(&b.Buffer)
	return b
}}

// encode returns v as JSON in a pooled buffer, without encoding/json's
// trailing newline. Give the buffer back with put.
func encode(v any) (*buffer, error) {
	b := buffers.Get().(*buffer)
	b.Reset()
	if err := b.enc.Encode(v); err != nil {
		put(b)
		return nil, err
	}
	b.Truncate(b.Len() - 1)
	return b, nil
}

func put(b *buffer) {
	if b.Cap() <= maxPooled {
		buffers.Put(b)
	}
}

// Write sends v to c as one JSON text message. Its errors are encoding
// errors and those of Conn.WriteMessage.
func Write(c *wshub.Conn, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	defer put(b)
	return c.WriteMessage(wshub.Text, b.Bytes())
}

// Publish sends v to every member of ch as one JSON text message, encoded
// once, and returns how many it was queued for, as Channel.Publish does.
func Publish(ch *wshub.Channel, v any) (int, error) {
	return PublishWith(ch, v, wshub.PublishOptions{})
}

// PublishExcept is Publish to every member but except, typically the
// sender.
func PublishExcept(ch *wshub.Channel, v any, except *wshub.Conn) (int, error) {
	return PublishWith(ch, v, wshub.PublishOptions{Except: except})
}

// PublishWith is Publish with Channel.PublishWith's options.
func PublishWith(ch *wshub.Channel, v any, o wshub.PublishOptions) (int, error) {
	b, err := encode(v)
	if err != nil {
		return 0, err
	}
	defer put(b)
	return ch.PublishWith(wshub.Text, b.Bytes(), o)
}

// Broadcast sends v to every connection of h as one JSON text message,
// encoded once, as Hub.Broadcast does.
func Broadcast(h *wshub.Hub, v any) (int, error) {
	b, err := encode(v)
	if err != nil {
		return 0, err
	}
	defer put(b)
	return h.Broadcast(wshub.Text, b.Bytes())
}
