// Package ftpsdproc runs the real ftpsd binary for tests and tools: it
// builds it once per test binary, starts "ftpsd serve" as an unprivileged
// user when the caller is root (ftpsd refuses to run as root), collects its
// log, and stops it by pid.
//
// Running as root (CI does), the server runs as nobody (uid and gid
// 65534): the directories it writes are handed to that user with Own, and
// the files it only reads are made reachable with Reach. Not root, it runs
// as the current user and both are no-ops.
package ftpsdproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Nobody is the user and group id the server runs as when the caller is
// root: nobody and nogroup on Debian and most distributions.
const Nobody = 65534

// AsOther reports whether the server runs as another user than the caller
// (the caller is root).
func AsOther() bool { return os.Geteuid() == 0 }

// UID is the user id the server runs as.
func UID() int {
	if AsOther() {
		return Nobody
	}
	return os.Geteuid()
}

// Prepare makes cmd run as the server's user: nobody when the caller is
// root, else the caller.
// Either way the server dies with the test (a test binary killed on its
// timeout must not leave a server holding its ports).
func Prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if !AsOther() {
		return
	}
	// Groups empty: root's supplementary groups must not come along.
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: Nobody, Gid: Nobody, Groups: []uint32{}}
}

// Command is exec.CommandContext for the ftpsd binary, run as the server's
// user, with the environment of Environ.
func Command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = Environ()
	Prepare(cmd)
	return cmd
}

// Environ is this process's environment without NOTIFY_SOCKET (a test run
// under systemd must not report to the manager for the server), plus extra.
func Environ(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "NOTIFY_SOCKET=") })
	return append(env, extra...)
}

// Own hands each path, recursively, to the server's user and makes the
// directories above it reachable (see Reach). Use it on the directories
// the server writes: its state directory, homes, log files.
func Own(paths ...string) error {
	if !AsOther() {
		return nil
	}
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, Nobody, Nobody)
		})
		if err != nil {
			return fmt.Errorf("ftpsdproc: handing %s to uid %d: %w", p, Nobody, err)
		}
		if err := Reach(p); err != nil {
			return err
		}
	}
	return nil
}

// Reach lets the server's user traverse every directory above each path,
// so that it can open a file the caller made readable to all. Directories
// under the temporary directory (t.TempDir makes them 0700) get o+x; one
// elsewhere that lacks it is an error, not something to change.
func Reach(paths ...string) error {
	if !AsOther() {
		return nil
	}
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return err
	}
	for _, p := range paths {
		p, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			fi, err := os.Stat(dir)
			if err != nil {
				return fmt.Errorf("ftpsdproc: %w", err)
			}
			if fi.Mode().Perm()&0o001 == 0 {
				if !strings.HasPrefix(dir, tmp+string(filepath.Separator)) {
					return fmt.Errorf("ftpsdproc: uid %d cannot reach %s: %s is mode %v (put it under %s)", Nobody, p, dir, fi.Mode().Perm(), tmp)
				}
				if err := os.Chmod(dir, fi.Mode().Perm()|0o001); err != nil {
					return fmt.Errorf("ftpsdproc: %w", err)
				}
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return nil
}

// The binary, built once per test binary.
var build struct {
	once     sync.Once
	dir, bin string
	err      error
}

// Build builds ./cmd/ftpsd on first use and returns the binary's path; the
// same binary serves every test of the test binary (Main removes it).
func Build(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "ftpsdproc-")
		if build.err != nil {
			return
		}
		if build.err = os.Chmod(build.dir, 0o755); build.err != nil {
			return
		}
		bin := filepath.Join(build.dir, "ftpsd") // "ftpsd reload" checks /proc/PID/comm
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// No VCS stamp: git refuses a checkout owned by another user
		// ("dubious ownership"), and the tests do not need it.
		out, err := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", bin, "github.com/ftpsd/ftpsd/cmd/ftpsd").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build ./cmd/ftpsd: %w\n%s", err, out)
			return
		}
		if build.err = Reach(bin); build.err == nil {
			build.bin = bin
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// Main runs the tests and then removes the binary Build made. Call it from
// TestMain: os.Exit(ftpsdproc.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

// Options tune Start.
type Options struct {
	Env     []string      // added to the environment, e.g. "NOTIFY_SOCKET=/path"
	Timeout time.Duration // to log "listening"; default 30s
}

// Proc is a running "ftpsd serve".
type Proc struct {
	PID    int
	Addr   string // the control listener, from the "listening" log line
	Config string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited

	mu    sync.Mutex
	lines []string // standard error, line by line
}

// stopTimeout bounds a graceful stop before the process is killed.
const stopTimeout = 15 * time.Second

// Start runs "ftpsd serve -config config" as the server's user, in the
// config's directory, and returns once it logged "listening" (text or JSON
// format). It stops the process in t.Cleanup and, if the test failed, logs
// its standard error. It returns an error, rather than failing t, so that
// it can be called from any goroutine.
func Start(t testing.TB, bin, config string, opts Options) (*Proc, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	cmd := exec.Command(bin, "serve", "-config", config)
	cmd.Dir = filepath.Dir(config)
	cmd.Env = Environ(opts.Env...)
	Prepare(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s serve: %w", bin, err)
	}
	p := &Proc{PID: cmd.Process.Pid, Config: config, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		cmd.Wait() // after the pipe's EOF, as exec requires
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("ftpsd serve -config %s (pid %d), standard error:\n%s", config, p.PID, p.Log())
		}
	})
	_, ok := p.WaitLine(0, opts.Timeout, func(line string) bool {
		p.Addr = listeningAddr(line)
		return p.Addr != ""
	})
	if !ok {
		select {
		case <-p.done:
			return nil, fmt.Errorf("ftpsd exited (%v) before listening:\n%s", p.cmd.ProcessState, p.Log())
		default:
			p.Stop()
			return nil, fmt.Errorf("ftpsd did not log \"listening\" within %v:\n%s", opts.Timeout, p.Log())
		}
	}
	return p, nil
}

var textListening = regexp.MustCompile(`(?:^| )msg=listening .*?\baddr=(\S+)`)

// listeningAddr is the addr attribute of a "listening" line, or "".
func listeningAddr(line string) string {
	var rec struct{ Msg, Addr string }
	if json.Unmarshal([]byte(line), &rec) == nil {
		if rec.Msg == "listening" {
			return rec.Addr
		}
		return ""
	}
	if m := textListening.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// Lines returns the lines of standard error from index from on.
func (p *Proc) Lines(from int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from > len(p.lines) {
		return nil
	}
	return slices.Clone(p.lines[from:])
}

// Len is the number of lines so far: a mark for Lines and WaitLine.
func (p *Proc) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// Log is standard error so far.
func (p *Proc) Log() string {
	return strings.Join(p.Lines(0), "\n")
}

// WaitLine polls until a line at index from or later matches, and returns
// its index; ok is false when timeout passed or the process exited first.
func (p *Proc) WaitLine(from int, timeout time.Duration, match func(line string) bool) (index int, ok bool) {
	deadline := time.Now().Add(timeout)
	for {
		exited := p.Exited()
		for i, line := range p.Lines(from) {
			if match(line) {
				return from + i, true
			}
		}
		if exited || time.Now().After(deadline) {
			return 0, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exited reports whether the process has exited (and its standard error
// was read to the end).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and returns its exit
// code.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, errors.New("ftpsd still running after " + timeout.String())
	}
}

// Stop sends SIGTERM, waits for the exit, and kills the process if it has
// not exited within 15s. It returns the exit code (-1 when killed).
func (p *Proc) Stop() int {
	if p.Exited() {
		return p.cmd.ProcessState.ExitCode()
	}
	p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(stopTimeout); err == nil {
		return code
	}
	p.cmd.Process.Kill()
	<-p.done
	return -1
}
