package wshub

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

// The limits over real sockets, through every door; limits_test.go checks
// their timing and counts to the millisecond in synctest bubbles.

func TestFloodingClientIsRateLimited(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MessageRate = 50
			opts.MessageBurst = 20
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			var flood []byte
			for i := range 1000 {
				flood = append(flood, text(strconv.Itoa(i))...)
			}
			c.nc.Write(flood) // the hub may stop reading before the end
			if got := c.expectClose(ClosePolicyViolation); got != "rate limit exceeded" {
				t.Errorf("close reason %q", got)
			}
			if e := rec.waitClosed(t).err; e.Code != ClosePolicyViolation {
				t.Errorf("OnClose got %v", e)
			}
			// The burst, plus what the credit refilled while the flood
			// was read: 50 a second, and a loaded machine may take a
			// second to read it. limits_test.go counts exactly.
			if n := len(rec.messages); n < 20 || n > 70 {
				t.Errorf("%d messages delivered from the flood of 1,000, want the burst of 20 and at most a second's 50 more", n)
			}
			if st := h.Stats(); st.Reasons["rate limit exceeded"] != 1 {
				t.Errorf("reasons %v", st.Reasons)
			}
		})
	}
}

// fillQueue writes 16 KiB messages to a client that does not read until at
// least n bytes are queued for it.
func fillQueue(t *testing.T, h *Hub, conn *Conn, n int64) {
	t.Helper()
	chunk := make([]byte, 16<<10)
	for i := 0; h.Stats().QueuedBytes < n; i++ {
		if i == 10000 {
			t.Fatalf("%d bytes queued after 10,000 writes", h.Stats().QueuedBytes)
		}
		if err := conn.WriteMessage(Binary, chunk); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQueueBudgetRefusesUpgradesWith503(t *testing.T) {
	t.Parallel()
	for _, d := range doors[:2] {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 64 << 20
			opts.MaxTotalQueuedBytes = 1 << 20
			h, addr := startHub(t, opts, d)
			slow := connect(t, addr)
			conn := <-rec.opened
			fillQueue(t, h, conn, 1<<20+1)

			c := dial(t, addr)
			c.write([]byte(upgradeRequest(addr)))
			if got := c.readResponse(); got != http.StatusServiceUnavailable {
				t.Fatalf("upgrade over the budget: status %d, want 503", got)
			}
			slow.nc.Close() // its queue goes with it
			rec.waitClosed(t)
			waitFor(t, func() bool { return h.Stats().QueuedBytes == 0 })
			connect(t, addr)
			if st := h.Stats(); st.Rejected != 1 || st.Conns != 1 {
				t.Errorf("stats: %d rejected, %d conns; want 1, 1", st.Rejected, st.Conns)
			}
		})
	}
}

// TestDropOldestOverSockets: a client that reads late gets the newest
// messages, in order, and is never closed; the queue stays within bounds.
func TestDropOldestOverSockets(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			opts := rec.options(false)
			opts.MaxQueuedBytes = 256 << 10
			opts.SlowConsumer = SlowDropOldest
			h, addr := startHub(t, opts, d)
			c := connect(t, addr)
			conn := <-rec.opened
			h.Channel("feed").Subscribe(conn)
			const total = 2000 // 32 MB: far more than the socket buffers hold
			pad := make([]byte, 16<<10)
			for i := range total {
				msg := fmt.Appendf(nil, "%06d", i)
				h.Channel("feed").Publish(Binary, append(msg, pad...))
				if q := conn.queued(); q > opts.MaxQueuedBytes {
					t.Fatalf("queued %d bytes, bound %d", q, opts.MaxQueuedBytes)
				}
			}
			prev := -1
			received := 0
			for prev != total-1 {
				f := c.readFrame()
				n, _ := strconv.Atoi(string(f.payload[:6]))
				if n <= prev {
					t.Fatalf("message %d after %d", n, prev)
				}
				prev = n
				received++
			}
			st := h.Stats()
			if st.Dropped == 0 || int(st.Dropped)+received != total || len(rec.closed) != 0 {
				t.Errorf("%d dropped + %d received, want %d; %d closed", st.Dropped, received, total, len(rec.closed))
			}
		})
	}
}
