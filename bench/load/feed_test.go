package load

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"testing"
)

// TestFeedJSON: every message is valid JSON of exactly the size asked,
// carries its sequence number where Seq finds it, and compresses like chat
// JSON (about 2 times at flate.BestSpeed, the level every peer defaults to),
// not like repeated bytes.
func TestFeedJSON(t *testing.T) {
	t.Parallel()
	for _, size := range []int{256, 300, 1000, 1024, 4096} {
		for seq := range uint64(3000) {
			p := FeedJSON(seq, size)
			if len(p) != size {
				t.Fatalf("FeedJSON(%d, %d): %d bytes", seq, size, len(p))
			}
			if !json.Valid(p) {
				t.Fatalf("FeedJSON(%d, %d) is not JSON: %s", seq, size, p)
			}
			if got, ok := Seq(p); !ok || got != seq {
				t.Fatalf("Seq(FeedJSON(%d)) = %d, %v", seq, got, ok)
			}
		}
	}
	if bytes.Equal(FeedJSON(1, 1024)[24:], FeedJSON(2, 1024)[24:]) {
		t.Error("two messages alike but for their sequence numbers")
	}
	var b bytes.Buffer
	fw, _ := flate.NewWriter(&b, flate.BestSpeed)
	fw.Write(FeedJSON(7, 1024))
	fw.Flush()
	if r := 1024 / float64(b.Len()-4); r < 1.7 || r > 4 {
		t.Errorf("1 KiB of FeedJSON deflates %.2f times, want 1.7-4", r)
	} else {
		t.Logf("1 KiB of FeedJSON deflates %.2f times (%d bytes)", r, b.Len()-4)
	}
}

// TestInflate: a message compressed as permessage-deflate sends it (the
// sync marker removed) comes back whole, into a buffer smaller than it.
func TestInflate(t *testing.T) {
	t.Parallel()
	want := FeedJSON(3, 4096)
	var b bytes.Buffer
	fw, _ := flate.NewWriter(&b, flate.BestSpeed)
	fw.Write(want)
	fw.Flush()
	got, err := inflate(b.Bytes()[:b.Len()-4], make([]byte, 0, 100))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("inflate: %d bytes, %v", len(got), err)
	}
}
