package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(*options) bool
	}{
		{"defaults: full mode", nil, "", func(o *options) bool {
			return o.rounds == 3 && o.bigSize == 1<<30 && o.idle == 200 && len(o.servers) == 4 && len(o.scenarios) == 5
		}},
		{"quick", []string{"-quick"}, "", func(o *options) bool {
			return o.rounds == 1 && o.bigSize == 256<<20 && o.duration == 2*time.Second && o.idle == 30
		}},
		{"quick keeps what is set", []string{"-quick", "-rounds", "2", "-idle", "7"}, "", func(o *options) bool {
			return o.rounds == 2 && o.idle == 7 && o.bigSize == 256<<20
		}},
		{"lists", []string{"-servers", "ftpsd, vsftpd,ftpsd", "-scenarios", "retr"}, "", func(o *options) bool {
			return strings.Join(o.servers, ",") == "ftpsd,vsftpd" && len(o.scenarios) == 1
		}},
		{"idle runs first", []string{"-scenarios", "retr,idle,small"}, "", func(o *options) bool {
			return strings.Join(o.scenarios, ",") == "idle,retr,small"
		}},
		{"unknown server", []string{"-servers", "wu-ftpd"}, `unknown server "wu-ftpd"`, nil},
		{"unknown scenario", []string{"-scenarios", "mkd"}, `unknown measurement "mkd"`, nil},
		{"no server", []string{"-servers", ","}, "none given", nil},
		{"rounds", []string{"-rounds", "0"}, "-rounds 0", nil},
		{"relative work", []string{"-work", "tmp"}, "absolute path", nil},
		{"huge transfer", []string{"-big-mib", "100000"}, "-big-mib", nil},
		{"positional", []string{"x"}, "unexpected argument", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseArgs(tt.args, io.Discard)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one with %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case !tt.check(o):
				t.Errorf("options %+v", o)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis, as a process may
	// set it.
	line := "4242 (vsftpd) x) S 4000 4242 4242 0 -1 4194560 100 0 0 0 7 3 11 5 20 0 1 0 100 0 0\n"
	p, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{pid: 4242, ppid: 4000, utime: 7, stime: 3, cutime: 11, cstime: 5}
	if p != want {
		t.Errorf("parseStat = %+v, want %+v", p, want)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Error("parseStat(garbage): no error")
	}
}

// TestProcAccounting reads this process's CPU and PSS the /proc way (the
// fallback when no cgroup can be made): both are positive, and CPU grows
// with work.
func TestProcAccounting(t *testing.T) {
	a := &accounting{pid: os.Getpid()}
	c0, err := a.cpu()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		sum = sha256.Sum256(sum[:])
	}
	c1, err := a.cpu()
	if err != nil {
		t.Fatal(err)
	}
	if c1 <= c0 {
		t.Errorf("CPU %s then %s after 300 ms of hashing", c0, c1)
	}
	pss, n, err := a.pss()
	if err != nil || pss <= 0 || n < 1 {
		t.Errorf("pss = %d over %d processes, %v", pss, n, err)
	}
}

func TestTableFigures(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
	for v, want := range map[float64]string{1304.4: "1,304", 999: "999", 1234567: "1,234,567", math.NaN(): "–"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
	b := &bench{servers: []*server{{key: "vsftpd", title: "vsftpd 3.0.3"}, {key: "pureftpd", title: "Pure-FTPd 1.0.50"}, {key: "ftpsd", title: "ftpsd"}}}
	higher := metric{higher: true}
	if got := b.ratio(higher, map[string]float64{"vsftpd": 684, "pureftpd": 1304, "ftpsd": 1449}); got != "1.11× Pure-FTPd" {
		t.Errorf("ratio (higher is better) = %q", got)
	}
	// Lower is better: ftpsd at half the best other's figure is 2×.
	if got := b.ratio(metric{}, map[string]float64{"vsftpd": 1.48, "pureftpd": 0.8, "ftpsd": 0.4}); got != "2.00× Pure-FTPd" {
		t.Errorf("ratio (lower is better) = %q", got)
	}
	if got := b.ratio(higher, map[string]float64{"vsftpd": math.NaN(), "pureftpd": math.NaN(), "ftpsd": 1}); got != "–" {
		t.Errorf("ratio without others = %q", got)
	}
}

// TestFtpsdAlone runs the whole command against ftpsd only, with small
// sizes (a few seconds; no packages, root not needed): every row gets a
// figure, every data connection resumed, nothing failed.
func TestFtpsdAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ftpsd and runs it for several seconds")
	}
	o, err := parseArgs([]string{"-quick", "-servers", "ftpsd", "-work", filepath.Join(t.TempDir(), "w"),
		"-big-mib", "4", "-duration", "1s", "-idle", "4", "-settle", "0s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b, err := run(t.Context(), o, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metrics {
		if v := b.values[m.key]["ftpsd"]; len(v) != 1 || math.IsNaN(v[0]) {
			t.Errorf("%s: %v, want one figure", m.key, v)
		}
	}
	if len(b.ceiling) != 2 || b.ceiling[0] <= 0 {
		t.Errorf("ceiling %v, want two figures (before and after the RETRs)", b.ceiling)
	}
	l := b.logs["ftpsd"]
	if l.dataConns == 0 || l.resumed != l.dataConns {
		t.Errorf("%d of %d data connections resumed", l.resumed, l.dataConns)
	}
	if len(l.errors) > 0 {
		t.Errorf("errors: %v (e.g. %v)", l.errors, l.firstError)
	}
	for k := range l.controlTLS {
		if !strings.HasPrefix(k, "TLS 1.3 ") {
			t.Errorf("control connection negotiated %s", k)
		}
	}
	if !strings.Contains(out.String(), "| RETR 4 MiB, MB/s |") {
		t.Errorf("no RETR row in the table")
	}
}
