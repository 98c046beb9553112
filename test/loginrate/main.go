// Command loginrate measures how many logins and short sessions per second
// ftpsd serves with the production password hash (argon2id m=64 MiB, t=3,
// p=2, from "ftpsd hash-password"), and compares builds. It is a
// maintainer tool, not a test: it takes minutes and its numbers depend on
// the machine.
//
// Each -bin is a build to measure, NAME=PATH (the first one also hashes the
// passwords). For every round, scenario and build (builds in turn, their
// order reversed every other round so that neither always runs first on a
// warm machine), it writes a configuration with -users users, each with its
// own hash and a home holding -files empty files, starts "ftpsd serve"
// (as nobody when run as root) on 127.0.0.1, lets -conns clients run the
// scenario for -duration, and stops the server. The scenarios:
//
//	cold      connect, AUTH TLS, USER, PASS, PBSZ 0, PROT P, QUIT, with the
//	          login cache off (auth.login_cache_ttl = "0s"): every login
//	          hashes
//	warm      the same with the login cache on (the default), after one
//	          untimed login per user: repeated logins of the same users
//	session   connect, AUTH TLS, login, PBSZ/PROT, EPSV, LIST of the home
//	          (-files entries, over a data connection that resumes the
//	          control session's TLS session), QUIT; cache on, warmed up
//	session-cold  the same with the cache off
//
// A build that does not know auth.login_cache_ttl (older than the login
// cache) gets no such key: its "cold" and "warm" are the same thing.
// Client i logs in as user i mod -users.
//
// Usage, from the repository root (Linux only):
//
//	go build -o /tmp/after/ftpsd ./cmd/ftpsd
//	git worktree add /tmp/login-base <commit> && (cd /tmp/login-base && go build -o /tmp/before/ftpsd ./cmd/ftpsd)
//	go run ./test/loginrate -bin before=/tmp/before/ftpsd -bin after=/tmp/after/ftpsd -rounds 3
//
// The binaries must be where nobody can reach them (under /tmp) when run
// as root. It prints one line per run (operations/s, p50 latency, server
// CPU seconds per operation, the server's peak RSS), then the medians per
// build and scenario. Every loop is bounded by time and count; every server
// is stopped before the next starts.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpsclient"
	"github.com/ftpsd/ftpsd/test/ftpsdproc"
)

// Bounds of the flags: the tool must stop by itself.
const (
	maxDuration = 2 * time.Minute
	maxConns    = 64
	maxUsers    = 64
	maxFiles    = 100_000
	maxRounds   = 20
	maxOps      = 1_000_000 // per run
	opTimeout   = 30 * time.Second
)

var scenarios = []string{"cold", "warm", "session", "session-cold"}

type build struct{ name, bin string }

type buildFlags []build

func (b *buildFlags) String() string { return fmt.Sprint(*b) }

func (b *buildFlags) Set(s string) error {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || path == "" {
		return errors.New("want NAME=PATH")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	*b = append(*b, build{name, abs})
	return nil
}

type options struct {
	builds        buildFlags
	scenarios     []string
	rounds, conns int
	users, files  int
	duration      time.Duration
	procs         int
}

func main() {
	var o options
	flag.Var(&o.builds, "bin", "a build to measure, `NAME=PATH` (repeat; at least one)")
	scen := flag.String("scenarios", strings.Join(scenarios, ","), "comma-separated scenarios: "+strings.Join(scenarios, ", "))
	flag.IntVar(&o.rounds, "rounds", 3, "rounds (each runs every scenario on every build)")
	flag.IntVar(&o.conns, "conns", 8, "parallel clients")
	flag.IntVar(&o.users, "users", 8, "users (client i logs in as user i mod users)")
	flag.IntVar(&o.files, "files", 1000, "files in each home (what LIST lists)")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "length of each run")
	flag.IntVar(&o.procs, "procs", 0, "GOMAXPROCS of the server (0: the Go default)")
	flag.Parse()
	o.scenarios = strings.Split(*scen, ",")
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loginrate:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	switch {
	case len(o.builds) == 0:
		return errors.New("give at least one -bin NAME=PATH")
	case o.rounds < 1 || o.rounds > maxRounds, o.conns < 1 || o.conns > maxConns,
		o.users < 1 || o.users > maxUsers, o.files < 0 || o.files > maxFiles,
		o.duration <= 0 || o.duration > maxDuration, o.procs < 0:
		return fmt.Errorf("flags out of range (rounds 1..%d, conns 1..%d, users 1..%d, files 0..%d, duration up to %v)",
			maxRounds, maxConns, maxUsers, maxFiles, maxDuration)
	}
	for _, s := range o.scenarios {
		if !slices.Contains(scenarios, s) {
			return fmt.Errorf("unknown scenario %q", s)
		}
	}
	dir, err := os.MkdirTemp("", "loginrate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := ftpsdproc.Reach(dir); err != nil {
		return err
	}
	for _, b := range o.builds {
		if err := ftpsdproc.Reach(b.bin); err != nil {
			return err
		}
	}

	users, err := makeUsers(o.builds[0].bin, dir, o.users, o.files)
	if err != nil {
		return err
	}
	fmt.Printf("%d clients, %d users (argon2id m=64MiB t=3 p=2), %d files per home, %v per run, GOMAXPROCS %s\n",
		o.conns, o.users, o.files, o.duration, procsName(o.procs))

	results := map[[2]string][]result{}
	for r := range o.rounds {
		for _, sc := range o.scenarios {
			order := slices.Clone(o.builds)
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, b := range order {
				res, err := measure(o, dir, users, b, sc)
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", r+1, sc, b.name, err)
				}
				fmt.Printf("round %d %-12s %-8s %s\n", r+1, sc, b.name, res)
				k := [2]string{b.name, sc}
				results[k] = append(results[k], res)
			}
		}
	}
	fmt.Printf("\nmedians of %d rounds:\n", o.rounds)
	fmt.Printf("%-12s %-8s %10s %10s %14s %10s\n", "scenario", "build", "ops/s", "p50", "CPU ms/op", "peak RSS")
	for _, sc := range o.scenarios {
		for _, b := range o.builds {
			rs := results[[2]string{b.name, sc}]
			fmt.Printf("%-12s %-8s %10.1f %10v %14.1f %7.0f MiB\n", sc, b.name,
				median(rs, func(r result) float64 { return r.rate() }),
				time.Duration(median(rs, func(r result) float64 { return float64(r.p50) })).Round(time.Millisecond),
				median(rs, func(r result) float64 { return r.cpuPerOp() * 1000 }),
				median(rs, func(r result) float64 { return float64(r.hwmKiB) / 1024 }))
		}
	}
	return nil
}

func procsName(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

// account is one user: its name, password and hash.
type account struct{ name, pass, hash string }

// makeUsers hashes one password per user with bin's hash-password and
// fills each home with files empty files.
func makeUsers(bin, dir string, n, files int) ([]account, error) {
	users := make([]account, n)
	for i := range users {
		u := account{name: fmt.Sprintf("user%d", i), pass: fmt.Sprintf("loginrate-password-%d", i)}
		hp := exec.Command(bin, "hash-password")
		hp.Stdin = strings.NewReader(u.pass + "\n")
		out, err := hp.Output()
		if err != nil {
			return nil, fmt.Errorf("%s hash-password: %w", bin, err)
		}
		u.hash = strings.TrimSpace(string(out))
		home := filepath.Join(dir, "home", u.name)
		if err := os.MkdirAll(home, 0o755); err != nil {
			return nil, err
		}
		for j := range files {
			if err := os.WriteFile(filepath.Join(home, fmt.Sprintf("file-%05d.txt", j)), nil, 0o644); err != nil {
				return nil, err
			}
		}
		users[i] = u
	}
	return users, nil
}

// knowsCache reports whether bin accepts auth.login_cache_ttl (its
// config.example.toml cannot be asked; check-config on a probe can).
func knowsCache(bin, dir, hash string) bool {
	probe := filepath.Join(dir, "probe.toml")
	cfg := "[server]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"probe-state\"\n[passive]\nports = \"50000-50001\"\n" +
		"[auth]\nlogin_cache_ttl = \"0s\"\n[[users]]\nname = \"p\"\npassword_hash = \"" + hash + "\"\nhome = \"probe-home\"\n"
	if os.WriteFile(probe, []byte(cfg), 0o644) != nil {
		return false
	}
	defer os.RemoveAll(filepath.Join(dir, "probe-state"))
	defer os.RemoveAll(filepath.Join(dir, "probe-home"))
	out, _ := exec.Command(bin, "check-config", "-config", probe).CombinedOutput()
	return !strings.Contains(string(out), "login_cache_ttl")
}

// config is the server's configuration for one run.
func config(users []account, conns int, cacheOff bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[server]
listen = "127.0.0.1:0"
state_dir = "state"
max_connections = %d
max_connections_per_ip = %d
max_prelogin_connections = %d

[passive]
ports = "50000-50200"

[log]
level = "info"
format = "json"

[auth]
`, 4*conns+10, 4*conns+10, 2*conns+10)
	if cacheOff {
		b.WriteString("login_cache_ttl = \"0s\"\n")
	}
	for _, u := range users {
		fmt.Fprintf(&b, "\n[[users]]\nname = %q\npassword_hash = %q\nhome = %q\npermissions = [\"list\", \"read\"]\n",
			u.name, u.hash, "home/"+u.name)
	}
	return b.String()
}

// result is one run of one scenario against one build.
type result struct {
	ok, failed int
	elapsed    time.Duration
	p50        time.Duration
	cpu        time.Duration // the server's user+system time during the run
	hwmKiB     int64         // the server's VmHWM at the end
	firstErr   error
}

func (r result) rate() float64     { return float64(r.ok) / r.elapsed.Seconds() }
func (r result) cpuPerOp() float64 { return r.cpu.Seconds() / float64(max(r.ok, 1)) }

func (r result) String() string {
	s := fmt.Sprintf("%7.1f ops/s  p50 %6v  CPU %6.1f ms/op  peak RSS %4d MiB  (%d ok, %d failed)",
		r.rate(), r.p50.Round(time.Millisecond), r.cpuPerOp()*1000, r.hwmKiB/1024, r.ok, r.failed)
	if r.firstErr != nil {
		s += "  first error: " + r.firstErr.Error()
	}
	return s
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// measure starts b with the scenario's configuration, warms it up, runs
// the clients for o.duration and stops the server.
func measure(o options, dir string, users []account, b build, sc string) (result, error) {
	cacheOff := strings.HasSuffix(sc, "cold") && knowsCache(b.bin, dir, users[0].hash)
	runDir, err := os.MkdirTemp(dir, "run-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(runDir)
	if err := os.Symlink(filepath.Join(dir, "home"), filepath.Join(runDir, "home")); err != nil {
		return result{}, err
	}
	cfg := filepath.Join(runDir, "ftpsd.toml")
	if err := os.WriteFile(cfg, []byte(config(users, o.conns, cacheOff)), 0o644); err != nil {
		return result{}, err
	}
	if err := ftpsdproc.Own(runDir); err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration+3*time.Minute)
	defer cancel()
	var env []string
	if o.procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(o.procs))
	}
	srv, addr, err := ftpsdproc.StartDaemon(ctx, b.bin, cfg, env, nil)
	if err != nil {
		return result{}, err
	}
	defer srv.Stop()

	list := strings.HasPrefix(sc, "session")
	// One login per user first, untimed: it checks the setup, and for
	// the warm scenarios fills the cache.
	for _, u := range users {
		if _, err := session(ctx, addr, u, list, o.files); err != nil {
			return result{}, fmt.Errorf("first login of %s: %w", u.name, err)
		}
	}
	cpu0, err := ftpsdproc.CPUTime(srv.Pid())
	if err != nil {
		return result{}, err
	}
	var (
		mu      sync.Mutex
		lat     []time.Duration
		ok, bad atomic.Int64
		first   error
		started atomic.Int64
	)
	deadline := time.Now().Add(o.duration)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range o.conns {
		u := users[i%len(users)]
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil && started.Add(1) <= maxOps {
				s := time.Now()
				_, err := session(ctx, addr, u, list, o.files)
				d := time.Since(s)
				mu.Lock()
				if err != nil {
					bad.Add(1)
					if first == nil {
						first = err
					}
				} else {
					ok.Add(1)
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu1, err := ftpsdproc.CPUTime(srv.Pid())
	if err != nil {
		return result{}, err
	}
	hwm, err := vmHWM(srv.Pid())
	if err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	res := result{ok: int(ok.Load()), failed: int(bad.Load()), elapsed: elapsed, cpu: cpu1 - cpu0, hwmKiB: hwm, firstErr: first}
	if len(lat) > 0 {
		res.p50 = lat[len(lat)/2]
	}
	return res, nil
}

// session runs one whole session and returns the entries LIST listed.
func session(ctx context.Context, addr string, u account, list bool, files int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(opTimeout))
	tp := textproto.NewConn(raw)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return 0, err
	}
	if err := cmd(tp, 234, "AUTH TLS"); err != nil {
		return 0, err
	}
	// The server's certificate is self-signed and the peer is this
	// machine's loopback: nothing to verify. One session cache per
	// control connection, and a fixed ServerName, so that the data
	// connection resumes this session's TLS session.
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", MinVersion: tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return 0, err
	}
	tp = textproto.NewConn(tc)
	for _, c := range []struct {
		code int
		line string
	}{{331, "USER " + u.name}, {230, "PASS " + u.pass}, {200, "PBSZ 0"}, {200, "PROT P"}} {
		if err := cmd(tp, c.code, c.line); err != nil {
			return 0, err
		}
	}
	n := 0
	if list {
		if n, err = listing(ctx, tp, cfg); err != nil {
			return n, err
		}
		if n < files {
			return n, fmt.Errorf("LIST gave %d lines, want %d", n, files)
		}
	}
	return n, cmd(tp, 221, "QUIT")
}

// listing runs EPSV and LIST and counts the lines listed.
func listing(ctx context.Context, tp *textproto.Conn, cfg *tls.Config) (int, error) {
	if err := tp.PrintfLine("EPSV"); err != nil {
		return 0, err
	}
	_, msg, err := tp.ReadResponse(229)
	if err != nil {
		return 0, err
	}
	port, err := ftpsclient.ParseEPSV(msg)
	if err != nil {
		return 0, err
	}
	if err := tp.PrintfLine("LIST"); err != nil {
		return 0, err
	}
	raw, err := ftpsclient.Dial(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	dc, err := ftpsclient.Handshake(ctx, raw, cfg, opTimeout)
	if err != nil {
		return 0, err
	}
	if _, _, err := tp.ReadResponse(150); err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(dc)
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	_ = dc.Close()
	_, _, err = tp.ReadResponse(226)
	return n, err
}

// cmd sends line and expects the reply code want.
func cmd(tp *textproto.Conn, want int, line string) error {
	if err := tp.PrintfLine("%s", line); err != nil {
		return err
	}
	_, _, err := tp.ReadResponse(want)
	return err
}

// vmHWM is pid's peak resident set size in KiB.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}
