package load

import (
	"fmt"
	"io"

	"github.com/gobwas/ws"
)

// Fragmented encodes payload as one message of op in masked client frames
// of at most size bytes of payload each: a first frame of op, then
// continuation frames, the last one final. The mask is fixed, as Frame's.
// An empty payload is one empty final frame.
func Fragmented(op ws.OpCode, payload []byte, size int) []byte {
	if size <= 0 {
		size = max(len(payload), 1)
	}
	frames := max((len(payload)+size-1)/size, 1)
	mask := [4]byte{1, 2, 3, 4}
	w := &appendWriter{b: make([]byte, 0, len(payload)+frames*ws.MaxHeaderSize)}
	for i := range frames {
		p := payload[i*size : min((i+1)*size, len(payload))]
		h := ws.Header{Fin: i == frames-1, OpCode: ws.OpContinuation, Length: int64(len(p)), Masked: true, Mask: mask}
		if i == 0 {
			h.OpCode = op
		}
		ws.WriteHeader(w, h)
		start := len(w.b)
		w.b = append(w.b, p...)
		ws.Cipher(w.b[start:], mask, 0)
	}
	return w.b
}

// ReadWhole reads one data message, whatever the frames the server split
// it into, appending its payload to buf[:0] (grown if needed); pings are
// answered, other control frames but close skipped. A frame that starts
// a message inside another, or continues none, is an error.
func (c *Conn) ReadWhole(buf []byte) ([]byte, error) {
	msg := buf[:0]
	started := false
	var scratch []byte // each frame's payload, before it is appended
	for {
		h, p, err := c.readFrame(scratch, nil)
		if err != nil {
			return msg, err
		}
		scratch = p
		switch {
		case started && h.OpCode != ws.OpContinuation:
			return msg, fmt.Errorf("a frame of opcode %d inside a fragmented message", h.OpCode)
		case !started && h.OpCode == ws.OpContinuation:
			return msg, fmt.Errorf("a continuation frame outside a message")
		}
		started = true
		msg = append(msg, p...)
		if h.Fin {
			return msg, nil
		}
	}
}

// ReadRaw reads exactly len(p) bytes from the connection, frames or not:
// what a bare TCP echo sends back.
func (c *Conn) ReadRaw(p []byte) error {
	_, err := io.ReadFull(c.br, p)
	return err
}
