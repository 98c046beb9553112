// Command ftpsd-load puts load on an FTPS server: parallel sessions over
// explicit TLS repeat one operation (download, upload, listing, login, or
// just holding an idle session) until a duration or an operation count is
// reached, then it prints operations per second, MB/s, latency percentiles
// and the errors by reply code.
//
// It is a measuring tool, not a test: docs/performance.md says how the
// figures published for ftpsd were taken with it. Run "ftpsd-load -h" for
// the flags and an example.
//
// Each session is a small FTP client of its own (in this file): every read
// and write has a deadline, and the whole run is cut at -duration plus
// -timeout at the latest, so the tool stops by itself whatever the server
// does. Every data connection resumes its own control session's TLS
// session, as the server requires by default.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds of the flags: the tool must stop by itself, and a typo must not
// start an hour-long run or a terabyte upload.
const (
	maxDuration = 10 * time.Minute
	maxConns    = 1000
	maxMaxOps   = 10_000_000
	maxSize     = 64 << 30
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a setup error, or at least one operation failed
	exitUsage  = 2
)

// retryPause is how long a worker waits after a failure before it logs in
// again, so that a dead server is not hammered.
const retryPause = 200 * time.Millisecond

// idleNoop is how often an idle session sends NOOP (below any sensible
// server idle timeout).
const idleNoop = 30 * time.Second

const usageText = `Usage: ftpsd-load -addr HOST:PORT -user NAME -pass PASSWORD (-cafile FILE | -insecure-fingerprint SHA256) [flags]

Put load on an FTPS server (explicit TLS, passive mode) and report what it
managed. -conns sessions run in parallel; each logs in once and repeats -op
until -duration has passed or -max-ops operations were started in total:

  retr   download a file of -size bytes (each session uploads its own file
         first, untimed, and deletes it at the end)
  stor   upload -size bytes over the session's own file (the server's
         atomic overwrite path), deleted at the end
  list   MLSD of -dir
  login  a whole session per operation: connect, AUTH TLS (full handshake),
         USER, PASS, PBSZ, PROT, TYPE, QUIT; expect the server's password
         hash to dominate
  idle   log in once and hold the session (NOOP every 30s) until -duration
         ends: for measuring the server's memory per session

It prints operations per second, payload MB/s (1 MB = 10^6 bytes), latency
p50/p95/p99/max of the operations, and failures grouped by phase and reply
code (or timeout/tls/closed/other). An operation in flight when the run ends
may finish for up to -timeout; then every connection is closed. The exit
status is 0 when nothing failed, 1 on failures, 2 on a bad command line.

Mind the server's limits: server.max_connections_per_ip (default 10) caps
-conns (one more session is used for a first login check), and
[auth] bans an address after repeated failed logins.

Flags:
`

const exampleText = `
Example (the server of config.example.toml, started from the repository with
"go run ./cmd/ftpsd serve -config config.example.toml"):

  go run ./cmd/ftpsd-load -addr 127.0.0.1:2121 -user demo -pass demo-password-change-me \
      -cafile var/state/tls/self-signed.crt -op retr -size 1MiB -conns 8 -duration 10s

Without the certificate file, pin it by the sha256 that "ftpsd check-config"
prints: -insecure-fingerprint ab:cd:...
`

// opKind is the operation a run repeats.
type opKind string

const (
	opRetr  opKind = "retr"
	opStor  opKind = "stor"
	opList  opKind = "list"
	opLogin opKind = "login"
	opIdle  opKind = "idle"
)

var opKinds = []opKind{opRetr, opStor, opList, opLogin, opIdle}

// config is the validated command line.
type config struct {
	addr     string
	user     string
	pass     string
	tls      *tls.Config // base; every session gets a clone with its own ticket cache
	conns    int
	duration time.Duration
	maxOps   int64
	op       opKind
	size     int64
	dir      string
	timeout  time.Duration
	// block is what uploads send, over and over: random, so that nothing
	// on the way can compress it. Read-only once the run starts.
	block []byte
}

// usageError is a bad command line (exit status 2).
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal ends the run early (with a report); a second one
	// gets the default action.
	context.AfterFunc(ctx, stop)
	res, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(res, err))
}

func exitCode(res *result, err error) int {
	var ue usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case err != nil:
		return exitFailed
	case res.failed() > 0:
		return exitFailed
	}
	return exitOK
}

// run parses args, runs the load and prints the report on stdout. Errors
// that stop the run before it starts (a bad flag, an unreadable CA file, a
// failed first login) are printed on stderr and returned; failed
// operations are in the result.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (*result, error) {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return nil, err
	}
	res, err := load(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsd-load: %v\n", err)
		return nil, err
	}
	res.print(stdout)
	return res, nil
}

// parseArgs reads and validates the command line.
func parseArgs(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("ftpsd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), exampleText)
	}
	addr := fs.String("addr", "", "server control address `HOST:PORT` (required)")
	user := fs.String("user", "", "user `NAME` (required)")
	pass := fs.String("pass", "", "`PASSWORD` (required; or set FTPSD_LOAD_PASS instead, which keeps it out of the process list)")
	cafile := fs.String("cafile", "", "PEM `FILE` of the certificate (or CA) to trust")
	pin := fs.String("insecure-fingerprint", "", "trust exactly the server certificate with this SHA-256 `FINGERPRINT` (hex, colons allowed), whatever its name, issuer and dates")
	serverName := fs.String("servername", "", "`NAME` to verify the certificate against and to key TLS sessions by (default: the host of -addr)")
	conns := fs.Int("conns", 8, fmt.Sprintf("parallel sessions (1..%d)", maxConns))
	duration := fs.Duration("duration", 10*time.Second, fmt.Sprintf("how long to start new operations (at most %s)", maxDuration))
	maxOps := fs.Int64("max-ops", 10000, fmt.Sprintf("operations to start in total, across sessions (1..%d)", maxMaxOps))
	op := fs.String("op", string(opRetr), "operation: retr, stor, list, login or idle")
	size := byteSize(1 << 20)
	fs.Var(&size, "size", "file `SIZE` for retr and stor: bytes, or a number with KiB, MiB or GiB")
	dir := fs.String("dir", "", "directory for -op list (default: the login directory)")
	timeout := fs.Duration("timeout", time.Minute, "limit on each network read or write, and on finishing the operations in flight when -duration ends")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err} // the flag package printed it
	}
	bad := func(format string, a ...any) (*config, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "ftpsd-load: %v\nRun \"ftpsd-load -h\" for help.\n", err)
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if *pass == "" {
		*pass = os.Getenv("FTPSD_LOAD_PASS")
	}
	switch {
	case *addr == "":
		return bad("missing -addr")
	case *user == "":
		return bad("missing -user")
	case *pass == "":
		return bad("missing -pass (or FTPSD_LOAD_PASS)")
	case strings.ContainsAny(*user+*pass+*dir, "\r\n\x00"):
		return bad("-user, -pass and -dir must not contain CR, LF or NUL")
	case (*cafile == "") == (*pin == ""):
		return bad("give exactly one of -cafile and -insecure-fingerprint")
	case *conns < 1 || *conns > maxConns:
		return bad("-conns %d: want 1..%d", *conns, maxConns)
	case *duration <= 0 || *duration > maxDuration:
		return bad("-duration %s: want more than 0 and at most %s", *duration, maxDuration)
	case *maxOps < 1 || *maxOps > maxMaxOps:
		return bad("-max-ops %d: want 1..%d", *maxOps, maxMaxOps)
	case *timeout <= 0:
		return bad("-timeout %s: must be positive", *timeout)
	case !slices.Contains(opKinds, opKind(*op)):
		return bad("-op %q: want retr, stor, list, login or idle", *op)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return bad("-addr %q: want HOST:PORT", *addr)
	}
	if *serverName == "" {
		*serverName = host
	}
	tcfg, err := clientTLS(*cafile, *pin, *serverName)
	if err != nil {
		return bad("%v", err)
	}
	return &config{
		addr: *addr, user: *user, pass: *pass, tls: tcfg,
		conns: *conns, duration: *duration, maxOps: *maxOps,
		op: opKind(*op), size: int64(size), dir: *dir, timeout: *timeout,
		block: randomBlock(),
	}, nil
}

// byteSize is a flag.Value for sizes such as "65536", "64KiB" or "1GiB".
type byteSize int64

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (b *byteSize) Set(s string) error {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > maxSize/mult {
		return fmt.Errorf("want a number of bytes, optionally with KiB, MiB or GiB, at most %s", formatSize(maxSize))
	}
	*b = byteSize(n * mult)
	return nil
}

// formatSize writes n in the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// clientTLS builds the base client config: trust the PEM certificates in
// cafile, or exactly the leaf whose SHA-256 is pin.
func clientTLS(cafile, pin, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if cafile != "" {
		pemData, err := os.ReadFile(cafile)
		if err != nil {
			return nil, fmt.Errorf("-cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("-cafile %s: no PEM certificate in it", cafile)
		}
		cfg.RootCAs = pool
		return cfg, nil
	}
	want, err := parseFingerprint(pin)
	if err != nil {
		return nil, err
	}
	// The chain, name and dates are not checked: the pin replaces them.
	// VerifyConnection (unlike VerifyPeerCertificate) also runs on resumed
	// connections, so no data connection escapes the check.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server sent no certificate")
		}
		got := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if !bytes.Equal(got[:], want) {
			return fmt.Errorf("server certificate sha256 %s does not match -insecure-fingerprint", hex.EncodeToString(got[:]))
		}
		return nil
	}
	return cfg, nil
}

// parseFingerprint reads a SHA-256 fingerprint in hex, with or without
// colons and an "sha256:" prefix, in either case.
func parseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimPrefix(h, "sha256:")
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("-insecure-fingerprint: want the 64 hex digits of a SHA-256 (colons allowed)")
	}
	return b, nil
}

// --- the run -----------------------------------------------------------

// load runs cfg.conns workers until the duration, the operation budget or
// ctx ends, and merges what they measured.
func load(ctx context.Context, cfg *config) (*result, error) {
	// kill closes every connection, whatever is in flight: when the setup
	// overruns -timeout, -timeout after the measured run ends, or at once
	// on a signal during the setup. A signal during the run only stops
	// new operations, so that the report still comes out.
	kill, cancelKill := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelKill()
	setupTimer := time.AfterFunc(cfg.timeout, cancelKill)
	stopSetupSignal := context.AfterFunc(ctx, cancelKill)

	// One login first, so that a wrong password or certificate is one
	// clear error rather than a flood of them (and an address ban).
	s, err := dialSession(kill, cfg)
	if err != nil {
		return nil, fmt.Errorf("first login to %s failed: %w", cfg.addr, err)
	}
	s.quit()

	// Setup, not measured: every worker logs in (and, for retr, uploads
	// its file) before the clock starts.
	token := strings.ToLower(rand.Text()[:8])
	var budget atomic.Int64
	workers := make([]*worker, cfg.conns)
	var ready, done sync.WaitGroup
	begin := make(chan struct{})
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	for i := range workers {
		w := &worker{
			cfg: cfg, kill: kill, budget: &budget,
			file: fmt.Sprintf("ftpsd-load-%s-%d.bin", token, i),
			st:   newStats(),
		}
		workers[i] = w
		ready.Add(1)
		done.Go(func() {
			w.prepare()
			ready.Done()
			<-begin
			w.run(runCtx)
		})
	}
	ready.Wait()
	setupOK := setupTimer.Stop() && stopSetupSignal()
	if !setupOK {
		cancelRun()
	}
	start := time.Now()
	stopRun := time.AfterFunc(cfg.duration, cancelRun)
	defer stopRun.Stop()
	stopKill := time.AfterFunc(cfg.duration+cfg.timeout, cancelKill)
	defer stopKill.Stop()
	close(begin)
	done.Wait()
	elapsed := time.Since(start)
	switch {
	case ctx.Err() != nil && !setupOK:
		return nil, ctx.Err()
	case !setupOK:
		return nil, fmt.Errorf("the setup (logins, and uploads for retr) took more than -timeout %s", cfg.timeout)
	}

	res := &result{cfg: cfg, elapsed: elapsed, stats: newStats()}
	for _, w := range workers {
		res.stats.merge(w.st)
	}
	switch {
	case ctx.Err() != nil:
		res.stopped = "signal"
	case budget.Load() >= cfg.maxOps:
		res.stopped = "max-ops"
	default:
		res.stopped = "duration"
	}
	return res, nil
}

// worker is one session's loop and its measurements (merged once the
// worker is done, so they need no lock).
type worker struct {
	cfg    *config
	kill   context.Context
	budget *atomic.Int64
	file   string // this worker's file for retr and stor
	sess   *session
	stored bool // file exists on the server
	st     *stats
}

// claim takes one operation from the shared budget.
func (w *worker) claim() bool { return w.budget.Add(1) <= w.cfg.maxOps }

func (w *worker) run(ctx context.Context) {
	defer w.finish()
	for ctx.Err() == nil {
		if w.cfg.op == opLogin {
			if !w.claim() {
				return
			}
			t0 := time.Now()
			s, err := dialSession(w.kill, w.cfg)
			if err == nil {
				err = s.quit()
			}
			w.record(string(opLogin), time.Since(t0), 0, 0, err)
			if err != nil {
				pause(ctx)
			}
			continue
		}
		if w.sess == nil {
			if w.cfg.op == opIdle && !w.claim() {
				return
			}
			t0 := time.Now()
			if err := w.connect(); err != nil {
				w.fail("login", err)
				pause(ctx)
				continue
			}
			if w.cfg.op == opIdle {
				w.record("login", time.Since(t0), 0, 0, nil)
			}
		}
		if w.cfg.op == opIdle {
			w.idle(ctx)
			continue
		}
		if !w.claim() {
			return
		}
		t0 := time.Now()
		n, items, err := w.once()
		w.record(string(w.cfg.op), time.Since(t0), n, items, err)
		if err != nil {
			w.drop()
			pause(ctx)
		}
	}
}

// prepare opens the session of retr, stor and list before the clock
// starts. A failure is counted, and run tries again.
func (w *worker) prepare() {
	switch w.cfg.op {
	case opRetr, opStor, opList:
		if err := w.connect(); err != nil {
			w.fail("login", err)
		}
	}
}

// connect logs in and, for retr, uploads the file to download.
func (w *worker) connect() error {
	s, err := dialSession(w.kill, w.cfg)
	if err != nil {
		return err
	}
	w.sess = s
	if w.cfg.op == opRetr && !w.stored {
		if _, err := s.stor(w.file, w.cfg.size, w.cfg.block); err != nil {
			w.drop()
			return fmt.Errorf("uploading the file to download: %w", err)
		}
		w.stored = true
	}
	s.st = w.st // count the data connections of measured operations only
	return nil
}

// once runs one operation on the open session and returns the payload
// bytes it moved and, for a listing, the entries.
func (w *worker) once() (int64, int, error) {
	switch w.cfg.op {
	case opRetr:
		n, err := w.sess.retr(w.file)
		if err == nil && n != w.cfg.size {
			err = fmt.Errorf("RETR %s: got %d bytes, want %d: %w", w.file, n, w.cfg.size, errShort)
		}
		return n, 0, err
	case opStor:
		n, err := w.sess.stor(w.file, w.cfg.size, w.cfg.block)
		if err == nil {
			w.stored = true
		}
		return n, 0, err
	case opList:
		return w.sess.list(w.cfg.dir)
	}
	panic("unreachable: op " + w.cfg.op)
}

// idle holds the session until ctx ends, with a NOOP now and then.
func (w *worker) idle(ctx context.Context) {
	t := time.NewTicker(idleNoop)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.sess.noop(); err != nil {
				w.fail("noop", err)
				w.drop()
				pause(ctx)
				return
			}
		}
	}
}

// finish deletes the worker's file and logs out, best effort.
func (w *worker) finish() {
	if w.stored && w.sess == nil && w.kill.Err() == nil {
		if err := w.connect(); err != nil { // only to delete the file
			w.fail("cleanup", err)
		}
	}
	if w.sess == nil {
		return
	}
	if w.stored {
		if err := w.sess.dele(w.file); err != nil {
			w.fail("cleanup", err)
		}
	}
	w.sess.quit()
	w.sess = nil
}

// drop closes a session that failed: its state is unknown.
func (w *worker) drop() {
	if w.sess != nil {
		w.sess.close()
		w.sess = nil
	}
}

// record counts one finished operation.
func (w *worker) record(phase string, d time.Duration, n int64, items int, err error) {
	if err != nil {
		w.fail(phase, err)
		return
	}
	w.st.ok++
	w.st.bytes += n
	w.st.items += int64(items)
	w.st.latencies = append(w.st.latencies, d)
}

// fail counts an error unless it is the run's own doing (the kill).
func (w *worker) fail(phase string, err error) {
	if w.kill.Err() != nil {
		w.st.cut++
		return
	}
	w.st.addError(phase+" "+errorKind(err), err)
}

// pause waits retryPause or until ctx ends.
func pause(ctx context.Context) {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var errShort = errors.New("short transfer")

// errorKind names the class of err for the report: the FTP reply code, or
// timeout, tls, closed, short or other.
func errorKind(err error) string {
	var te *textproto.Error
	var ne net.Error
	var ve *tls.CertificateVerificationError
	var ae tls.AlertError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &te):
		return strconv.Itoa(te.Code)
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ve), errors.As(err, &ae), errors.As(err, &rh):
		return "tls"
	case errors.Is(err, errShort):
		return "short"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED):
		return "closed"
	}
	return "other"
}

// --- measurements --------------------------------------------------------

// stats are one worker's measurements, or all of them merged.
type stats struct {
	ok        int64
	bytes     int64
	items     int64 // listing lines
	latencies []time.Duration
	errors    map[string]int64  // by "phase kind", e.g. "retr 425"
	firstErr  map[string]string // an example message per key
	cut       int64             // failures caused by the end of the run
	dataConns int64
	resumed   int64 // data connections that resumed the control session
}

func newStats() *stats {
	return &stats{errors: make(map[string]int64), firstErr: make(map[string]string)}
}

func (s *stats) addError(key string, err error) {
	s.errors[key]++
	if _, ok := s.firstErr[key]; !ok {
		s.firstErr[key] = err.Error()
	}
}

func (s *stats) merge(o *stats) {
	s.ok += o.ok
	s.bytes += o.bytes
	s.items += o.items
	s.latencies = append(s.latencies, o.latencies...)
	for k, n := range o.errors {
		s.errors[k] += n
		if _, ok := s.firstErr[k]; !ok {
			s.firstErr[k] = o.firstErr[k]
		}
	}
	s.cut += o.cut
	s.dataConns += o.dataConns
	s.resumed += o.resumed
}

// result is the report of one run.
type result struct {
	cfg     *config
	elapsed time.Duration
	stopped string // duration, max-ops or signal
	*stats
}

// failed is the number of counted errors.
func (r *result) failed() int64 {
	var n int64
	for _, c := range r.errors {
		n += c
	}
	return n
}

// percentile is the nearest-rank percentile p (0..100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// round keeps three or so significant digits of a latency.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func (r *result) print(w io.Writer) {
	cfg := r.cfg
	slices.Sort(r.latencies)
	secs := r.elapsed.Seconds()
	what := string(cfg.op)
	switch cfg.op {
	case opRetr, opStor:
		what += " " + formatSize(cfg.size)
	case opList:
		what += " " + strconv.Quote(cfg.dir)
	}
	fmt.Fprintf(w, "ftpsd-load: %s, %d sessions, %s: ran %s, stopped by %s\n",
		what, cfg.conns, cfg.addr, r.elapsed.Round(time.Millisecond), r.stopped)
	fmt.Fprintf(w, "ops:        %d ok, %d failed: %.1f ops/s\n", r.ok, r.failed(), float64(r.ok)/secs)
	if cfg.op == opRetr || cfg.op == opStor || cfg.op == opList {
		fmt.Fprintf(w, "throughput: %.1f MB/s of payload (1 MB = 10^6 bytes)\n", float64(r.bytes)/1e6/secs)
	}
	if cfg.op == opList && r.ok > 0 {
		fmt.Fprintf(w, "listing:    %d entries per MLSD, %.0f entries/s\n", r.items/r.ok, float64(r.items)/secs)
	}
	if len(r.latencies) > 0 {
		fmt.Fprintf(w, "latency:    p50 %s  p95 %s  p99 %s  max %s\n",
			round(percentile(r.latencies, 50)), round(percentile(r.latencies, 95)),
			round(percentile(r.latencies, 99)), round(r.latencies[len(r.latencies)-1]))
	}
	if r.dataConns > 0 {
		fmt.Fprintf(w, "data conns: %d, %d resumed the control TLS session\n", r.dataConns, r.resumed)
	}
	if r.cut > 0 {
		fmt.Fprintf(w, "cut:        %d operations in flight were cut at the end of the run (not counted)\n", r.cut)
	}
	if len(r.errors) == 0 {
		fmt.Fprintf(w, "errors:     none\n")
		return
	}
	fmt.Fprintf(w, "errors:     %d\n", r.failed())
	keys := make([]string, 0, len(r.errors))
	for k := range r.errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-16s %6d  e.g. %s\n", k, r.errors[k], r.firstErr[k])
	}
}

// --- a small FTPS client ---------------------------------------------------

// deadlineConn gives each Read and Write its own deadline, so that a
// stalled peer fails the operation after timeout instead of hanging it.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// session is one logged-in control connection.
type session struct {
	kill    context.Context
	raw     net.Conn
	tp      *textproto.Conn
	tls     *tls.Config // this session's: its ticket cache holds only its own tickets
	peer    netip.Addr  // the control peer: EPSV gives only a port
	timeout time.Duration
	stop    func() bool // undoes the close-on-kill hook
	st      *stats      // data connection counts, if set
}

// dialSession connects, runs AUTH TLS and logs in, then sets PBSZ 0,
// PROT P and TYPE I. The connection is closed when kill ends.
func dialSession(kill context.Context, cfg *config) (*session, error) {
	d := net.Dialer{Timeout: cfg.timeout}
	raw, err := d.DialContext(kill, "tcp", cfg.addr)
	if err != nil {
		return nil, err
	}
	tcfg := cfg.tls.Clone()
	tcfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	s := &session{
		kill: kill, raw: raw, tls: tcfg, timeout: cfg.timeout,
		peer: raw.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(),
		tp:   textproto.NewConn(deadlineConn{raw, cfg.timeout}),
	}
	s.stop = context.AfterFunc(kill, func() { raw.Close() })
	if err := s.login(cfg.user, cfg.pass); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) login(user, pass string) error {
	if _, err := s.expect(220); err != nil {
		return err
	}
	if _, err := s.cmd(234, "AUTH TLS"); err != nil {
		return err
	}
	tc := tls.Client(deadlineConn{s.raw, s.timeout}, s.tls)
	if err := tc.HandshakeContext(s.kill); err != nil {
		return err
	}
	s.tp = textproto.NewConn(tc)
	code, err := s.cmd(0, "USER "+user)
	switch {
	case err != nil:
		return err
	case code == 331:
		if _, err := s.cmd(230, "PASS "+pass); err != nil {
			return err
		}
	case code != 230:
		return &textproto.Error{Code: code, Msg: "USER refused"}
	}
	for _, line := range []string{"PBSZ 0", "PROT P", "TYPE I"} {
		if _, err := s.cmd(200, line); err != nil {
			return err
		}
	}
	return nil
}

// cmd sends line and reads the reply; want > 0 turns any other code into
// a *textproto.Error.
func (s *session) cmd(want int, line string) (int, error) {
	if err := s.tp.PrintfLine("%s", line); err != nil {
		return 0, err
	}
	return s.expect(want)
}

// expect reads one (possibly multi-line) reply.
func (s *session) expect(want int) (int, error) {
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil {
		return code, err
	}
	if want > 0 && code != want {
		return code, &textproto.Error{Code: code, Msg: msg}
	}
	return code, nil
}

// transfer runs one data command: EPSV, a TCP connection to the announced
// port, the command, and after its 150 the TLS handshake (resuming this
// session), then fn on the data connection, a close with close_notify and
// the 226.
func (s *session) transfer(line string, fn func(net.Conn) (int64, error)) (int64, error) {
	port, err := s.epsv()
	if err != nil {
		return 0, err
	}
	d := net.Dialer{Timeout: s.timeout}
	raw, err := d.DialContext(s.kill, "tcp", netip.AddrPortFrom(s.peer, port).String())
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	defer context.AfterFunc(s.kill, func() { raw.Close() })()
	// The TLS handshake waits for the 150: after an error reply the
	// server never accepts, and the handshake would only time out.
	code, err := s.cmd(0, line)
	if err != nil {
		return 0, err
	}
	if code != 150 && code != 125 {
		return 0, &textproto.Error{Code: code, Msg: line + " refused"}
	}
	tc := tls.Client(deadlineConn{raw, s.timeout}, s.tls)
	if err := tc.HandshakeContext(s.kill); err != nil {
		return 0, err
	}
	if s.st != nil {
		s.st.dataConns++
		if tc.ConnectionState().DidResume {
			s.st.resumed++
		}
	}
	n, err := fn(tc)
	if err != nil {
		return n, err
	}
	if err := tc.Close(); err != nil {
		return n, err
	}
	_, err = s.expect(226)
	return n, err
}

// epsv asks for a passive port: "229 ... (|||port|)".
func (s *session) epsv() (uint16, error) {
	if err := s.tp.PrintfLine("EPSV"); err != nil {
		return 0, err
	}
	code, msg, err := s.tp.ReadResponse(229)
	if err != nil {
		return 0, err
	}
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	if i < 0 || j < i+4 {
		return 0, &textproto.Error{Code: code, Msg: "malformed EPSV reply: " + msg}
	}
	p, err := strconv.ParseUint(msg[i+4:j], 10, 16)
	if err != nil || p == 0 {
		return 0, &textproto.Error{Code: code, Msg: "malformed EPSV reply: " + msg}
	}
	return uint16(p), nil
}

func (s *session) retr(name string) (int64, error) {
	return s.transfer("RETR "+name, func(c net.Conn) (int64, error) {
		return io.Copy(io.Discard, c)
	})
}

// stor uploads size bytes: block, repeated.
func (s *session) stor(name string, size int64, block []byte) (int64, error) {
	return s.transfer("STOR "+name, func(c net.Conn) (int64, error) {
		var n int64
		for n < size {
			m, err := c.Write(block[:min(int64(len(block)), size-n)])
			n += int64(m)
			if err != nil {
				return n, err
			}
		}
		return n, nil
	})
}

// randomBlock returns 256 KiB of random bytes for config.block.
func randomBlock() []byte {
	b := make([]byte, 256<<10)
	rand.Read(b)
	return b
}

// list runs MLSD of dir and returns the listing's size and line count.
func (s *session) list(dir string) (int64, int, error) {
	line := "MLSD"
	if dir != "" {
		line += " " + dir
	}
	var lines int
	n, err := s.transfer(line, func(c net.Conn) (int64, error) {
		var n int64
		buf := make([]byte, 32<<10)
		for {
			m, err := c.Read(buf)
			n += int64(m)
			lines += bytes.Count(buf[:m], []byte("\n"))
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			if err != nil {
				return n, err
			}
		}
	})
	return n, lines, err
}

func (s *session) noop() error {
	_, err := s.cmd(200, "NOOP")
	return err
}

func (s *session) dele(name string) error {
	_, err := s.cmd(250, "DELE "+name)
	return err
}

// quit logs out and closes the connection.
func (s *session) quit() error {
	_, err := s.cmd(221, "QUIT")
	s.close()
	return err
}

func (s *session) close() {
	s.stop()
	s.raw.Close()
}
