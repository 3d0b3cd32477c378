package harness

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Machine describes this machine as the reports print it: cores and CPU
// model, memory, kernel, Go version, and that the servers share the
// cores with the load generator, which every figure depends on.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		model = cpuModel(b)
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if total, err := parseMeminfo(b, "MemTotal"); err == nil {
			mem = fmt.Sprintf(", %.0f GiB of memory", float64(total)/(1<<30))
		}
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	return fmt.Sprintf("%d cores (%s)%s, %s, %s, loopback only; servers and load generator share the cores",
		runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)), runtime.Version())
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo []byte) string {
	for line := range strings.SplitSeq(string(cpuinfo), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return "unknown CPU"
}
