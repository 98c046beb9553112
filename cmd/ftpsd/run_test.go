package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// result is what one run() call produced.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line args with stdin and returns its result.
func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// unprivileged is a user id for serveCommand: the tests may run as root,
// which serve refuses.
const unprivileged = 1000

// serveAs runs "ftpsd serve args..." as user euid until it returns (a
// configuration or listen error; a server that starts runs until the
// test's context ends).
func serveAs(t *testing.T, euid int, args ...string) result {
	t.Helper()
	var stderr bytes.Buffer
	code := serveCommand(t.Context(), args, &stderr, euid)
	return result{code, "", stderr.String()}
}

// TestServeRefusesRoot: serve started as root exits 1 with the ways out.
func TestServeRefusesRoot(t *testing.T) {
	r := serveAs(t, 0, "-config", exampleInTemp(t))
	if r.code != exitError {
		t.Errorf("exit code %d, want %d", r.code, exitError)
	}
	for _, want := range []string{"ftpsd: refusing to run as root", "docs/deploy/ftpsd.service", "setcap cap_net_bind_service=+ep", "above 1023"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// TestConfigMistakesRefusedAlike: every mistake makes check-config and serve
// exit 1 with the same message, naming the file, the key (and the line, or
// the user by name) and the problem.
func TestConfigMistakesRefusedAlike(t *testing.T) {
	tests := []struct {
		name   string
		oldNew []string
		setup  func(t *testing.T, dir string) // before the commands run
		want   []string
	}{
		{"duration without unit", []string{`login_timeout = "1m"`, `login_timeout = 60`, `data_timeout = "1m"`, `data_timeout = 30`},
			nil, []string{"{line of login_timeout = 60}: server.login_timeout: a duration needs a unit: use a string such as \"60s\"", "server.data_timeout: a duration needs a unit"}},
		{"optional duration without unit", []string{`login_cache_ttl = "5m"`, `login_cache_ttl = 300`}, nil,
			[]string{"{line of login_cache_ttl = 300}: auth.login_cache_ttl: a duration needs a unit"}},
		{"login cache too long", []string{`login_cache_ttl = "5m"`, `login_cache_ttl = "24h"`}, nil,
			[]string{"auth.login_cache_ttl: 24h0m0s: at most 1h0m0s"}},
		{"duration with a bad unit", []string{`idle_timeout = "5m"`, `idle_timeout = "5 minutes"`}, nil, []string{"server.idle_timeout"}},
		{"unknown key", []string{`banner =`, `baner =`}, nil, []string{`unknown key "server.baner"`}},
		{"home is a file", nil, func(t *testing.T, dir string) {
			home := filepath.Join(dir, "var", "home", "demo")
			if err := os.MkdirAll(filepath.Dir(home), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(home, []byte("not a directory"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{`users "demo": home: "`, `var/home/demo" is not a directory`}},
		{"more prelogin than connections", []string{`max_prelogin_connections = 25`, `max_prelogin_connections = 500`}, nil,
			[]string{"server.max_prelogin_connections: 500 is more than server.max_connections (100)"}},
		{"rate not a size", []string{`total_upload_rate = "0"`, `total_upload_rate = "2 MB/s"`}, nil,
			[]string{`limits.total_upload_rate: "2 MB/s" is not a size`}},
		{"user's quota not a size", []string{"upload_rate = \"0\"\nquota = \"0\"", "upload_rate = \"0\"\nquota = \"lots\""}, nil,
			[]string{`users "demo".quota: "lots" is not a size`}},
		{"user's network not a CIDR", []string{"quota_files = 0\nallowed_networks = []", "quota_files = 0\nallowed_networks = [\"10.0.0.0/33\"]"}, nil,
			[]string{`users "demo".allowed_networks: "10.0.0.0/33" is not a CIDR`}},
		{"negative max_sessions", []string{`max_sessions = 10`, `max_sessions = -1`}, nil,
			[]string{`limits.max_sessions: -1: must not be negative`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := exampleInTemp(t, tt.oldNew...)
			if tt.setup != nil {
				tt.setup(t, filepath.Dir(path))
			}
			check := runCmd(t, "", "check-config", "-config", path)
			serve := serveAs(t, unprivileged, "-config", path)
			for name, r := range map[string]result{"check-config": check, "serve": serve} {
				if r.code != exitError {
					t.Errorf("%s: exit code %d, want %d\n%s", name, r.code, exitError, r.stderr)
				}
				for _, want := range append([]string{"ftpsd: " + path}, tt.want...) {
					want = withLine(t, path, want)
					if !strings.Contains(r.stderr, want) {
						t.Errorf("%s: stderr lacks %q:\n%s", name, want, r.stderr)
					}
				}
			}
			if check.stderr != serve.stderr {
				t.Errorf("check-config and serve disagree:\n%s\nvs\n%s", check.stderr, serve.stderr)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), "var", "state")); err == nil {
				t.Error("a refused config left a state directory")
			}
		})
	}
}

// withLine replaces "{line of TEXT}" in want with ":N" where N is the line
// of the config file at path that holds TEXT.
func withLine(t *testing.T, path, want string) string {
	t.Helper()
	i, j := strings.Index(want, "{line of "), strings.Index(want, "}")
	if i < 0 || j < i {
		return want
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for n, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, want[i+len("{line of "):j]) {
			return want[:i] + ":" + strconv.Itoa(n+1) + want[j+1:]
		}
	}
	t.Fatalf("%q not in %s", want[i:j+1], path)
	return ""
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no args", nil, exitUsage, "", "Commands:"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `ftpsd: unknown command "frobnicate"`},
		{"help", []string{"help"}, exitOK, "check-config", ""},
		{"-h", []string{"-h"}, exitOK, "hash-password", ""},
		{"serve -h", []string{"serve", "-h"}, exitOK, "", "Example:\n  ftpsd serve -config"},
		{"check-config -h", []string{"check-config", "-h"}, exitOK, "", "-config FILE"},
		{"reload -h", []string{"reload", "-h"}, exitOK, "", "SIGHUP"},
		{"user -h", []string{"user", "-h"}, exitOK, "", "passwd"},
		{"hash-password -h", []string{"hash-password", "-h"}, exitOK, "", "argon2id"},
		{"version -h", []string{"version", "-h"}, exitOK, "", "Usage: ftpsd version"},
		{"serve without -config", []string{"serve"}, exitUsage, "", "missing -config FILE"},
		{"check-config without -config", []string{"check-config"}, exitUsage, "", "missing -config FILE"},
		{"unknown flag", []string{"serve", "-conf", "x"}, exitUsage, "", "flag provided but not defined: -conf"},
		{"extra argument", []string{"check-config", "-config", "x.toml", "y"}, exitUsage, "", `unexpected argument "y"`},
		{"missing config file", []string{"check-config", "-config", "/nonexistent/ftpsd.toml"}, exitError, "", "ftpsd: open /nonexistent/ftpsd.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstderr: %s", r.code, tt.wantCode, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.wantStdout) {
				t.Errorf("stdout does not contain %q:\n%s", tt.wantStdout, r.stdout)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, r.stderr)
			}
			if tt.wantCode == exitUsage && r.stdout != "" {
				t.Errorf("usage error wrote to stdout: %q", r.stdout)
			}
		})
	}
}

func TestRunVersion(t *testing.T) {
	r := runCmd(t, "", "version")
	if r.code != exitOK {
		t.Fatalf("exit code = %d, stderr: %s", r.code, r.stderr)
	}
	// The version is "dev" here, or a module version where the build
	// stamped one; the Go version is always there.
	if !strings.HasPrefix(r.stdout, "ftpsd ") || !strings.Contains(r.stdout, " "+runtime.Version()+" ") {
		t.Errorf("version printed %q, want \"ftpsd VERSION %s GOOS/GOARCH\"", r.stdout, runtime.Version())
	}
}

func TestRunHashPassword(t *testing.T) {
	tests := []struct {
		name     string
		stdin    string
		wantPW   string // "" means the command must fail
		wantErrs string
	}{
		{"no newline", "secret", "secret", ""},
		{"newline", "secret\n", "secret", ""},
		{"CRLF", "secret\r\n", "secret", ""},
		{"only the first line", "first\nsecond\n", "first", ""},
		{"inner and trailing spaces kept", " pass word \n", " pass word ", ""},
		{"empty", "", "", "empty password"},
		{"empty line", "\n", "", "empty password"},
		{"too long", strings.Repeat("x", maxPasswordLen+1), "", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, tt.stdin, "hash-password")
			if tt.wantPW == "" {
				if r.code != exitError || !strings.HasPrefix(r.stderr, "ftpsd: ") || !strings.Contains(r.stderr, tt.wantErrs) || r.stdout != "" {
					t.Fatalf("got exit %d stdout %q stderr %q, want exit 1 and %q", r.code, r.stdout, r.stderr, tt.wantErrs)
				}
				return
			}
			if r.code != exitOK {
				t.Fatalf("exit code = %d, stderr: %s", r.code, r.stderr)
			}
			hash, ok := strings.CutSuffix(r.stdout, "\n")
			if !ok || strings.Contains(hash, "\n") {
				t.Fatalf("stdout = %q, want one line", r.stdout)
			}
			if !strings.HasPrefix(hash, "$argon2id$") {
				t.Errorf("hash %q is not argon2id", hash)
			}
			for _, pw := range []string{tt.wantPW, tt.stdin} {
				ok, err := auth.VerifyPassword(hash, pw)
				if err != nil {
					t.Fatalf("VerifyPassword: %v", err)
				}
				if want := pw == tt.wantPW; ok != want {
					t.Errorf("VerifyPassword(hash, %q) = %v, want %v", pw, ok, want)
				}
			}
		})
	}
}

// exampleInTemp copies config.example.toml into a temporary directory, with
// edits applied as old/new pairs, and returns the copy's path.
func exampleInTemp(t *testing.T, oldNew ...string) string {
	t.Helper()
	text := readExample(t)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(text, oldNew[i]) {
			t.Fatalf("%q not in the example", oldNew[i])
		}
		text = strings.Replace(text, oldNew[i], oldNew[i+1], 1)
	}
	return writeConfig(t, text)
}

func TestRunCheckConfig(t *testing.T) {
	path := exampleInTemp(t)
	r := runCmd(t, "", "check-config", "-config", path)
	if r.code != exitOK {
		t.Fatalf("exit code = %d, stderr: %s", r.code, r.stderr)
	}
	dir := filepath.Dir(path)
	for _, want := range []string{
		"2121/tcp", "50000-50100/tcp", // the firewall ports
		"127.0.0.1:2121",
		"self-signed", "localhost", "TLS 1.2",
		"required", // tls resumption
		"demo", filepath.Join(dir, "var", "home", "demo"),
		"list,read,write,delete,mkdir,rename",
		"sessions 10, download unlimited, upload unlimited, quota none, networks any",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "$argon2id$") || strings.Contains(r.stderr, "$argon2id$") {
		t.Errorf("check-config printed a password hash:\n%s", r.stdout)
	}
	// check-config writes nothing: the self-signed certificate that serve
	// will generate is named (under the config's directory, not the
	// working directory) but not created.
	if want := filepath.Join(dir, "var", "state", "tls"); !strings.Contains(r.stdout, "not generated yet: serve generates it at start into "+want) {
		t.Errorf("check-config does not say where serve generates the certificate (%s):\n%s", want, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "var", "state")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("check-config created the state dir: %v", err)
	}
}

// TestRunCheckConfigLimits: check-config prints each user's limits after
// the [limits] defaults, and the server-wide caps.
func TestRunCheckConfigLimits(t *testing.T) {
	path := exampleInTemp(t,
		`download_rate = "0"`, `download_rate = "2MiB"`, // the [limits] default
		"download_rate = \"0\"\nupload_rate = \"0\"\nquota = \"0\"", "upload_rate = \"500KB\"\nquota = \"1.5GiB\"", // the user's own
		"quota_files = 0\nallowed_networks = []", "quota_files = 100\nallowed_networks = [\"127.0.0.1\", \"192.0.2.0/24\"]",
		`total_download_rate = "0"`, `total_download_rate = "50MiB"`,
	)
	r := runCmd(t, "", "check-config", "-config", path)
	if r.code != exitOK {
		t.Fatalf("exit code = %d, stderr: %s", r.code, r.stderr)
	}
	// Compared with the table's padding collapsed.
	var lines []string
	for line := range strings.Lines(r.stdout) {
		lines = append(lines, strings.Join(strings.Fields(line), " "))
	}
	for _, want := range []string{
		"limits sessions 10, download 2MiB/s, upload 488.3KiB/s, quota 1.5GiB and 100 files, networks 127.0.0.1/32 192.0.2.0/24",
		"total download 50MiB/s",
		"total upload unlimited",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestRunCheckConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		oldNew []string
		want   string
	}{
		{"bad duration", []string{`idle_timeout = "5m"`, `idle_timeout = "5 minutes"`}, "server.idle_timeout"},
		{"unknown key", []string{`banner =`, `baner =`}, `unknown key "server.baner"`},
		{"single passive port", []string{`ports = "50000-50100"`, `ports = "50000"`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := exampleInTemp(t, tt.oldNew...)
			r := runCmd(t, "", "check-config", "-config", path)
			if tt.want == "" {
				if r.code != exitOK || !strings.Contains(r.stdout, "50000/tcp") {
					t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code != exitError {
				t.Errorf("exit code = %d, want %d", r.code, exitError)
			}
			if !strings.HasPrefix(r.stderr, "ftpsd: ") || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want \"ftpsd: ...%s...\"", r.stderr, tt.want)
			}
		})
	}
}

// logLine returns the first JSON log record with message msg, or nil.
func logLine(log, msg string) map[string]any {
	for _, line := range strings.Split(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

// waitServeExit waits for a serve whose context was cancelled to end (its
// exit code on done), and fails the test unless it ends with exit code 0
// within 15 s.
func waitServeExit(t *testing.T, done <-chan int, stderr *testutil.LogBuffer) {
	t.Helper()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exit code = %d, want 0\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop after cancel:\n%s", stderr.String())
	}
}

// inProcess returns the edits of the example configuration (old, new
// pairs for exampleInTemp) that let serve run in a test, then more: an
// ephemeral port, JSON logs to read back, a short shutdown.
func inProcess(more ...string) []string {
	return append([]string{
		`listen = "127.0.0.1:2121"`, `listen = "127.0.0.1:0"`,
		`format = "text"`, `format = "json"`,
		`shutdown_timeout = "30s"`, `shutdown_timeout = "5s"`,
	}, more...)
}

func TestRunServe(t *testing.T) {
	path := exampleInTemp(t, inProcess()...)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testutil.LogBuffer
	done := make(chan int, 1)
	go func() { done <- serveCommand(ctx, []string{"-config", path}, &stderr, unprivileged) }()

	var addr string
	waitFor(t, 20*time.Second, `a "listening" log line`, &stderr, done, func() bool {
		if rec := logLine(stderr.String(), "listening"); rec != nil {
			if addr, _ = rec["addr"].(string); addr == "" {
				t.Fatalf("listening record has no addr: %v", rec)
			}
		}
		return addr != ""
	})

	conn := ftpstest.Dial(t, addr)
	defer conn.Close()

	// SIGTERM cancels the context; the session that stays connected is
	// told 421 by the graceful shutdown rather than cut.
	cancel()
	if code, msg, err := conn.TryRead(); err != nil || code != 421 {
		t.Errorf("after shutdown the idle session got %d %q, %v; want 421", code, msg, err)
	}
	waitServeExit(t, done, &stderr)
	if logLine(stderr.String(), "stopped") == nil {
		t.Errorf("no \"stopped\" log line:\n%s", stderr.String())
	}
	if stdout.String() != "" {
		t.Errorf("serve wrote to stdout: %q", stdout.String())
	}
}

func TestRunServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := exampleInTemp(t, `listen = "127.0.0.1:2121"`, `listen = "`+ln.Addr().String()+`"`)
	r := serveAs(t, unprivileged, "-config", path)
	if r.code != exitError || !strings.Contains(r.stderr, "ftpsd: server.listen:") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 with ftpsd: server.listen:", r.code, r.stderr)
	}
}

// TestRunCheckConfigACMEAsksNoCA: check-config in acme mode reads only
// storage; the CA here is unreachable and must not be contacted.
func TestRunCheckConfigACMEAsksNoCA(t *testing.T) {
	path := exampleInTemp(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		`mode = "self-signed"`, `mode = "acme"`,
		`domains = []`, `domains = ["ftp.example.com"]`,
		`ca = "production"`, `ca = "https://127.0.0.1:1/directory"`,
		`agree_to_terms = false`, `agree_to_terms = true`,
		`challenges = ["http-01"]`, `challenges = ["http-01", "tls-alpn-01"]`,
	).Replace(string(b))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, "", "check-config", "-config", path)
	if r.code != exitOK {
		t.Fatalf("exit code = %d, stderr: %s", r.code, r.stderr)
	}
	for _, want := range []string{"acme", "ftp.example.com", "not obtained yet", "https://127.0.0.1:1/directory",
		"80/tcp", "443/tcp", filepath.Join(filepath.Dir(path), "var", "state", "acme")} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, r.stdout)
		}
	}
}
