// Command idlemem measures what idle logged-in sessions cost a real
// "ftpsd serve": memory (RSS and PSS from /proc/PID/smaps_rollup, heap and
// stacks from the metrics endpoint's go_memstats_*) and file descriptors
// (/proc/PID/fd), before the logins and after they have settled.
//
// It writes a scratch configuration (connection limits raised to -n, a
// metrics listener on loopback, -users users with the production argon2id
// hash or a cheap bcrypt one), starts the given binary (as nobody when run
// as root: ftpsd refuses root), opens -n sessions from several 127.0.0.x
// source addresses (AUTH TLS at TLS 1.3, PBSZ 0, PROT P, USER, PASS),
// leaves them idle for -settle while sampling, prints the figures, and
// stops the server by its pid. Everything runs on loopback, bounded by
// -timeout.
//
//	go build -o /tmp/ftpsd ./cmd/ftpsd
//	go run ./test/idlemem -bin /tmp/ftpsd -n 10000 -hash bcrypt
//
// Both this process and the server need an open-file limit above -n: it
// raises its own soft limit to the hard one and says so when that is not
// enough (as root, "ulimit -Hn 65536" in the shell first raises both).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/test/ftpsdproc"
)

// Bounds of the flags: the tool must end by itself.
const (
	maxSessions = 30000
	maxSettle   = 15 * time.Minute
	maxTimeout  = 60 * time.Minute
)

const password = "idle-session-password"

type options struct {
	bin      string
	n        int
	users    int
	hash     string
	sources  int
	parallel int
	settle   time.Duration
	sample   time.Duration
	timeout  time.Duration
	keep     bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "the ftpsd binary to measure (required)")
	flag.IntVar(&o.n, "n", 1000, fmt.Sprintf("idle sessions to open (at most %d)", maxSessions))
	flag.IntVar(&o.users, "users", 10, "users the sessions log in as, round robin, each with its own home")
	flag.StringVar(&o.hash, "hash", "argon2id", `password hash: "argon2id" (the production parameters of "ftpsd hash-password"), "bcrypt" (cost 4, cheap), or "mixed" (user u0 argon2id, the others bcrypt: with -users 10, one login in ten hashes 64 MiB, spread over the whole run, in a tenth of the time)`)
	flag.IntVar(&o.sources, "sources", 4, "source addresses 127.0.0.2, 127.0.0.3, ... (about 28k ephemeral ports each)")
	flag.IntVar(&o.parallel, "parallel", 16, "logins in flight at once")
	flag.DurationVar(&o.settle, "settle", 3*time.Minute, fmt.Sprintf("idle time after the last login before the final reading (at most %v)", maxSettle))
	flag.DurationVar(&o.sample, "sample", 30*time.Second, "interval of the readings printed while settling")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, fmt.Sprintf("bound on the whole run (at most %v)", maxTimeout))
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory (config, server log)")
	flag.Parse()
	switch {
	case o.bin == "":
		fatalf("-bin is required")
	case o.n < 1 || o.n > maxSessions:
		fatalf("-n must be 1..%d", maxSessions)
	case o.users < 1 || o.users > o.n:
		fatalf("-users must be 1..-n")
	case o.hash != "argon2id" && o.hash != "bcrypt" && o.hash != "mixed":
		fatalf(`-hash must be "argon2id", "bcrypt" or "mixed"`)
	case o.sources < 1 || o.sources > 250:
		fatalf("-sources must be 1..250")
	case o.parallel < 1 || o.parallel > 256:
		fatalf("-parallel must be 1..256")
	case o.settle < 0 || o.settle > maxSettle:
		fatalf("-settle must be 0..%v", maxSettle)
	case o.sample <= 0:
		fatalf("-sample must be positive")
	case o.timeout <= 0 || o.timeout > maxTimeout:
		fatalf("-timeout must be 0..%v", maxTimeout)
	}
	if err := run(o, os.Stdout); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "idlemem: "+format+"\n", args...)
	os.Exit(1)
}

func run(o options, w io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if err := raiseNoFile(uint64(o.n) + 200); err != nil {
		return err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "idlemem-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(w, "scratch directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	hashes := make([]string, o.users)
	for i := range hashes {
		kind := o.hash
		if kind == "mixed" {
			kind = "bcrypt"
			if i == 0 {
				kind = "argon2id"
			}
		}
		if i > 0 && kind == o.hash {
			hashes[i] = hashes[0]
			continue
		}
		if hashes[i], err = makeHash(ctx, bin, kind); err != nil {
			return err
		}
	}
	cfgPath, err := writeConfig(dir, o, hashes)
	if err != nil {
		return err
	}
	if err := ftpsdproc.Own(dir); err != nil {
		return err
	}
	if err := ftpsdproc.Reach(bin); err != nil {
		return err
	}
	srv, err := startServer(ctx, bin, cfgPath)
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Fprintf(w, "server pid %d on %s (metrics %s), %s hash, %d sessions over %d users from %d source addresses\n",
		srv.pid, srv.addr, srv.metrics, o.hash, o.n, o.users, o.sources)
	if l := srv.limitLines(); len(l) > 0 {
		fmt.Fprintf(w, "server log about the open-file limit:\n  %s\n", strings.Join(l, "\n  "))
	}
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(filepath.Join(dir, "state", "tls", "self-signed.crt"))
	if err != nil {
		return err
	}
	roots.AppendCertsFromPEM(pem)
	tcfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}

	time.Sleep(2 * time.Second)
	before, err := srv.read()
	if err != nil {
		return err
	}

	start := time.Now()
	conns, fails := openSessions(ctx, o, srv.addr, tcfg)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	fmt.Fprintf(w, "%d sessions logged in, %d failed, in %v (%.0f logins/s)\n", len(conns), fails.total(),
		time.Since(start).Round(time.Millisecond), float64(len(conns))/time.Since(start).Seconds())
	fails.print(w)
	if len(conns) == 0 {
		return errors.New("no session logged in")
	}

	fmt.Fprintf(w, "\n%8s %9s %9s %9s %10s %10s %10s %10s %8s %6s\n",
		"idle", "RSS", "PSS", "anon", "heapInuse", "heapAlloc", "heapIdle-", "stack", "gorout", "fds")
	fmt.Fprintf(w, "%8s %9s %9s %9s %10s %10s %10s %10s %8s %6s\n",
		"", "MiB", "MiB", "MiB", "MiB", "MiB", "released", "MiB", "", "")
	printRow(w, "before", before)
	idleStart := time.Now()
	var last reading
	for {
		r, err := srv.read()
		if err != nil {
			return err
		}
		last = r
		printRow(w, time.Since(idleStart).Round(time.Second).String(), r)
		if time.Since(idleStart) >= o.settle {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(o.sample, o.settle-time.Since(idleStart)+time.Millisecond)):
		}
	}
	n := float64(len(conns))
	per := func(a, b float64) string { return fmt.Sprintf("%.1f KiB", (b-a)/n/1024) }
	fmt.Fprintf(w, "\nper session (final reading - before, / %d sessions), after %v idle:\n", len(conns), o.settle)
	fmt.Fprintf(w, "  RSS %s, PSS %s, anonymous %s\n", per(before.rss, last.rss), per(before.pss, last.pss), per(before.anon, last.anon))
	fmt.Fprintf(w, "  Go heap in use %s (allocated objects %s), stacks %s\n",
		per(before.heapInuse, last.heapInuse), per(before.heapAlloc, last.heapAlloc), per(before.stack, last.stack))
	fmt.Fprintf(w, "  file descriptors %.3f, goroutines %.2f, peak RSS (VmHWM) %.0f MiB, OS threads %.0f\n",
		(last.fds-before.fds)/n, (last.goroutines-before.goroutines)/n, last.hwm/(1<<20), last.threads)
	if l := srv.problemLines(); len(l) > 0 {
		fmt.Fprintf(w, "server warnings and errors (%d, first 10):\n  %s\n", len(l), strings.Join(l[:min(10, len(l))], "\n  "))
	}
	return nil
}

// raiseNoFile raises this process's soft open-file limit to its hard
// limit, and fails when that is below need.
func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raising the open-file limit to %d: %w", lim.Max, err)
		}
	}
	if lim.Cur < need {
		return fmt.Errorf("open-file limit %d (hard) is below the %d this run needs: raise it (as root: ulimit -Hn %d)", lim.Max, need, max(need, 65536))
	}
	return nil
}

// makeHash returns the password's hash: argon2id by the binary's own
// hash-password (the production parameters), or bcrypt at cost 4.
func makeHash(ctx context.Context, bin, kind string) (string, error) {
	if kind == "bcrypt" {
		h, err := bcrypt.GenerateFromPassword([]byte(password), 4)
		return string(h), err
	}
	cmd := ftpsdproc.Command(ctx, bin, "hash-password")
	cmd.Stdin = strings.NewReader(password)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s hash-password: %w", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func writeConfig(dir string, o options, hashes []string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	mport, err := freePort()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `[server]
listen = "127.0.0.1:%d"
state_dir = "state"
max_connections = %d
max_connections_per_ip = %d
max_prelogin_connections = %d
idle_timeout = "1h"
login_timeout = "10m"

[passive]
ports = "52000-52100"

[limits]
max_sessions = 0

[log]
level = "info"

[metrics]
listen = "127.0.0.1:%d"
`, port, o.n+50, o.n+50, o.parallel*2+10, mport)
	for i := range o.users {
		home := filepath.Join(dir, "home", fmt.Sprintf("u%d", i))
		if err := os.MkdirAll(home, 0o750); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\n[[users]]\nname = \"u%d\"\npassword_hash = %q\nhome = %q\npermissions = [\"all\"]\n", i, hashes[i], home)
	}
	path := filepath.Join(dir, "config.toml")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// server is the running "ftpsd serve".
type server struct {
	cmd           *exec.Cmd
	pid           int
	addr, metrics string
	done          chan struct{}

	mu    sync.Mutex
	lines []string
}

func startServer(ctx context.Context, bin, cfg string) (*server, error) {
	cmd := exec.Command(bin, "serve", "-config", cfg)
	cmd.Dir = filepath.Dir(cfg)
	cmd.Env = ftpsdproc.Environ()
	ftpsdproc.Prepare(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			// Keep what matters: the listeners, warnings and errors.
			if strings.Contains(line, "listening") || !strings.Contains(line, "level=INFO") {
				s.mu.Lock()
				s.lines = append(s.lines, line)
				s.mu.Unlock()
			}
		}
		cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for s.addr == "" || s.metrics == "" {
		select {
		case <-s.done:
			return nil, fmt.Errorf("ftpsd exited before listening:\n%s", strings.Join(s.snapshot(), "\n"))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("ftpsd did not listen within 30s:\n%s", strings.Join(s.snapshot(), "\n"))
		}
		for _, l := range s.snapshot() {
			switch {
			case strings.Contains(l, "msg=listening "):
				s.addr = attr(l, "addr")
			case strings.Contains(l, `msg="metrics listening"`):
				s.metrics = attr(l, "addr")
			}
		}
	}
	return s, nil
}

// attr is the value of key=value in a text log line.
func attr(line, key string) string {
	_, v, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, " ")
	return strings.Trim(v, `"`)
}

func (s *server) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func (s *server) limitLines() []string {
	var out []string
	for _, l := range s.snapshot() {
		if strings.Contains(l, "open-file limit") {
			out = append(out, l)
		}
	}
	return out
}

func (s *server) problemLines() []string {
	var out []string
	for _, l := range s.snapshot() {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// stop ends the server by its pid: SIGTERM, then SIGKILL after 30s.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// reading is one sample of the server's figures (bytes, or counts).
type reading struct {
	rss, pss, anon, hwm, threads         float64
	heapInuse, heapAlloc, heapUnreleased float64
	stack, goroutines, fds               float64
}

func (s *server) read() (reading, error) {
	var r reading
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", s.pid))
	if err != nil {
		return r, err
	}
	kb := procFields(string(rollup))
	r.rss, r.pss, r.anon = kb["Rss"]*1024, kb["Pss"]*1024, kb["Anonymous"]*1024
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return r, err
	}
	st := procFields(string(status))
	r.hwm, r.threads = st["VmHWM"]*1024, st["Threads"]
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		return r, err
	}
	r.fds = float64(len(fds))

	// A server out of descriptors cannot accept the scrape: the /proc
	// figures still tell, and the Go ones read as NaN.
	nan := math.NaN()
	r.heapInuse, r.heapAlloc, r.heapUnreleased, r.stack, r.goroutines = nan, nan, nan, nan, nan
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		s.mu.Lock()
		s.lines = append(s.lines, "idlemem: level=WARN metrics not read: "+err.Error())
		s.mu.Unlock()
		return r, nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = f
		}
	}
	r.heapInuse, r.heapAlloc = m["go_memstats_heap_inuse_bytes"], m["go_memstats_heap_alloc_bytes"]
	r.heapUnreleased = m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"]
	r.stack, r.goroutines = m["go_memstats_stack_inuse_bytes"], m["go_goroutines"]
	return r, sc.Err()
}

// procFields parses "Name:   123 kB" lines.
func procFields(s string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func printRow(w io.Writer, label string, r reading) {
	mib := func(v float64) string { return fmt.Sprintf("%.1f", v/(1<<20)) }
	fmt.Fprintf(w, "%8s %9s %9s %9s %10s %10s %10s %10s %8.0f %6.0f\n", label, mib(r.rss), mib(r.pss), mib(r.anon),
		mib(r.heapInuse), mib(r.heapAlloc), mib(r.heapUnreleased), mib(r.stack), r.goroutines, r.fds)
}

// failures counts failed logins by cause.
type failures struct {
	mu sync.Mutex
	by map[string]int
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.by == nil {
		f.by = map[string]int{}
	}
	f.by[err.Error()]++
}

func (f *failures) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.by {
		n += c
	}
	return n
}

func (f *failures) print(w io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return f.by[keys[i]] > f.by[keys[j]] })
	for _, k := range keys[:min(5, len(keys))] {
		fmt.Fprintf(w, "  %6d× %s\n", f.by[k], k)
	}
}

// openSessions logs -n sessions in, -parallel at a time, and returns the
// connections of those that made it.
func openSessions(ctx context.Context, o options, addr string, tcfg *tls.Config) ([]net.Conn, *failures) {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		fails = &failures{}
	)
	for range o.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= o.n {
					return
				}
				c, err := login(ctx, addr, i, o, tcfg)
				if err != nil {
					fails.add(err)
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, fails
}

// login opens session i from source 127.0.0.(2 + i mod sources) as user
// u(i mod users) and leaves it idle.
func login(ctx context.Context, addr string, i int, o options, tcfg *tls.Config) (net.Conn, error) {
	src := net.IPv4(127, 0, 0, byte(2+i%o.sources))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Minute))
	ok := false
	defer func() {
		if !ok {
			raw.Close()
		}
	}()
	tp := textproto.NewReader(bufio.NewReader(raw))
	cmd := func(w io.Writer, tp *textproto.Reader, line string, want int) error {
		if line != "" {
			if _, err := io.WriteString(w, line+"\r\n"); err != nil {
				return err
			}
		}
		code, msg, err := tp.ReadResponse(0)
		if err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(line + " greeting")[0], err)
		}
		if code != want {
			return fmt.Errorf("%s: %d %s", strings.Fields(line + " greeting")[0], code, msg)
		}
		return nil
	}
	if err := cmd(raw, tp, "", 220); err != nil {
		return nil, err
	}
	if err := cmd(raw, tp, "AUTH TLS", 234); err != nil {
		return nil, err
	}
	tc := tls.Client(raw, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	tp = textproto.NewReader(bufio.NewReaderSize(tc, 512))
	user := fmt.Sprintf("u%d", i%o.users)
	for _, s := range []struct {
		line string
		want int
	}{{"PBSZ 0", 200}, {"PROT P", 200}, {"USER " + user, 331}, {"PASS " + password, 230}} {
		if err := cmd(tc, tp, s.line, s.want); err != nil {
			return nil, err
		}
	}
	raw.SetDeadline(time.Time{})
	ok = true
	return tc, nil
}
