package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
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

const usageText = `Usage: ftpsd-load -addr HOST:PORT -user NAME -pass PASSWORD (-cafile FILE | -insecure-fingerprint SHA256) [flags]

Put load on an FTPS server (explicit TLS, passive mode) and report what it
managed. -conns sessions run in parallel; each logs in once and repeats -op
until -duration has passed or -max-ops operations were started in total:

  retr   download a file of -size bytes (each session uploads its own file
         first, untimed, and deletes it at the end)
  stor   upload -size bytes over the session's own file (the server's
         atomic overwrite path), deleted at the end
  list   MLSD of -dir
  session
         a whole session with a listing per operation: connect, AUTH TLS,
         USER, PASS, PBSZ, PROT, TYPE, EPSV, LIST of -dir, QUIT (LIST, not
         MLSD, so that every server can be measured)
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

  go run ./test/load -addr 127.0.0.1:2121 -user demo -pass demo-password-change-me \
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
	// opSession is opLogin plus EPSV and LIST -dir.
	opSession opKind = "session"
)

var opKinds = []opKind{opRetr, opStor, opList, opLogin, opIdle, opSession}

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
	file     string // retr: download this existing file instead of uploading one
	storNew  bool   // stor: a new file per operation, not an overwrite
	json     bool   // print the report as one JSON object
	// idleReady runs once, when all -conns idle sessions have logged in.
	idleReady func()
	// startOnStdin: after the setup, wait for a line on stdin before the
	// clock starts (see -start-on-stdin).
	startOnStdin bool
	// loginSlots bounds the logins in progress (-login-parallel); nil
	// for no bound.
	loginSlots chan struct{}
	// block is what uploads send, over and over: random, so that nothing
	// on the way can compress it. Read-only once the run starts.
	block []byte
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
	op := fs.String("op", string(opRetr), "operation: retr, stor, list, login, idle or session")
	size := byteSize(1 << 20)
	fs.Var(&size, "size", "file `SIZE` for retr and stor: bytes, or a number with KiB, MiB or GiB")
	dir := fs.String("dir", "", "directory for -op list (default: the login directory)")
	timeout := fs.Duration("timeout", time.Minute, "limit on each network read or write, and on finishing the operations in flight when -duration ends")
	tls13 := fs.Bool("tls13", false, "offer TLS 1.3 only (default: TLS 1.2 and 1.3)")
	file := fs.String("file", "", "retr: download this existing `FILE` (of -size bytes) instead of uploading one per session; it is left in place")
	storNew := fs.Bool("stor-new", false, "stor: upload to a new file each time (the server's path for new files) instead of overwriting one; the files are deleted at the end")
	startOnStdin := fs.Bool("start-on-stdin", false, "after the setup (logins, uploads), print \"ftpsd-load: ready\" on stderr and start the measured run only when a line arrives on stdin: a script can read the server's CPU counters in between")
	loginParallel := fs.Int("login-parallel", 0, "at most this many sessions logging in at once (0: no bound). A server that hashes each password in a process of its own with a memory-hard hash needs it for -op idle with many -conns")
	jsonOut := fs.Bool("json", false, "print the report as one JSON object (for scripts, e.g. test/bench/compare)")

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
	case strings.ContainsAny(*user+*pass+*dir+*file, "\r\n\x00"):
		return bad("-user, -pass, -dir and -file must not contain CR, LF or NUL")
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
		return bad("-op %q: want retr, stor, list, login, idle or session", *op)
	case *loginParallel < 0:
		return bad("-login-parallel %d: must not be negative", *loginParallel)
	case *file != "" && opKind(*op) != opRetr:
		return bad("-file is for -op retr only")
	case *storNew && opKind(*op) != opStor:
		return bad("-stor-new is for -op stor only")
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
	if *tls13 {
		tcfg.MinVersion = tls.VersionTLS13
	}
	var slots chan struct{}
	if *loginParallel > 0 {
		slots = make(chan struct{}, *loginParallel)
	}
	return &config{
		addr: *addr, user: *user, pass: *pass, tls: tcfg,
		conns: *conns, duration: *duration, maxOps: *maxOps,
		op: opKind(*op), size: int64(size), dir: *dir, timeout: *timeout,
		file: *file, storNew: *storNew, json: *jsonOut, idleReady: func() {},
		startOnStdin: *startOnStdin, loginSlots: slots,
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

// randomBlock returns 256 KiB of random bytes for config.block.
func randomBlock() []byte {
	b := make([]byte, 256<<10)
	rand.Read(b)
	return b
}
