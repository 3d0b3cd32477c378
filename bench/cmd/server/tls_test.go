package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wshub/wshub/bench/load"
)

// TestEveryLibraryServesTLS runs this command with -tls for each library,
// in a process of its own as cmd/tlsidle runs it, and checks an echo over
// wss:// and /stats over https:// (over http:// for wshub -listener, whose
// HTTP routes stay plain).
func TestEveryLibraryServesTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts this command")
	}
	bin := filepath.Join(t.TempDir(), "server")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, name := range []string{"wshub", "wshub -listener", "gorilla", "melody", "gws", "nbio"} {
		t.Run(name, func(t *testing.T) {
			addr := freeAddr(t)
			args := []string{"-tls", "-addr", addr}
			stats := "https://" + addr + "/stats"
			if name == "wshub -listener" {
				httpAddr := freeAddr(t)
				args = append(args, "-lib", "wshub", "-listener", "-http", httpAddr)
				stats = "http://" + httpAddr + "/stats"
			} else {
				args = append(args, "-lib", name)
			}
			cmd := exec.Command(bin, args...)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
			})
			if err := load.WaitPort(addr, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			conns, _, err := load.DialTLS(context.Background(), "wss://"+addr+"/echo", 3, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer load.CloseAll(conns)
			if r := load.Echo(conns, 256, 0, 300*time.Millisecond); r.Errors > 0 || r.Messages == 0 {
				t.Errorf("echo over wss://: %+v", r)
			}
			resp, err := insecure.Get(stats)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("stats: %v", err)
			}
			resp.Body.Close()
		})
	}
}
