package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wshub/wshub/bench/load"
)

// sysCalls are the system calls the echocpu scenario counts, by
// tracepoint name; its table shows futex and nanosleep on their own and
// the I/O ones together.
var sysCalls = []string{"futex", "nanosleep", "read", "write", "writev", "epoll_pwait", "epoll_wait", "recvfrom", "sendto", "sched_yield"}

// countSyscalls counts process pid's system calls (how: perf or strace)
// while conns echo size-byte messages in a closed loop for window, and
// returns them per round trip, by name ("context-switches" too, from
// perf).
func countSyscalls(how string, pid int, conns []*load.Conn, size int, window time.Duration, dir string) (map[string]float64, error) {
	out := filepath.Join(dir, "syscalls")
	c, err := startCounter(how, pid, out)
	if err != nil {
		return nil, err
	}
	// perf is enabled just before the round trips start being counted and
	// disabled just before they are read, so that its lags cancel; strace
	// counts from its start to its stop, a little more than the window.
	res := load.EchoWindow(conns, size, 200*time.Millisecond, window, func(start bool) {
		if err == nil {
			err = c.control(start)
		}
	})
	if serr := c.stop(); err == nil {
		err = serr
	}
	if err == nil && res.Errors > 0 {
		err = fmt.Errorf("while counting system calls: %d connections failed", res.Errors)
	}
	if err != nil {
		return nil, err
	}
	counts, err := parseCounts(how, out)
	if err != nil {
		return nil, err
	}
	for k, v := range counts {
		counts[k] = v / float64(max(res.Messages, 1))
	}
	return counts, nil
}

// counter is perf stat or strace attached to the server.
type counter struct {
	cmd      *exec.Cmd
	stderr   bytes.Buffer
	ctl, ack *os.File // perf's control and acknowledgement pipes
}

// startCounter attaches perf stat or strace to pid, writing to out. perf
// starts with its events disabled, for control to enable them exactly
// over the window; strace counts from about 100 ms after this returns
// until stop.
func startCounter(how string, pid int, out string) (*counter, error) {
	c := new(counter)
	switch how {
	case "perf":
		var evs []string
		for _, s := range sysCalls {
			evs = append(evs, "syscalls:sys_enter_"+s)
		}
		evs = append(evs, "context-switches")
		ctlR, ctlW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		ackR, ackW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer ctlR.Close()
		defer ackW.Close()
		c.ctl, c.ack = ctlW, ackR
		c.cmd = exec.Command("perf", "stat", "-x,", "-o", out, "-D", "-1", "--control", "fd:3,4",
			"-e", strings.Join(evs, ","), "-p", strconv.Itoa(pid))
		c.cmd.ExtraFiles = []*os.File{ctlR, ackW}
	case "strace":
		c.cmd = exec.Command("strace", "-c", "-f", "-o", out, "-p", strconv.Itoa(pid))
	default:
		return nil, fmt.Errorf("-count %q: perf, strace or none", how)
	}
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	if how == "strace" {
		time.Sleep(100 * time.Millisecond) // strace says nothing once attached
	}
	return c, nil
}

// control enables (start) or disables perf's events, and waits for perf
// to say it has.
func (c *counter) control(start bool) error {
	if c.ctl == nil {
		return nil
	}
	cmd := "disable\n"
	if start {
		cmd = "enable\n"
	}
	if _, err := c.ctl.WriteString(cmd); err != nil {
		return err
	}
	c.ack.SetReadDeadline(time.Now().Add(10 * time.Second))
	// perf writes "ack\n" and its terminating NUL.
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c.ack, buf); err != nil || !bytes.HasPrefix(buf, []byte("ack\n")) {
		return fmt.Errorf("perf did not acknowledge %q: %q %v %s", cmd, buf, err, c.stderr.String())
	}
	return nil
}

// stop interrupts the counter, which then writes its counts.
func (c *counter) stop() error {
	c.cmd.Process.Signal(os.Interrupt)
	err := c.cmd.Wait()
	if c.ctl != nil {
		c.ctl.Close()
		c.ack.Close()
	}
	if err != nil && c.cmd.ProcessState.ExitCode() != 0 && !strings.Contains(err.Error(), "interrupt") {
		return fmt.Errorf("%s: %v %s", c.cmd.Path, err, c.stderr.String())
	}
	return nil
}

// parseCounts reads the counts of startCounter's output, by system call
// name ("context-switches" too, from perf).
func parseCounts(how, out string) (map[string]float64, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]float64)
	for line := range strings.SplitSeq(string(b), "\n") {
		switch how {
		case "perf":
			// count,unit,event,...
			f := strings.Split(line, ",")
			if len(f) < 3 {
				continue
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue // "<not counted>", comments
			}
			counts[strings.TrimPrefix(f[2], "syscalls:sys_enter_")] = v
		case "strace":
			// % time, seconds, usecs/call, calls, [errors,] syscall
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			if v, err := strconv.ParseFloat(f[3], 64); err == nil {
				counts[f[len(f)-1]] = v
			}
		}
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("%s counted nothing: %q", how, b)
	}
	return counts, nil
}
