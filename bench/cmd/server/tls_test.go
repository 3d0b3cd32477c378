package main

import (
	"context"
	"testing"
	"time"

	"github.com/wshub/wshub/bench/internal/harness"
	"github.com/wshub/wshub/bench/load"
)

// TestEveryLibraryServesTLS runs this command with -tls for each library,
// in a process of its own as cmd/results' tls scenario runs it, and checks
// an echo over wss:// and /stats over https:// (over http:// for wshub
// -listener, whose HTTP routes stay plain).
func TestEveryLibraryServesTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts this command")
	}
	bin := buildServer(t)
	for _, name := range []string{"wshub", "wshub -listener", "gorilla", "melody", "gws", "nbio"} {
		t.Run(name, func(t *testing.T) {
			p := harness.Process{Bin: bin, Args: []string{"-lib", name}, TLS: true}
			if name == "wshub -listener" {
				p.Args, p.HTTPPort = []string{"-lib", "wshub", "-listener"}, true
			}
			s, err := harness.Start(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Stop)
			conns, _, err := load.DialTLS(context.Background(), s.URL("/echo"), 3, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer load.CloseAll(conns)
			if r := load.Echo(conns, 256, 0, 300*time.Millisecond); r.Errors > 0 || r.Messages == 0 {
				t.Errorf("echo over wss://: %+v", r)
			}
			if _, err := s.Get("/stats"); err != nil {
				t.Fatalf("stats: %v", err)
			}
		})
	}
}
