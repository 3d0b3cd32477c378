package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, how, out string
		want           map[string]float64
	}{
		{name: "perf", how: "perf", out: "# started on Tue Dec  1 20:37:01 2026\n\n" +
			"1234,,syscalls:sys_enter_futex,904147,100.00,,\n" +
			"<not counted>,,syscalls:sys_enter_sendto,0,100.00,,\n" +
			"56,,context-switches,904147,100.00,,\n",
			want: map[string]float64{"futex": 1234, "context-switches": 56}},
		{name: "strace", how: "strace", out: "% time     seconds  usecs/call     calls    errors syscall\n" +
			"------ ----------- ----------- --------- --------- ----------------\n" +
			" 60.00    0.300000           3    100000           write\n" +
			" 40.00    0.200000           2    100500       500 read\n" +
			"------ ----------- ----------- --------- --------- ----------------\n" +
			"100.00    0.500000           2    200500       500 total\n",
			want: map[string]float64{"write": 100000, "read": 100500, "total": 200500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "out")
			if err := os.WriteFile(path, []byte(tt.out), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := parseCounts(tt.how, path)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: got %v, want %v", k, got[k], v)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
