package harness

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	// A command name with a space and a parenthesis: the fields start
	// after the last ')'. utime 250 and stime 75 ticks.
	line := "4242 (my (server)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000000 500\n"
	got, err := parseStat([]byte(line))
	if want := (CPUTime{2500 * time.Millisecond, 750 * time.Millisecond}); err != nil || got != want {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	if d := got.Sub(CPUTime{time.Second, 250 * time.Millisecond}); d.Total() != 2*time.Second {
		t.Errorf("Sub: %+v, want 2s in all", d)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2 3", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestParseStatmMeminfoIO(t *testing.T) {
	t.Parallel()
	if got, err := parseStatm([]byte("52000 3000 1200 300 0 9000 0\n"), 4096); err != nil || got != 3000*4096 {
		t.Errorf("statm: got %d, %v; want %d", got, err, 3000*4096)
	}
	meminfo := []byte("MemTotal:       25165824 kB\nMemFree:         1000000 kB\nSlab:             512000 kB\n")
	if got, err := parseMeminfo(meminfo, "Slab"); err != nil || got != 512000<<10 {
		t.Errorf("meminfo Slab: got %d, %v; want %d", got, err, 512000<<10)
	}
	if got, err := parseIO([]byte("rchar: 100\nwchar: 200\nsyscr: 7\nsyscw: 12345\n")); err != nil || got != 12345 {
		t.Errorf("io syscw: got %d, %v; want 12345", got, err)
	}
	if got := cpuModel([]byte("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n")); got != "AMD EPYC" {
		t.Errorf("cpuinfo model: got %q", got)
	}
	for name, err := range map[string]error{
		"short statm":      func() error { _, err := parseStatm([]byte("52000"), 4096); return err }(),
		"no Shmem":         func() error { _, err := parseMeminfo(meminfo, "Shmem"); return err }(),
		"no syscw":         func() error { _, err := parseIO([]byte("rchar: 100\n")); return err }(),
		"statm not a page": func() error { _, err := parseStatm([]byte("1 x"), 4096); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestThisProcess reads this process's own /proc files: the readers
// agree with what this kernel writes there.
func TestThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	t.Parallel()
	pid := os.Getpid()
	if rss, err := RSS(pid); err != nil || rss <= 0 {
		t.Errorf("RSS: %d, %v", rss, err)
	}
	before, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	if after, err := CPU(pid); err != nil || after.Total() <= before.Total() {
		t.Errorf("CPU after 50 ms of work: %v then %v, %v", before, after, err)
	}
	if _, err := Slab(); err != nil {
		t.Error(err)
	}
	w0, err := WriteCalls(pid)
	if err != nil {
		t.Skip(err) // no /proc/PID/io in this container
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 10 {
		f.Write([]byte("x"))
	}
	if w1, _ := WriteCalls(pid); w1-w0 < 10 {
		t.Errorf("syscw grew by %d over 10 writes", w1-w0)
	}
}
