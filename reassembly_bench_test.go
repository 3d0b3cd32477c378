package wshub

import (
	"fmt"
	"testing"
	"time"
)

// fragmentedFrames encodes payload as one binary message in masked client
// frames of frag bytes of payload each: a first binary frame, then
// continuations, the last one final.
func fragmentedFrames(payload []byte, frag int) []byte {
	var stream []byte
	for i := 0; i < len(payload); i += frag {
		op := byte(opContinuation)
		if i == 0 {
			op = opBinary
		}
		end := min(i+frag, len(payload))
		stream = append(stream, clientFrame(end == len(payload), op, payload[i:end], true)...)
	}
	return stream
}

// reassemblyHub starts a hub on its own listener that counts the bytes of
// each message it receives on sizes, and connects a client to it.
func reassemblyHub(tb testing.TB) (*Hub, *client, chan int) {
	sizes := make(chan int, 1)
	h, addr := startHub(tb, &Options{
		// A message in small fragments may take a while to arrive
		// on quadratic reassembly; the benchmark measures it, not
		// the timeout.
		ReadTimeout: 10 * time.Minute,
		OnMessage:   func(c *Conn, typ MessageType, p []byte) { sizes <- len(p) },
	}, doorNamed("listener"))
	return h, connect(tb, addr), sizes
}

// sendFragmented writes stream, one message, and waits until the hub has
// received it whole (size bytes).
func sendFragmented(tb testing.TB, c *client, sizes chan int, stream []byte, size int) {
	c.write(stream)
	select {
	case n := <-sizes:
		if n != size {
			tb.Fatalf("the hub received a message of %d bytes, want %d", n, size)
		}
	case <-time.After(10 * time.Minute):
		tb.Fatal("the message did not arrive")
	}
}

// BenchmarkReassembly measures what reassembling a fragmented message
// costs the hub: each iteration, a client sends a 1 MiB binary message
// over loopback, in fragments of 16, 64 or 4,096 bytes (a masked frame
// each), to a hub on its own listener, and waits until OnMessage has it.
// Besides the throughput (b.SetBytes, the message's payload) it reports:
//
//   - cpu-µs/msg and cpu-ns/B: the CPU of the process per message and per
//     byte of payload (getrusage). The client runs in this process too,
//     so this is the hub's reassembly plus the client's writes (one write
//     of the whole stream per message; bench/cmd/results -scenarios
//     fragments measures the server's alone, in its own process);
//   - copied/B: the bytes reassembly copied into stored buffers per byte
//     of payload, from the hub's counter (Hub.stats.copied): the payload
//     appended, and what each growth of a buffer moved. Linear reassembly
//     keeps it a small constant whatever the fragment size.
//
// Reassembly is linear if the 16-byte case costs about what the 4,096-byte
// one does per byte (issue 23 asks for at most four times).
func BenchmarkReassembly(b *testing.B) {
	const size = 1 << 20
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*7 + i>>12)
	}
	for _, frag := range []int{16, 64, 4096} {
		b.Run(fmt.Sprintf("frag=%d", frag), func(b *testing.B) {
			stream := fragmentedFrames(payload, frag)
			h, c, sizes := reassemblyHub(b)
			// Warm up: a message of the same shape, so that the pools
			// hold what a message needs.
			sendFragmented(b, c, sizes, stream, size)
			b.SetBytes(size)
			b.ResetTimer()
			copied0, cpu0 := h.stats.copied.Load(), processCPU()
			for range b.N {
				sendFragmented(b, c, sizes, stream, size)
			}
			cpu, copied := processCPU()-cpu0, h.stats.copied.Load()-copied0
			b.StopTimer()
			bytes := float64(b.N) * size
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/msg")
			b.ReportMetric(float64(cpu.Nanoseconds())/bytes, "cpu-ns/B")
			b.ReportMetric(float64(copied)/bytes, "copied/B")
		})
	}
}

// TestReassemblyHarness runs BenchmarkReassembly's loop on a small
// message, so that the suite covers it: two messages in 16-byte fragments
// arrive whole.
func TestReassemblyHarness(t *testing.T) {
	t.Parallel()
	payload := make([]byte, 64<<10)
	for i := range payload {
		payload[i] = byte(i)
	}
	stream := fragmentedFrames(payload, 16)
	if want := len(payload) / 16 * (2 + 4 + 16); len(stream) != want {
		t.Fatalf("stream of %d bytes, want %d", len(stream), want)
	}
	_, c, sizes := reassemblyHub(t)
	for range 2 {
		sendFragmented(t, c, sizes, stream, len(payload))
	}
}
