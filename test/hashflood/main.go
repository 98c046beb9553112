// Command hashflood measures how much memory password hashing makes ftpsd
// use under a flood of wrong passwords, and whether the server gives it
// back afterwards. It is a maintainer tool, not a test: it takes about a
// minute and its numbers depend on the machine.
//
// It builds the real server (go build ./cmd/ftpsd) or takes one with -bin,
// hashes a password with "ftpsd hash-password" (the production argon2id
// cost: m=64 MiB, t=3, p=2), writes a configuration that listens on
// 127.0.0.1 on a free port, with auth.max_failures raised and
// auth.failure_delay shortened so that the login throttle does not stop the
// flood, and starts "ftpsd serve" with GOMAXPROCS=-procs. Then -clients
// concurrent clients each connect, send AUTH TLS and repeat USER (an
// unknown name or the real one, alternately) and a wrong PASS, for
// -duration or until -logins passwords were answered, then waits for the
// answers to the passwords already sent. The server's VmRSS and VmHWM (from
// /proc/PID/status) are sampled during the flood and for -after once it
// stopped.
//
// Usage, from the repository root (Linux only):
//
//	go run ./test/hashflood                       # GOMAXPROCS=8, 90 clients, 30s
//	go run ./test/hashflood -procs 2
//	go run ./test/hashflood -bin /tmp/old/ftpsd   # measure another build
//
// Run as root, it starts the server as nobody (ftpsd refuses to run as
// root; test/ftpsdproc hands it the temporary directory).
//
// It prints the RSS before the flood, the peak (VmHWM), the RSS when the
// flood stopped, and the RSS at points up to -after later. Every loop is
// bounded by time and count, and the server is stopped at the end.
//
// On a 2-CPU amd64 VM (Go 1.26, Transparent Huge Pages "always"), with the
// default auth.max_hash_memory_mib = 256, it measured:
//
//	                          peak VmHWM   VmRSS 10s after
//	before the fix  -procs 8    2202 MiB        2202 MiB
//	                -procs 2     531 MiB         531 MiB
//	after the fix   -procs 8 276-337 MiB          15 MiB
//	                -procs 2     274 MiB          14 MiB
//
// After the fix the Go heap itself (GODEBUG=gctrace=1 with -serverlog)
// stays at about 257 MB; the occasional extra ~60 MiB of RSS at -procs 8
// did not appear with GODEBUG=disablethp=1.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpsdproc"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "ftpsd binary to measure (default: go build ./cmd/ftpsd in -src)")
	flag.StringVar(&o.src, "src", ".", "module root to build from when -bin is empty")
	flag.IntVar(&o.procs, "procs", 8, "GOMAXPROCS of the server")
	flag.IntVar(&o.clients, "clients", 90, "concurrent clients")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "length of the flood")
	flag.Int64Var(&o.logins, "logins", 100_000, "stop the flood after this many answered passwords")
	flag.DurationVar(&o.after, "after", 10*time.Second, "how long to sample RSS after the flood")
	flag.StringVar(&o.serverLog, "serverlog", "", "append the server's standard error to this file (with GODEBUG=gctrace=1 in the environment: the collector's trace)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "hashflood:", err)
		os.Exit(1)
	}
}

type options struct {
	bin, src        string
	serverLog       string
	procs, clients  int
	duration, after time.Duration
	logins          int64
}

const password = "hashflood-right-password"

func run(o options) error {
	if o.clients < 1 || o.procs < 1 || o.duration <= 0 || o.logins < 1 {
		return errors.New("-clients, -procs, -duration and -logins must be positive")
	}
	dir, err := os.MkdirTemp("", "hashflood-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "ftpsd")
		build := exec.Command("go", "build", "-o", bin, "./cmd/ftpsd")
		build.Dir, build.Stdout, build.Stderr = o.src, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/ftpsd in %s: %w", o.src, err)
		}
	}
	hp := exec.Command(bin, "hash-password")
	hp.Stdin = strings.NewReader(password + "\n")
	out, err := hp.Output()
	if err != nil {
		return fmt.Errorf("ftpsd hash-password: %w", err)
	}
	hash := strings.TrimSpace(string(out))

	cfg := filepath.Join(dir, "ftpsd.toml")
	if err := os.WriteFile(cfg, []byte(config(o.clients, hash)), 0o600); err != nil {
		return err
	}
	// ftpsd refuses to run as root: run as root, the server runs as
	// nobody, which must own its directory and reach the binary.
	if err := ftpsdproc.Own(dir); err != nil {
		return err
	}
	if err := ftpsdproc.Reach(bin); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration+o.after+2*time.Minute)
	defer cancel()
	var logw io.Writer = io.Discard
	if o.serverLog != "" {
		f, err := os.OpenFile(o.serverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	srv, addr, err := ftpsdproc.StartDaemon(ctx, bin, cfg, []string{"GOMAXPROCS=" + strconv.Itoa(o.procs)}, logw)
	if err != nil {
		return err
	}
	defer srv.Stop()

	time.Sleep(500 * time.Millisecond) // let start-up settle
	base, _ := readStatus(srv.Pid())
	fmt.Printf("server pid %d, GOMAXPROCS=%d, %d clients, argon2id m=64MiB t=3 p=2\n", srv.Pid(), o.procs, o.clients)
	fmt.Printf("before the flood: VmRSS %s\n", mib(base.rss))

	samples := newSampler(srv.Pid())
	go samples.run(ctx)
	began := time.Now()
	answered, refused := flood(ctx, addr, o)
	took := time.Since(began)
	end := samples.last()
	fmt.Printf("flood: %d wrong passwords answered (%.0f/s), %d connections refused or dropped, in %v (sending for %v, then the answers to passwords already sent)\n",
		answered, float64(answered)/took.Seconds(), refused, took.Round(time.Millisecond), o.duration)
	fmt.Printf("during the flood: peak VmRSS sample %s, VmHWM %s\n", mib(samples.peak()), mib(end.hwm))
	fmt.Printf("when the flood stopped: VmRSS %s\n", mib(end.rss))

	for _, at := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, o.after} {
		if at > o.after {
			continue
		}
		time.Sleep(time.Until(began.Add(took + at)))
		st, err := readStatus(srv.Pid())
		if err != nil {
			return err
		}
		fmt.Printf("%v after: VmRSS %s (VmHWM %s)\n", at, mib(st.rss), mib(st.hwm))
	}
	return nil
}

// config is the server configuration: loopback only, a port chosen by the
// kernel, room for every client, a throttle that does not stop the flood.
func config(clients int, hash string) string {
	conns := clients + 10
	return fmt.Sprintf(`[server]
listen = "127.0.0.1:0"
state_dir = "state"
max_connections = %d
max_connections_per_ip = %d
max_prelogin_connections = %d
max_login_attempts = 1000000
login_timeout = "10m"

[passive]
ports = "50000-50010"

[auth]
max_failures = 1000000000
failure_delay = "1ms"

[log]
level = "info"
format = "json"

[[users]]
name = "flood"
password_hash = %q
home = "home/flood"
`, conns, conns, conns, hash)
}

// flood runs the clients until the time or the count is up and returns the
// number of wrong passwords answered and of connections that failed. It
// returns once every client got the answer to its last password, so that
// the server is idle from then on (ctx bounds that wait).
func flood(ctx context.Context, addr string, o options) (answered, failed int64) {
	deadline := time.Now().Add(o.duration)
	var nAnswered, nFailed atomic.Int64
	more := func() bool { return ctx.Err() == nil && time.Now().Before(deadline) && nAnswered.Load() < o.logins }
	var wg sync.WaitGroup
	for i := range o.clients {
		wg.Go(func() {
			for more() {
				n, err := client(ctx, addr, i, more, &nAnswered)
				if err != nil && more() {
					nFailed.Add(1)
				}
				if n == 0 && more() {
					time.Sleep(50 * time.Millisecond) // a refused connection: do not spin
				}
			}
		})
	}
	wg.Wait()
	return nAnswered.Load(), nFailed.Load()
}

// client runs one control connection: AUTH TLS, then USER and a wrong
// PASS while more says so, then QUIT. It returns how many passwords it got
// answered.
func client(ctx context.Context, addr string, id int, more func() bool, answered *atomic.Int64) (int, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	_ = raw.SetDeadline(time.Now().Add(time.Minute))

	tp := textproto.NewConn(raw)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return 0, err
	}
	if err := cmd(tp, 234, "AUTH TLS"); err != nil {
		return 0, err
	}
	// The server's certificate is self-signed and the peer is this
	// machine's loopback: there is nothing to verify.
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return 0, err
	}
	tp = textproto.NewConn(tc)
	n := 0
	for i := 0; more(); i++ {
		name := "flood"
		if (id+i)%2 == 0 {
			name = fmt.Sprintf("nobody%d", id)
		}
		_ = raw.SetDeadline(time.Now().Add(time.Minute))
		if err := cmd(tp, 331, "USER "+name); err != nil {
			return n, err
		}
		if err := cmd(tp, 530, "PASS wrong-"+strconv.Itoa(i)); err != nil {
			return n, err
		}
		n++
		answered.Add(1)
	}
	_ = cmd(tp, 221, "QUIT")
	return n, nil
}

// cmd sends line and expects the reply code want.
func cmd(tp *textproto.Conn, want int, line string) error {
	if err := tp.PrintfLine("%s", line); err != nil {
		return err
	}
	_, _, err := tp.ReadResponse(want)
	return err
}

// status is what /proc/PID/status says about memory, in KiB.
type status struct{ rss, hwm int64 }

func readStatus(pid int) (status, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return status{}, err
	}
	var st status
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			st.rss = v
		case "VmHWM:":
			st.hwm = v
		}
	}
	return st, nil
}

// sampler reads the server's status every 100ms.
type sampler struct {
	pid int

	mu      sync.Mutex
	max     int64
	current status
}

func newSampler(pid int) *sampler { return &sampler{pid: pid} }

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if st, err := readStatus(s.pid); err == nil {
			s.mu.Lock()
			s.current, s.max = st, max(s.max, st.rss)
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) peak() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// last reads the status now (and records it).
func (s *sampler) last() status {
	st, err := readStatus(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.current, s.max = st, max(s.max, st.rss)
	}
	return s.current
}

func mib(kib int64) string { return fmt.Sprintf("%.0f MiB", float64(kib)/1024) }
