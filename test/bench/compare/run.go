package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// logf prints progress on stderr.
func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s compare: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// loadReport is ftpsd-load's -json report (test/load/stats.go).
type loadReport struct {
	OK         int64             `json:"ok"`
	Failed     int64             `json:"failed"`
	Bytes      int64             `json:"bytes"`
	Items      int64             `json:"items"`
	Elapsed    float64           `json:"elapsed_s"`
	Busy       float64           `json:"busy_s"`
	DataConns  int64             `json:"data_conns"`
	Resumed    int64             `json:"resumed"`
	ControlTLS map[string]int64  `json:"control_tls"`
	DataTLS    map[string]int64  `json:"data_tls"`
	Errors     map[string]int64  `json:"errors"`
	FirstError map[string]string `json:"first_error"`
}

// metric is one row of the table.
type metric struct {
	key    string
	label  string
	higher bool // higher is better
	format func(float64) string
}

// serverLog is what the notes say about one server.
type serverLog struct {
	controlTLS, dataTLS map[string]int64
	dataConns, resumed  int64
	errors              map[string]int64
	firstError          map[string]string
	items               []int64 // lines per listing seen
}

// bench holds the whole run.
type bench struct {
	o       *options
	e       *env
	servers []*server
	values  map[string]map[string][]float64 // metric -> server -> one value per round
	ceiling []float64                       // MB/s per round
	ceilTLS string
	logs    map[string]*serverLog
	idleFor map[string][]time.Duration // how long the idle logins took
}

func (b *bench) add(metricKey, server string, v float64) {
	if b.values[metricKey] == nil {
		b.values[metricKey] = map[string][]float64{}
	}
	b.values[metricKey][server] = append(b.values[metricKey][server], v)
}

// run measures and prints the table on stdout; it returns the
// measurements.
func run(ctx context.Context, o *options, stdout io.Writer) (*bench, error) {
	start := time.Now()
	b, err := measure(ctx, o)
	if err != nil {
		return nil, err
	}
	b.print(stdout, time.Since(start))
	return b, nil
}

func measure(ctx context.Context, o *options) (b *bench, err error) {
	needRoot := slices.ContainsFunc(o.servers, func(k string) bool { return k != "ftpsd" })
	if needRoot && os.Geteuid() != 0 {
		return nil, errNoRoot
	}
	e := &env{o: o, work: o.work, pass: strings.ToLower(rand.Text())}
	if err := os.MkdirAll(filepath.Join(o.work, "bin"), 0o755); err != nil {
		return nil, err
	}
	os.Chmod(o.work, 0o755)
	if err := e.build(ctx); err != nil {
		return nil, err
	}
	if needRoot {
		if err := e.unpack(ctx); err != nil {
			return nil, err
		}
		if err := e.makeUser(ctx); err != nil {
			return nil, err
		}
	}
	if err := e.makeCert(); err != nil {
		return nil, err
	}
	if err := e.makeBigFile(); err != nil {
		return nil, err
	}
	bb := &bench{o: o, e: e, values: map[string]map[string][]float64{}, logs: map[string]*serverLog{}, idleFor: map[string][]time.Duration{}}
	b = bb
	defer func() { // bb: b is nil when an error is returned
		for _, s := range bb.servers {
			s.stop()
		}
		if !o.keep {
			for _, s := range bb.servers {
				os.RemoveAll(s.home)
			}
		}
	}()
	for _, key := range o.servers {
		s, err := e.setup(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		b.servers = append(b.servers, s)
		if err := s.start(o.work); err != nil {
			return nil, err
		}
		b.logs[key] = &serverLog{controlTLS: map[string]int64{}, dataTLS: map[string]int64{}, errors: map[string]int64{}, firstError: map[string]string{}}
		logf("%s listening on %s (CPU: %s)", s.title, s.addr(), s.acct.method())
	}
	for r := range o.rounds {
		// Each round starts with another server, so that no server is
		// always measured first (or right after the same neighbour).
		order := slices.Clone(b.servers)
		rot := r % len(order)
		order = append(order[rot:], order[:rot]...)
		for _, sc := range o.scenarios {
			if sc == "idle" && r >= o.idleRounds {
				continue
			}
			// The ceiling is measured right before and after the RETRs
			// of each round, under the same conditions.
			if sc == "retr" {
				if err := b.measureCeiling(ctx, r); err != nil {
					return nil, err
				}
			}
			for _, s := range order {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if err := b.scenario(ctx, sc, s); err != nil {
					logf("round %d, %s, %s: %v", r+1, sc, s.key, err)
				}
			}
			if sc == "retr" {
				if err := b.measureCeiling(ctx, r); err != nil {
					return nil, err
				}
			}
		}
	}
	return b, nil
}

// build compiles ftpsd and the load tool from the repository around the
// working directory.
func (e *env) build(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return errors.New("run from the ftpsd repository (go env GOMOD is empty)")
	}
	repo := filepath.Dir(strings.TrimSpace(string(out)))
	e.ftpsdBin = filepath.Join(e.work, "bin", "ftpsd")
	e.loadBin = filepath.Join(e.work, "bin", "ftpsd-load")
	for bin, pkg := range map[string]string{e.ftpsdBin: "./cmd/ftpsd", e.loadBin: "./test/load"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// load runs ftpsd-load against s and decodes its report.
func (b *bench) load(ctx context.Context, s *server, args ...string) (*loadReport, error) {
	cmd := exec.CommandContext(ctx, b.e.loadBin, b.loadArgs(s, args...)...)
	cmd.Env = append(os.Environ(), "FTPSD_LOAD_PASS="+b.e.pass)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	rep, perr := b.decode(s, stdout.Bytes())
	if perr != nil {
		return nil, fmt.Errorf("ftpsd-load %s: %v; %v\n%s", strings.Join(args, " "), err, perr, stderr.String())
	}
	return rep, nil
}

// loadGated is load with -start-on-stdin: gate runs between the tool's
// setup and its measured run.
func (b *bench) loadGated(ctx context.Context, s *server, gate func() error, args ...string) (*loadReport, error) {
	cmd := exec.CommandContext(ctx, b.e.loadBin, b.loadArgs(s, append([]string{"-start-on-stdin"}, args...)...)...)
	cmd.Env = append(os.Environ(), "FTPSD_LOAD_PASS="+b.e.pass)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var stderr []string
	var gateErr error
	sc := bufio.NewScanner(errPipe)
	for sc.Scan() {
		if sc.Text() == "ftpsd-load: ready" {
			gateErr = gate()
			io.WriteString(stdin, "go\n")
			continue
		}
		stderr = append(stderr, sc.Text())
	}
	stdin.Close()
	werr := cmd.Wait()
	rep, perr := b.decode(s, stdout.Bytes())
	switch {
	case perr != nil:
		return nil, fmt.Errorf("ftpsd-load %s: %v; %v\n%s", strings.Join(args, " "), werr, perr, strings.Join(stderr, "\n"))
	case gateErr != nil:
		return nil, gateErr
	}
	return rep, nil
}

func (b *bench) loadArgs(s *server, args ...string) []string {
	return append([]string{"-addr", s.addr(), "-user", benchUser, "-cafile", b.e.certFile,
		"-servername", "localhost", "-tls13", "-json"}, args...)
}

// decode reads a report and adds its TLS and resumption counts to the
// server's notes.
func (b *bench) decode(s *server, out []byte) (*loadReport, error) {
	var rep loadReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("no JSON report: %v", err)
	}
	l := b.logs[s.key]
	for k, n := range rep.ControlTLS {
		l.controlTLS[k] += n
	}
	for k, n := range rep.DataTLS {
		l.dataTLS[k] += n
	}
	l.dataConns += rep.DataConns
	l.resumed += rep.Resumed
	for k, n := range rep.Errors {
		l.errors[k] += n
		if _, ok := l.firstError[k]; !ok {
			l.firstError[k] = rep.FirstError[k]
		}
	}
	return &rep, nil
}

// scenario runs one measurement against one server.
func (b *bench) scenario(ctx context.Context, name string, s *server) error {
	o := b.o
	size := strconv.FormatInt(o.bigSize, 10) + "B"
	big := strconv.Itoa(o.bigOps)
	dur := o.duration.String()
	switch name {
	case "retr", "stor":
		args := []string{"-op", "retr", "-file", "big.bin", "-size", size, "-conns", "1", "-max-ops", big, "-duration", "10m", "-timeout", "2m"}
		if name == "stor" {
			args = []string{"-op", "stor", "-stor-new", "-size", size, "-conns", "1", "-max-ops", big, "-duration", "10m", "-timeout", "2m"}
		}
		// The CPU counter is read once the tool has logged in: the
		// figure is the transfer's, not the password hash's.
		var c0 time.Duration
		rep, err := b.loadGated(ctx, s, func() (err error) { c0, err = s.acct.cpu(); return err }, args...)
		if err != nil {
			return err
		}
		c1, err := s.acct.cpu()
		if err != nil {
			return err
		}
		if rep.OK == 0 || rep.Busy == 0 {
			return fmt.Errorf("no transfer succeeded: %v", rep.FirstError)
		}
		mbs := float64(rep.Bytes) / 1e6 / rep.Busy
		cpuGiB := (c1 - c0).Seconds() / (float64(rep.Bytes) / (1 << 30))
		b.add(name, s.key, mbs)
		b.add(name+"-cpu", s.key, cpuGiB)
		logf("%-8s %-5s %8.0f MB/s, %.2f s CPU per GiB", s.key, name, mbs, cpuGiB)
	case "sessions":
		rep, err := b.load(ctx, s, "-op", "session", "-dir", "list1000", "-conns", "8", "-duration", dur, "-timeout", "1m")
		if err != nil {
			return err
		}
		v := float64(rep.OK) / rep.Elapsed
		if rep.OK > 0 {
			b.logs[s.key].items = append(b.logs[s.key].items, rep.Items/rep.OK)
		}
		b.add(name, s.key, v)
		logf("%-8s sessions %8.1f/s (%d failed)", s.key, v, rep.Failed)
	case "small":
		rep, err := b.load(ctx, s, "-op", "retr", "-file", "small.bin", "-size", "4KiB", "-conns", "1", "-duration", dur, "-max-ops", "1000000", "-timeout", "30s")
		if err != nil {
			return err
		}
		v := float64(rep.OK) / rep.Elapsed
		b.add(name, s.key, v)
		logf("%-8s 4KiB     %8.1f RETR/s (%d failed)", s.key, v, rep.Failed)
	case "idle":
		return b.idle(ctx, s)
	}
	return nil
}

// idle opens o.idle logged-in sessions, waits until all are in and then
// o.settle, and reads the server's PSS: the per-session figure is the
// growth over the PSS before, divided by the sessions.
func (b *bench) idle(ctx context.Context, s *server) error {
	n := b.o.idle
	p0, _, err := s.acct.pss()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	// 8 logins at a time: Pure-FTPd hashes each password in the
	// session's own process with no bound, so 500 logins at once would be
	// 500 argon2id computations of 64 MiB each (32 GB).
	cmd := exec.CommandContext(ctx, b.e.loadBin, b.loadArgs(s, "-op", "idle", "-conns", strconv.Itoa(n), "-login-parallel", "8", "-duration", "10m", "-timeout", "10m")...)
	cmd.Env = append(os.Environ(), "FTPSD_LOAD_PASS="+b.e.pass)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	exited := make(chan struct{}) // the tool's stderr closed: it ended
	var tail []string
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "idle sessions are logged in") {
				close(ready)
			} else if len(tail) < 20 {
				tail = append(tail, sc.Text())
			}
		}
	}()
	var perSession float64 = math.NaN()
	var procs int
	select {
	case <-ready:
		took := time.Since(t0)
		b.idleFor[s.key] = append(b.idleFor[s.key], took)
		time.Sleep(b.o.settle)
		var p1 int64
		p1, procs, err = s.acct.pss()
		if err == nil {
			perSession = float64(p1-p0) / float64(n)
		}
		logf("%-8s idle     %d sessions in %s: PSS %.1f -> %.1f MiB over %d processes, %.1f KiB per session",
			s.key, n, took.Round(time.Second), float64(p0)/(1<<20), float64(p1)/(1<<20), procs, perSession/1024)
	case <-exited:
		err = errors.New("ftpsd-load ended before all idle sessions logged in")
	case <-ctx.Done():
		err = errors.New("the idle sessions did not all log in within 15 minutes")
	}
	cmd.Process.Signal(syscall.SIGINT) // ends the run, with a report
	<-exited                           // stderr read to the end before Wait closes it
	werr := cmd.Wait()
	if _, derr := b.decode(s, stdout.Bytes()); derr != nil && err == nil {
		err = fmt.Errorf("%v; %v; %s", werr, derr, strings.Join(tail, "\n"))
	}
	if !math.IsNaN(perSession) {
		b.add("idle", s.key, perSession)
	}
	// Let the server tear the sessions down before the next measurement.
	time.Sleep(2 * time.Second)
	return err
}

// metrics are the table's rows, in order.
var metrics = []metric{
	{"retr", "RETR %s, MB/s", true, func(v float64) string { return thousands(v) }},
	{"retr-cpu", "server CPU seconds per GiB sent", false, func(v float64) string { return fmt.Sprintf("%.2f s", v) }},
	{"stor", "STOR %s (new file), MB/s", true, func(v float64) string { return thousands(v) }},
	{"stor-cpu", "server CPU seconds per GiB received", false, func(v float64) string { return fmt.Sprintf("%.2f s", v) }},
	{"sessions", "sessions/s, 8 clients (connect, AUTH TLS, login, PBSZ/PROT, EPSV, LIST of 1,000 files, QUIT)", true, func(v float64) string { return fmt.Sprintf("%.1f", v) }},
	{"small", "4 KiB RETRs/s, one session, each on a fresh resumed data connection", true, func(v float64) string { return thousands(v) }},
	{"idle", "memory per idle logged-in session (PSS, %d sessions)", false, func(v float64) string { return kib(v) }},
}

// median of the values; NaN when there are none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// thousands formats v rounded, with commas: 1,304.
func thousands(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func kib(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1<<20:
		return fmt.Sprintf("%.2f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", v/1024)
}

// ratio compares ftpsd with the best other server of the row: "1.11×
// Pure-FTPd" (above 1 is better for ftpsd, whichever way the row counts).
func (b *bench) ratio(m metric, med map[string]float64) string {
	f, ok := med["ftpsd"]
	if !ok || math.IsNaN(f) {
		return "–"
	}
	best, bestKey := math.NaN(), ""
	for _, s := range b.servers {
		v := med[s.key]
		if s.key == "ftpsd" || math.IsNaN(v) {
			continue
		}
		if math.IsNaN(best) || (m.higher && v > best) || (!m.higher && v < best) {
			best, bestKey = v, s.key
		}
	}
	if bestKey == "" || best == 0 || f == 0 {
		return "–"
	}
	r := f / best
	if !m.higher {
		r = best / f
	}
	return fmt.Sprintf("%.2f× %s", r, b.title(bestKey))
}

func (b *bench) title(key string) string {
	for _, s := range b.servers {
		if s.key == key {
			return strings.Fields(s.title)[0]
		}
	}
	return key
}

// print writes the table of medians, then the notes.
func (b *bench) print(w io.Writer, took time.Duration) {
	o := b.o
	mode := "each server's own TLS 1.3 cipher suite"
	if o.sameSuite {
		mode = "TLS_AES_128_GCM_SHA256 on every server (-same-suite)"
	}
	fmt.Fprintf(w, "\n%d round(s), medians (idle memory: %d round(s)); loopback, TLS 1.3, %s; took %s\n\n",
		o.rounds, min(o.idleRounds, o.rounds), mode, took.Round(time.Second))
	fmt.Fprint(w, "| |")
	for _, s := range b.servers {
		fmt.Fprintf(w, " %s |", s.title)
	}
	fmt.Fprint(w, " ftpsd vs the best other |\n|---|")
	for range b.servers {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprint(w, "---|\n")
	ceiling := median(b.ceiling)
	for _, m := range metrics {
		if b.values[m.key] == nil {
			continue
		}
		label := m.label
		switch m.key {
		case "retr", "stor":
			label = fmt.Sprintf(label, sizeName(o.bigSize))
		case "idle":
			label = fmt.Sprintf(label, o.idle)
		}
		med := map[string]float64{}
		fmt.Fprintf(w, "| %s |", label)
		for _, s := range b.servers {
			med[s.key] = median(b.values[m.key][s.key])
			fmt.Fprintf(w, " %s |", m.format(med[s.key]))
		}
		r := b.ratio(m, med)
		if m.key == "retr" && !math.IsNaN(ceiling) && !math.IsNaN(med["ftpsd"]) {
			r += fmt.Sprintf("; %.0f %% of the ceiling", 100*med["ftpsd"]/ceiling)
		}
		fmt.Fprintf(w, " %s |\n", r)
	}
	if len(b.ceiling) > 0 {
		fmt.Fprintf(w, "| Go TLS 1.3 loopback ceiling (%s, one process), MB/s | %s |", b.ceilTLS, thousands(ceiling))
		for range b.servers {
			fmt.Fprint(w, " |")
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "\nPer round (in run order):\n")
	for _, m := range metrics {
		for _, s := range b.servers {
			v := b.values[m.key][s.key]
			if len(v) == 0 {
				continue
			}
			parts := make([]string, len(v))
			for i, x := range v {
				parts[i] = m.format(x)
			}
			fmt.Fprintf(w, "  %-9s %-9s %s\n", m.key, s.key, strings.Join(parts, ", "))
		}
	}
	if len(b.ceiling) > 0 {
		parts := make([]string, len(b.ceiling))
		for i, x := range b.ceiling {
			parts[i] = thousands(x)
		}
		fmt.Fprintf(w, "  %-9s %-9s %s\n", "ceiling", "go", strings.Join(parts, ", "))
	}

	fmt.Fprintf(w, "\nPer server:\n")
	for _, s := range b.servers {
		l := b.logs[s.key]
		fmt.Fprintf(w, "- %s (%s; CPU and PSS: %s)\n", s.title, s.addr(), s.acct.method())
		fmt.Fprintf(w, "  control TLS: %s\n", tally(l.controlTLS))
		fmt.Fprintf(w, "  data TLS:    %s\n", tally(l.dataTLS))
		fmt.Fprintf(w, "  data connections that resumed the control session: %d of %d\n", l.resumed, l.dataConns)
		if len(l.items) > 0 {
			fmt.Fprintf(w, "  LIST lines per listing: %d\n", l.items[0])
		}
		if d := b.idleFor[s.key]; len(d) > 0 {
			fmt.Fprintf(w, "  %d idle logins took %s\n", o.idle, joinDurations(d))
		}
		for _, n := range s.notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
		for _, k := range slices.Sorted(maps.Keys(l.errors)) {
			fmt.Fprintf(w, "  errors %s: %d, e.g. %s\n", k, l.errors[k], l.firstError[k])
		}
	}
}

func tally(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func joinDurations(d []time.Duration) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = x.Round(100 * time.Millisecond).String()
	}
	return strings.Join(parts, ", ")
}

func sizeName(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}
