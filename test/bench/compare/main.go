// Command compare measures ftpsd side by side with vsftpd, Pure-FTPd and
// ProFTPD (issue 10): the same machine, loopback, explicit FTPS with
// TLS 1.3, the same ECDSA P-256 certificate, data protection and (where the
// server can) TLS session resumption required on data connections. It
// unpacks the three servers from Debian packages into a scratch directory
// (apt-get download + dpkg -x: they conflict as installed packages), starts
// them and the real ftpsd binary on loopback ports, runs the load tool
// (test/load, ftpsd-load -json) against each in interleaved rounds,
// measures the Go TLS 1.3 loopback ceiling in the same rounds, and prints
// one table of medians and ratios.
//
// It needs root (the C servers start as root and drop to a local user,
// which it creates: ftpsdbench) and Debian's apt-get. Run from the
// repository:
//
//	go run ./test/bench/compare -quick     # under a minute: small sizes, 1 round
//	go run ./test/bench/compare            # 3 rounds, medians
//
// docs/performance.md, section "Side by side", has the figures and what
// each server negotiated. It is a measuring tool, run on demand, never in
// CI (its test runs a few seconds against ftpsd alone).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// serverKeys are the servers the command knows, in table order.
var serverKeys = []string{"vsftpd", "pureftpd", "proftpd", "ftpsd"}

// scenarioKeys are the measurements, in table order.
var scenarioKeys = []string{"retr", "stor", "sessions", "small", "idle"}

// options is the validated command line.
type options struct {
	work       string        // scratch directory
	rounds     int           // interleaved rounds
	bigSize    int64         // RETR and STOR size
	bigOps     int           // transfers of bigSize per server and round
	duration   time.Duration // of the sessions/s and 4 KiB runs
	idle       int           // idle sessions for the memory figure
	idleRounds int           // rounds that measure it
	settle     time.Duration // wait after the last idle login before reading PSS
	servers    []string
	scenarios  []string
	sameSuite  bool // restrict the C servers to TLS_AES_128_GCM_SHA256, ftpsd's and Go's choice
	keep       bool // leave the scratch directory's homes and logs
}

const usageText = `Usage: compare [-quick] [flags]   (as root; from the repository)

Measure ftpsd against vsftpd, Pure-FTPd and ProFTPD on loopback with the
load tool, in interleaved rounds, and print one table of medians and
ratios. See docs/performance.md, "Side by side".

Flags:
`

func parseArgs(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	quick := fs.Bool("quick", false, "a run of under a minute: 1 round, 256 MiB transfers, 2 s runs, 30 idle sessions")
	work := fs.String("work", "/tmp/ftpsd-compare", "scratch `DIR`: packages, configurations, homes, logs")
	rounds := fs.Int("rounds", 3, "interleaved rounds (the table gives medians)")
	big := fs.Int("big-mib", 1024, "size of the RETR and STOR transfers in MiB")
	bigOps := fs.Int("big-ops", 1, "transfers of that size per server and round")
	duration := fs.Duration("duration", 10*time.Second, "length of the sessions/s and 4 KiB RETR runs")
	idle := fs.Int("idle", 200, "idle logged-in sessions for the memory figure")
	idleRounds := fs.Int("idle-rounds", 1, "rounds that measure the idle memory (logging in the idle sessions takes minutes with argon2id; the figure varies little)")
	settle := fs.Duration("settle", 10*time.Second, "wait after the last idle login before reading the memory")
	servers := fs.String("servers", strings.Join(serverKeys, ","), "servers to measure, comma-separated")
	scenarios := fs.String("scenarios", strings.Join(scenarioKeys, ","), "measurements, comma-separated: retr, stor, sessions, small, idle")
	sameSuite := fs.Bool("same-suite", false, "restrict vsftpd, Pure-FTPd and ProFTPD to TLS_AES_128_GCM_SHA256, the suite ftpsd and the Go client choose (Go's TLS 1.3 suites cannot be restricted)")
	keep := fs.Bool("keep", false, "keep homes and logs in the scratch directory after the run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick { // only what the command line did not set
		if !set["rounds"] {
			*rounds = 1
		}
		if !set["big-mib"] {
			*big = 256
		}
		if !set["duration"] {
			*duration = 2 * time.Second
		}
		if !set["idle"] {
			*idle = 30
		}
		if !set["settle"] {
			*settle = time.Second
		}
	}
	o := &options{
		work: *work, rounds: *rounds, bigSize: int64(*big) << 20, bigOps: *bigOps,
		duration: *duration, idle: *idle, idleRounds: *idleRounds, settle: *settle,
		servers: splitList(*servers), scenarios: splitList(*scenarios),
		sameSuite: *sameSuite, keep: *keep,
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.rounds < 1 || o.rounds > 20:
		return nil, fmt.Errorf("-rounds %d: want 1..20", o.rounds)
	case *big < 1 || *big > 16<<10:
		return nil, fmt.Errorf("-big-mib %d: want 1..16384", *big)
	case o.bigOps < 1 || o.bigOps > 10:
		return nil, fmt.Errorf("-big-ops %d: want 1..10", o.bigOps)
	case o.duration < time.Second || o.duration > 5*time.Minute:
		return nil, fmt.Errorf("-duration %s: want 1s..5m", o.duration)
	case o.idleRounds < 0:
		return nil, fmt.Errorf("-idle-rounds %d: must not be negative", o.idleRounds)
	case o.idle < 1 || o.idle > 5000:
		return nil, fmt.Errorf("-idle %d: want 1..5000", o.idle)
	case o.settle < 0 || o.settle > 10*time.Minute:
		return nil, fmt.Errorf("-settle %s: want 0..10m", o.settle)
	case !strings.HasPrefix(o.work, "/"):
		return nil, fmt.Errorf("-work %q: want an absolute path", o.work)
	}
	for _, s := range o.servers {
		if !slices.Contains(serverKeys, s) {
			return nil, fmt.Errorf("-servers: unknown server %q (want %s)", s, strings.Join(serverKeys, ", "))
		}
	}
	for _, s := range o.scenarios {
		if !slices.Contains(scenarioKeys, s) {
			return nil, fmt.Errorf("-scenarios: unknown measurement %q (want %s)", s, strings.Join(scenarioKeys, ", "))
		}
	}
	if len(o.servers) == 0 {
		return nil, errors.New("-servers: none given")
	}
	// Idle memory first, on servers fresh from their start: a Go heap
	// that earlier logins grew would absorb the sessions' memory and
	// show ftpsd at 7 KiB per session instead of 37.
	if i := slices.Index(o.scenarios, "idle"); i > 0 {
		o.scenarios = append([]string{"idle"}, slices.Delete(o.scenarios, i, i+1)...)
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		os.Exit(2)
	}
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		os.Exit(1)
	}
}
