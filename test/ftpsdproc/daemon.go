package ftpsdproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Daemon is an "ftpsd serve" process run by a maintainer tool (the load
// and memory tools under test/), which has no testing.T: Start is the
// tests' equivalent.
type Daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartDaemon runs "bin serve -config cfg" (as nobody when we are root),
// with extra environment variables, and returns once the server logged its
// address. The server's JSON log lines go to logw when it is not nil;
// ERROR lines go to stderr too.
func StartDaemon(ctx context.Context, bin, cfg string, env []string, logw io.Writer) (*Daemon, string, error) {
	cmd := exec.Command(bin, "serve", "-config", cfg)
	cmd.Env = Environ(env...)
	Prepare(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	d := &Daemon{cmd: cmd, done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			if logw != nil {
				fmt.Fprintf(logw, "%s\n", sc.Bytes())
			}
			var rec struct{ Msg, Addr, Level string }
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			switch {
			case rec.Msg == "listening":
				select {
				case addrc <- rec.Addr:
				default:
				}
			case rec.Level == "ERROR":
				fmt.Fprintf(os.Stderr, "server: %s\n", sc.Bytes())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
	}()
	select {
	case addr := <-addrc:
		return d, addr, nil
	case <-d.done:
		return nil, "", errors.New("the server exited before listening")
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	d.Stop()
	return nil, "", errors.New("the server did not log \"listening\" within 30s")
}

// Pid is the server's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop sends SIGTERM and waits for the exit, killing after 10s.
func (d *Daemon) Stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// CPUTime is pid's user plus system time, from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}
