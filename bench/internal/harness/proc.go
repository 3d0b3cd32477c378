package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// which Linux fixes at 100 for user space whatever the kernel's own HZ.
const clockTick = 10 * time.Millisecond

// CPUTime is the CPU a process has used: in user space, and in the kernel
// on its behalf.
type CPUTime struct{ User, System time.Duration }

// Total is user and system time together, utime+stime.
func (t CPUTime) Total() time.Duration { return t.User + t.System }

// Sub is the CPU used from u to t.
func (t CPUTime) Sub(u CPUTime) CPUTime { return CPUTime{t.User - u.User, t.System - u.System} }

// CPU returns the CPU time process pid has used, from /proc/PID/stat:
// read from outside, so that every server is measured the same way
// whatever it reports of itself.
func CPU(pid int) (CPUTime, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return CPUTime{}, err
	}
	return parseStat(b)
}

// parseStat reads utime and stime from a /proc/PID/stat line.
func parseStat(b []byte) (CPUTime, error) {
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields start after its last ')'. utime and stime are the 12th
	// and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return CPUTime{}, errors.New("/proc stat: short line")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return CPUTime{}, fmt.Errorf("/proc stat: %v", err)
	}
	return CPUTime{time.Duration(ut) * clockTick, time.Duration(st) * clockTick}, nil
}

// RSS returns the resident memory of process pid in bytes, from
// /proc/PID/statm.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, err
	}
	return parseStatm(b, os.Getpagesize())
}

// parseStatm reads the resident pages, the second field of
// /proc/PID/statm, in bytes.
func parseStatm(b []byte, pageSize int) (int64, error) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, errors.New("/proc statm: short line")
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(pageSize), err
}

// Slab returns the kernel's slab memory in bytes, from /proc/meminfo: the
// whole machine's, where the kernel keeps each socket's structures.
func Slab() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMeminfo(b, "Slab")
}

// parseMeminfo reads the field key ("Slab", "MemTotal") of /proc/meminfo,
// whose values are in kB, in bytes.
func parseMeminfo(b []byte, key string) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no %s", key)
}

// WriteCalls returns the write system calls process pid has made (write,
// writev, sendto and the like), from the syscw line of /proc/PID/io: for
// a server that does not count its own.
func WriteCalls(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	return parseIO(b)
}

// parseIO reads syscw from /proc/PID/io.
func parseIO(b []byte) (uint64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("/proc io: no syscw")
}

// LoadAverage is the machine's one-minute load average, from
// /proc/loadavg, or "unknown": other work on a shared machine moves every
// figure, and the report says how much there was.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
