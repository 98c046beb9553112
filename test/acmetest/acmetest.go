// Package acmetest starts a real ACME certificate authority and real DNS
// servers on loopback for tests, the way net/http/httptest starts an HTTP
// server: real processes, real sockets, real TLS.
//
//   - StartPebble runs Let's Encrypt's Pebble (the ACME server) with a
//     fresh issuing root, one profile of a chosen lifetime, no random
//     sleeps, no bad-nonce injection and no authorization reuse, so an
//     issuance takes well under a second. Its validation authority connects
//     to 127.0.0.1 on PebbleOptions.HTTPPort (HTTP-01) and TLSPort
//     (TLS-ALPN-01), whatever the name.
//   - StartChallTestSrv runs pebble-challtestsrv as Pebble's DNS server: it
//     answers A 127.0.0.1 for every name and no AAAA, and its management API
//     adds TXT, A and SERVFAIL answers. StartPebble starts one by itself
//     unless PebbleOptions.DNSServer names another.
//   - StartBIND runs Debian's BIND9 (named) as an authoritative server for
//     the zone "acme.test." that accepts RFC 2136 dynamic updates signed
//     with a per-test TSIG key, for DNS-01 (pass BIND.Addr as
//     PebbleOptions.DNSServer).
//
// Every process listens on 127.0.0.1 only, is stopped in t.Cleanup (and
// killed by the kernel if the test binary dies), and its output is logged
// when the test fails.
//
// The programs are installed on first use when missing: pebble and
// pebble-challtestsrv with `go install ...@v2.10.1` into GOBIN (or
// GOPATH/bin), named with apt-get (as root). If that fails the test fails
// when CI=true and is skipped otherwise, with a message saying what is
// missing.
package acmetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PebbleVersion is the version of pebble and pebble-challtestsrv that is
// installed and expected.
const PebbleVersion = "v2.10.1"

const pebbleModule = "github.com/letsencrypt/pebble/v2"

// Time limits of the installs and of the waits for a process to be ready.
const (
	installTimeout = 5 * time.Minute
	aptTimeout     = 10 * time.Minute
	readyTimeout   = 20 * time.Second
	stopTimeout    = 5 * time.Second
	startAttempts  = 3
)

// unavailable reports that a program the test needs cannot be had: fatal
// under CI=true (CI must never skip these tests silently), a skip otherwise.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("acmetest: %s (CI=true, so this is a failure, not a skip)", msg)
	}
	t.Skipf("acmetest: %s; skipping (with CI=true this fails)", msg)
}

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{} // name -> path, once found
	toolErrs  = map[string]error{}  // name -> why it cannot be had
)

// ensureTool returns the path of pebble or pebble-challtestsrv at
// PebbleVersion, installing it with `go install` into GOBIN (or
// GOPATH/bin) when it is missing or of another version. Parallel tests
// share one install.
func ensureTool(t testing.TB, name string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolPaths[name]; ok {
		return p
	}
	if err, ok := toolErrs[name]; ok {
		unavailable(t, "%v", err)
	}
	p, err := findOrInstallTool(t, name)
	if err != nil {
		toolErrs[name] = err
		unavailable(t, "%v", err)
	}
	toolPaths[name] = p
	return p
}

func findOrInstallTool(t testing.TB, name string) (string, error) {
	t.Helper()
	pkg := pebbleModule + "/cmd/" + name
	goBin, err := exec.LookPath("go")
	if err != nil {
		// Without the go command nothing can be installed; a binary on
		// PATH will do.
		if p, err2 := exec.LookPath(name); err2 == nil {
			return p, nil
		}
		return "", fmt.Errorf("%s is not installed and the go command is not on PATH to install it (%v)", name, err)
	}
	binDir, err := goBinDir(goBin)
	if err != nil {
		return "", err
	}
	want := filepath.Join(binDir, name)
	if toolVersionOK(goBin, want) {
		return want, nil
	}
	// A binary of the right version anywhere on PATH is fine too.
	if p, err := exec.LookPath(name); err == nil && toolVersionOK(goBin, p) {
		return p, nil
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", pkg+"@"+PebbleVersion)
	cmd.Dir = os.TempDir()                     // outside any module: `go install pkg@version` ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOFLAGS=") // -mod=vendor etc. of the caller must not apply
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s is not installed and `go install %s@%s` failed after %v: %v\n%s",
			name, pkg, PebbleVersion, time.Since(start).Round(time.Millisecond), err, bytes.TrimSpace(out))
	}
	if _, err := os.Stat(want); err != nil {
		return "", fmt.Errorf("`go install %s@%s` succeeded but %s is not there: %v", pkg, PebbleVersion, want, err)
	}
	t.Logf("acmetest: installed %s %s in %v", name, PebbleVersion, time.Since(start).Round(time.Millisecond))
	return want, nil
}

// goBinDir is where `go install` puts binaries: GOBIN, else the first
// GOPATH entry's bin.
func goBinDir(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOBIN GOPATH: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) >= 1 && strings.TrimSpace(lines[0]) != "" {
		return strings.TrimSpace(lines[0]), nil
	}
	if len(lines) >= 2 && strings.TrimSpace(lines[1]) != "" {
		return filepath.Join(filepath.SplitList(strings.TrimSpace(lines[1]))[0], "bin"), nil
	}
	return "", errors.New("go env reports neither GOBIN nor GOPATH")
}

// toolVersionOK reports whether path is a Go binary built from the pebble
// module at PebbleVersion.
func toolVersionOK(goBin, path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	out, err := exec.Command(goBin, "version", "-m", path).Output()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" && f[1] == pebbleModule {
			return f[2] == PebbleVersion
		}
	}
	return false
}

// proc is a running child process. Its stdout and stderr go straight to
// a file (no copying goroutine), so whatever it wrote before it answered a
// request is in Output when the answer arrives.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // file holding stdout and stderr
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
	stop sync.Once
}

// startProc starts bin with args in dir, its output going to
// dir/NAME.log (truncated). The process gets SIGKILL if the test binary
// dies (Pdeathsig).
func startProc(name, bin string, args, env []string, dir string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// output is everything the process has written so far.
func (p *proc) output() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.log, err)
	}
	return string(b)
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop ends the process: SIGTERM, then SIGKILL if it is still there after
// stopTimeout. It waits for the exit, bounded. Safe to call more than once.
func (p *proc) Stop() {
	p.stop.Do(func() {
		if ok, _ := p.exited(); ok {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(stopTimeout):
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
		}
	})
}

// cleanup registers the stop of p with t, and the logging of its output if
// the test failed.
func (p *proc) cleanup(t testing.TB) {
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("acmetest: output of %s:\n%s", p.name, p.output())
		}
	})
}

// startReady starts a process up to startAttempts times. Each attempt
// picks its ports, starts the process (a setup error fails the test) and
// returns it with its readiness check. A process that does not get ready
// is stopped, and tried again only when it lost a port to someone else
// (address in use). The ready process is stopped when the test ends; the
// error is the last attempt's.
func startReady(t testing.TB, attempt func() (*proc, func() error, error)) (*proc, error) {
	t.Helper()
	var lastErr error
	for range startAttempts {
		p, ready, err := attempt()
		if err != nil {
			t.Fatalf("acmetest: %v", err)
		}
		if lastErr = p.waitReady(ready); lastErr == nil {
			p.cleanup(t)
			return p, nil
		}
		p.Stop()
		if !addrInUse(lastErr) {
			break
		}
	}
	return nil, lastErr
}

// waitReady polls ready every 50ms until it returns nil, the process
// exits, or readyTimeout passes.
func (p *proc) waitReady(ready func() error) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("%s exited before it was ready (%v); output:\n%s", p.name, err, p.output())
		}
		if last = ready(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v; output:\n%s", p.name, readyTimeout, last, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that is free now, for a
// listener the test starts itself (an HTTP-01 or TLS-ALPN-01 responder,
// for instance), or for Pebble to connect to. It is taken outside the
// kernel's ephemeral range (ip_local_port_range), so an outgoing
// connection or a TIME_WAIT socket of this or another test cannot take it
// before the listener binds it, and it is never handed out twice in one
// test binary. Bind it soon all the same: another program could.
func FreePort(t testing.TB) int {
	t.Helper()
	return pickPort(t, false)
}

// freeDNSPort is FreePort for both TCP and UDP.
func freeDNSPort(t testing.TB) int {
	t.Helper()
	return pickPort(t, true)
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

func pickPort(t testing.TB, udp bool) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	lo, hi := portRange()
	for range 500 {
		port := 0 // the kernel's choice, if there is no range outside the ephemeral one
		if hi > lo {
			port = lo + mrand.IntN(hi-lo+1)
		}
		if portsUsed[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		port = l.Addr().(*net.TCPAddr).Port
		ok := !portsUsed[port]
		if ok && udp {
			u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err == nil {
				u.Close()
			} else {
				ok = false
			}
		}
		l.Close()
		if ok {
			portsUsed[port] = true
			return port
		}
	}
	t.Fatalf("acmetest: no free port on 127.0.0.1 (TCP%s) in %d-%d", map[bool]string{true: " and UDP"}[udp], lo, hi)
	return 0
}

// portRange is the range FreePort picks from: below the ephemeral range
// (down to 10000), or above it, or none (0, 0) if it covers both.
func portRange() (lo, hi int) {
	elo, ehi := 32768, 60999 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			a, err1 := strconv.Atoi(f[0])
			z, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && a <= z {
				elo, ehi = a, z
			}
		}
	}
	switch {
	case elo-1 >= 12000:
		return 10000, elo - 1
	case ehi+1 <= 63000:
		return ehi + 1, 65535
	}
	return 0, 0
}

// environ is os.Environ without the variables that start with any of
// prefixes, plus extra.
func environ(prefixes []string, extra ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// addrInUse reports whether a failed start looks like a port race, worth
// another try on other ports.
func addrInUse(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "address already in use")
}
