package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

// The files of docs/deploy, relative to this package's directory.
const (
	deployDir        = "../../docs/deploy"
	repoRoot         = "../.."
	deployUnit       = deployDir + "/ftpsd.service"
	deployLogrotate  = deployDir + "/logrotate"
	deployHAProxy    = deployDir + "/haproxy.cfg"
	deployDockerfile = deployDir + "/Dockerfile"
	deployDockerConf = deployDir + "/config.docker.toml"
)

// maxExposure is the highest "systemd-analyze security" score (times ten)
// the unit may reach: 1.4 now. What is left needs the network, port 21
// (ambient CAP_NET_BIND_SERVICE, no PrivateUsers) or a file mode for
// group-readable uploads; a new lapse shows up as a higher score.
const maxExposure = "14"

// deployTool returns the path of an external checker. Missing, it fails
// the test under CI=true (test/run.sh installs it) and skips it otherwise.
func deployTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	// logrotate lives in /usr/sbin, which a user's PATH may lack.
	if p := "/usr/sbin/" + name; unix.Access(p, unix.X_OK) == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not on PATH or in /usr/sbin and CI=true (bash test/run.sh installs it): %v", name, err)
	}
	t.Skipf("%s is not installed: skipping (bash test/run.sh installs it; with CI=true this fails)", name)
	return ""
}

// rewrite copies src into a new temporary directory under the name base,
// applying the replacements old -> new, each of which must occur, so that
// a change of the deployed file cannot silently turn a rewrite into a no-op.
func rewrite(t *testing.T, src, base string, oldnew ...string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(s, oldnew[i]) {
			t.Fatalf("%s no longer contains %q: update the test", src, oldnew[i])
		}
		s = strings.ReplaceAll(s, oldnew[i], oldnew[i+1])
	}
	dst := filepath.Join(t.TempDir(), base)
	if err := os.WriteFile(dst, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestDeployFilesPassTheirCheckers runs the system's own checkers over the
// files in docs/deploy: systemd-analyze for the unit, logrotate for its
// snippet, haproxy for the balancer example. Any complaint fails, not only a non-zero exit: both tools
// report unknown keys on stderr and still exit 0.
func TestDeployFilesPassTheirCheckers(t *testing.T) {
	tests := []struct {
		name string
		tool string
		// prepare returns the arguments for tool, run from a fresh
		// directory.
		prepare func(t *testing.T) []string
		// complaint matches output lines that are a failure; nil means
		// any output is.
		complaint *regexp.Regexp
	}{
		{
			name: "systemd-analyze verify",
			tool: "systemd-analyze",
			prepare: func(t *testing.T) []string {
				// verify wants ExecStart's binary to exist; any
				// executable will do, and the test binary is one.
				exe, err := os.Executable()
				if err != nil {
					t.Fatal(err)
				}
				unit := rewrite(t, deployUnit, "ftpsd.service", "ExecStart=/usr/local/bin/ftpsd ", "ExecStart="+exe+" ")
				return []string{"verify", "--man=no", unit}
			},
		},
		{
			name: "systemd-analyze security",
			tool: "systemd-analyze",
			prepare: func(t *testing.T) []string {
				unit, err := filepath.Abs(deployUnit)
				if err != nil {
					t.Fatal(err)
				}
				// --threshold makes a higher exposure exit non-zero.
				return []string{"security", "--offline=true", "--no-pager", "--threshold=" + maxExposure, unit}
			},
			complaint: regexp.MustCompile(`(?i)unknown|fail|error|ignoring`),
		},
		{
			// test/cluster_test.go runs it, on loopback, in front
			// of two nodes.
			name: "haproxy -c",
			tool: "haproxy",
			prepare: func(t *testing.T) []string {
				cfg, err := filepath.Abs(deployHAProxy)
				if err != nil {
					t.Fatal(err)
				}
				return []string{"-c", "-f", cfg}
			},
			complaint: regexp.MustCompile(`\[(WARNING|ALERT)\]`),
		},
		{
			name: "logrotate -d",
			tool: "logrotate",
			prepare: func(t *testing.T) []string {
				// Rotate as the user running the test: the ftpsd
				// user need not exist here.
				u, err := user.Current()
				if err != nil {
					t.Fatal(err)
				}
				g, err := user.LookupGroupId(u.Gid)
				if err != nil {
					t.Fatal(err)
				}
				logs := t.TempDir()
				conf := rewrite(t, deployLogrotate, "ftpsd",
					"/var/log/ftpsd", logs,
					"su ftpsd ftpsd", "su "+u.Username+" "+g.Name,
					"create 0640 ftpsd ftpsd", "create 0640 "+u.Username+" "+g.Name)
				for _, name := range []string{"ftpsd.log", "xferlog"} {
					if err := os.WriteFile(filepath.Join(logs, name), []byte("line\n"), 0o640); err != nil {
						t.Fatal(err)
					}
				}
				// -d only reads and reports; -s keeps the system's
				// state file out of it.
				return []string{"-d", "-s", filepath.Join(t.TempDir(), "state"), conf}
			},
			complaint: regexp.MustCompile(`(?i)^error:`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tool := deployTool(t, tt.tool)
			args := tt.prepare(t)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, tool, args...)
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", tt.tool, strings.Join(args, " "), err, out)
			}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if line := sc.Text(); tt.complaint == nil && strings.TrimSpace(line) != "" ||
					tt.complaint != nil && tt.complaint.MatchString(line) {
					t.Errorf("%s complains: %s", tt.tool, line)
				}
			}
		})
	}
}

// TestDeployUnitFileLimit: the unit sets LimitNOFILE to one number (soft =
// hard: its SystemCallFilter refuses setrlimit, so ftpsd cannot raise a
// lower soft limit itself), high enough for 10,000 sessions transferring
// at once by the count that serve's start-up check uses.
func TestDeployUnitFileLimit(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(deployUnit)
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "LimitNOFILE="); ok {
			values = append(values, v)
		}
	}
	if len(values) != 1 {
		t.Fatalf("LimitNOFILE set %d times (%q), want once", len(values), values)
	}
	n, err := strconv.ParseUint(values[0], 10, 64)
	if err != nil {
		t.Fatalf("LimitNOFILE=%s: want one number (soft = hard), got %v", values[0], err)
	}
	if c := checkFileLimit(n, 10000); c.capsIdle || c.capsTransfers {
		t.Errorf("LimitNOFILE=%d allows %d sessions transferring at once, want at least 10,000", n, c.transferring)
	}
}

// TestDeployLogrotatePolicy checks what logrotate -d cannot: the rules
// that make rotation lose no line with ftpsd's SIGUSR1 reopen.
func TestDeployLogrotatePolicy(t *testing.T) {
	data, err := os.ReadFile(deployLogrotate)
	if err != nil {
		t.Fatal(err)
	}
	var directives []string // non-comment lines, trimmed
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			directives = append(directives, line)
		}
	}
	conf := strings.Join(directives, "\n")
	tests := []struct {
		name string
		re   string
		want bool
	}{
		{"rotates the main log", `(?m)^/var/log/ftpsd/\*\.log\b`, true},
		{"rotates the xferlog", `(?m)\s/var/log/ftpsd/xferlog\b`, true},
		{"reopens with SIGUSR1", `(?m)^systemctl kill -s USR1 ftpsd\.service\b`, true},
		{"does not compress the file still open", `(?m)^delaycompress$`, true},
		{"no copytruncate", `(?m)^copytruncate`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := regexp.MustCompile(tt.re).MatchString(conf); got != tt.want {
				t.Errorf("%s: /%s/ matched = %v, want %v", deployLogrotate, tt.re, got, tt.want)
			}
		})
	}
}

// dockerInstruction is one instruction of a Dockerfile.
type dockerInstruction struct {
	line int
	name string   // upper case: COPY, EXPOSE, ...
	args []string // flags (--from=...) included
}

// parseDockerfile splits a Dockerfile into instructions, joining "\"
// continuation lines and dropping comments. JSON-form arguments
// (["a", "b"]) come back as their elements.
func parseDockerfile(t *testing.T, path string) []dockerInstruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out   []dockerInstruction
		buf   strings.Builder
		start int
	)
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || trimmed == "" && buf.Len() == 0 {
			continue
		}
		if buf.Len() == 0 {
			start = i + 1
		}
		cont := strings.HasSuffix(trimmed, `\`)
		buf.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
		if cont {
			continue
		}
		fields := strings.Fields(buf.String())
		buf.Reset()
		if len(fields) == 0 {
			continue
		}
		in := dockerInstruction{line: start, name: strings.ToUpper(fields[0])}
		rest := strings.TrimSpace(strings.Join(fields[1:], " "))
		var js []string
		if strings.HasPrefix(rest, "[") && json.Unmarshal([]byte(rest), &js) == nil {
			in.args = js
		} else {
			in.args = fields[1:]
		}
		out = append(out, in)
	}
	return out
}

// dockerIgnored reports whether the build context leaves out rel (a
// slash-separated path from the repository root), by the rules of a
// .dockerignore: patterns in order, the last match wins, "!" re-includes,
// and a pattern that matches a directory leaves out all below it.
func dockerIgnored(patterns []string, rel string) bool {
	ignored := false
	for _, p := range patterns {
		negate := strings.HasPrefix(p, "!")
		p = path.Clean(strings.TrimPrefix(p, "!"))
		for dir := rel; dir != "."; dir = path.Dir(dir) {
			matched, _ := path.Match(p, dir)
			if !matched && strings.HasPrefix(p, "**/") {
				// "**/x" also matches x at any depth.
				base := strings.TrimPrefix(p, "**/")
				matched, _ = path.Match(base, path.Base(dir))
			}
			if matched {
				ignored = !negate
				break
			}
		}
	}
	return ignored
}

// TestDockerfile checks what "docker build" would find out late: every
// file copied from the build context exists and is not excluded by the
// Dockerfile's .dockerignore, and the ports it exposes are the ones its
// config listens on. (No Docker engine is needed.)
func TestDockerfile(t *testing.T) {
	instrs := parseDockerfile(t, deployDockerfile)

	var patterns []string
	ignore, err := os.ReadFile(deployDockerfile + ".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(ignore)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}

	var copies, exposed []string
	for _, in := range instrs {
		switch in.name {
		case "ADD":
			t.Errorf("Dockerfile:%d: ADD: use COPY (ADD fetches URLs and unpacks archives)", in.line)
		case "COPY":
			var srcs []string
			fromStage := false
			for _, a := range in.args {
				if strings.HasPrefix(a, "--") {
					fromStage = fromStage || strings.HasPrefix(a, "--from=")
					continue
				}
				srcs = append(srcs, a)
			}
			if len(srcs) < 2 {
				t.Errorf("Dockerfile:%d: COPY needs a source and a destination: %q", in.line, in.args)
				continue
			}
			if !fromStage { // --from copies from another stage, not the context
				copies = append(copies, srcs[:len(srcs)-1]...)
			}
		case "EXPOSE":
			exposed = append(exposed, in.args...)
		}
	}
	if len(copies) == 0 {
		t.Fatal("no COPY from the build context found: parser or Dockerfile broken")
	}
	for _, src := range copies {
		t.Run("COPY "+src, func(t *testing.T) {
			matches, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(src)))
			if err != nil || len(matches) == 0 {
				t.Fatalf("COPY source %q does not exist in the repository (err %v)", src, err)
			}
			if rel := path.Clean(src); rel != "." && dockerIgnored(patterns, rel) {
				t.Errorf("COPY source %q is excluded by %s.dockerignore", src, deployDockerfile)
			}
		})
	}

	// The ports the image's config uses must be the ones it documents.
	var conf struct {
		Server  struct{ Listen string }
		Passive struct{ Ports string }
	}
	if _, err := toml.DecodeFile(deployDockerConf, &conf); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(conf.Server.Listen)
	if err != nil {
		t.Fatalf("%s: server.listen: %v", deployDockerConf, err)
	}
	for _, want := range []string{port + "/tcp", conf.Passive.Ports + "/tcp"} {
		found := false
		for _, e := range exposed {
			found = found || e == want
		}
		if !found {
			t.Errorf("Dockerfile EXPOSE %q lacks %s (from %s)", exposed, want, deployDockerConf)
		}
	}
}

// TestDockerfileIgnore pins the small .dockerignore matcher that
// TestDockerfile relies on.
func TestDockerfileIgnore(t *testing.T) {
	patterns := []string{".git", "**/var", "docs/*", "!docs/deploy/config.docker.toml"}
	tests := []struct {
		rel  string
		want bool
	}{
		{"go.mod", false},
		{".git", true},
		{".git/config", true},
		{"var/state/tls/self-signed.key", true},
		{"cmd/ftpsd/var/x", true},
		{"docs/performance.md", true},
		{"docs/deploy/Dockerfile", true},
		{"docs/deploy/config.docker.toml", false},
		{"cmd/ftpsd/main.go", false},
	}
	for _, tt := range tests {
		if got := dockerIgnored(patterns, tt.rel); got != tt.want {
			t.Errorf("dockerIgnored(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

// TestDockerConfigChecks runs "ftpsd check-config" on the image's config,
// with its absolute directories moved into a temporary one: check-config
// generates the self-signed certificate in the state directory.
func TestDockerConfigChecks(t *testing.T) {
	dir := t.TempDir()
	conf := rewrite(t, deployDockerConf, "config.toml",
		`"/var/lib/ftpsd"`, `"`+filepath.Join(dir, "state")+`"`,
		`"/srv/ftp/`, `"`+filepath.Join(dir, "srv")+`/`)
	r := runCmd(t, "", "check-config", "-config", conf)
	if r.code != exitOK {
		t.Fatalf("check-config %s: exit %d\nstdout:\n%s\nstderr:\n%s", deployDockerConf, r.code, r.stdout, r.stderr)
	}
}
