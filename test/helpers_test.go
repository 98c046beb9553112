package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpstest"
)

// The default test account of ftpstest.
const (
	user = "alice"
	pass = "alice-secret"
)

// versions are the TLS versions every client is run at.
var versions = []uint16{tls.VersionTLS12, tls.VersionTLS13}

// payload returns n bytes of deterministic pseudo-random data, different
// for each seed, so a transfer that mixes up or truncates files shows.
func payload(n int, seed byte) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// sum is the hex SHA-256 of b.
func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// writeFile writes a file under dir, creating parent directories.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertContent fails unless the file at path holds exactly want,
// comparing SHA-256 sums (a multi-megabyte diff helps nobody).
func assertContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if sum(got) != sum(want) {
		t.Fatalf("%s: %d bytes sha256 %s, want %d bytes sha256 %s", path, len(got), sum(got)[:16], len(want), sum(want)[:16])
	}
}

// assertMissing fails if path exists.
func assertMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Fatalf("%s exists, want it gone", path)
	}
}

// xfer runs one data command over PASV on the logged-in connection c: it
// sends line, dials the data connection with cfg (c.TLS when nil), uploads
// send when it is non-nil or else reads everything, closes the data
// connection with close_notify, and expects 150 then 226. It fails the test
// unless the data connection resumed the control session, and returns what
// the data connection carried.
func xfer(t *testing.T, c *ftpstest.Conn, cfg *tls.Config, line string, send []byte) []byte {
	t.Helper()
	if cfg == nil {
		cfg = c.TLS
	}
	addr := c.Pasv()
	c.Send(line)
	dc, err := ftpstest.DialData(t, addr, cfg)
	if err != nil {
		t.Fatalf("%s: data connection: %v", line, err)
	}
	c.Expect(150)
	tc := dc.(*tls.Conn)
	if !tc.ConnectionState().DidResume {
		t.Errorf("%s: data connection did not resume the control TLS session", line)
	}
	var got []byte
	if send != nil {
		if _, err := dc.Write(send); err != nil {
			t.Fatalf("%s: write data: %v", line, err)
		}
	} else if got, err = io.ReadAll(dc); err != nil {
		t.Fatalf("%s: read data: %v", line, err)
	}
	if err := dc.Close(); err != nil {
		t.Fatalf("%s: close data: %v", line, err)
	}
	c.Expect(226)
	return got
}

// needTool returns the path of an external client. When it is missing the
// test fails under CI=true (test/run.sh installs it, so absence there is a
// broken set-up) and is skipped otherwise.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not on PATH and CI=true: the interop tests need it (bash test/run.sh installs it): %v", name, err)
	}
	t.Skipf("%s is not installed: skipping its interop test (bash test/run.sh installs it; with CI=true this fails)", name)
	return ""
}

// toolTimeout bounds every external client run.
const toolTimeout = 60 * time.Second

// runTool runs an external client with a timeout, in dir, with env added
// to a minimal environment, and returns its stdout and stderr. The test
// log gets the command line and, on error, the output.
func runTool(t *testing.T, dir string, env []string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "HOME=" + dir}, env...)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	t.Logf("$ %s %s (err %v)", name, strings.Join(args, " "), err)
	if err != nil {
		t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	return out.String(), errb.String(), err
}

// logLines counts the server log lines that match the regular expression.
func logLines(s *ftpstest.Server, expr string) int {
	re := regexp.MustCompile(expr)
	n := 0
	for _, line := range strings.Split(s.Log.String(), "\n") {
		if re.MatchString(line) {
			n++
		}
	}
	return n
}

// waitLogLines polls until expr matches at least want log lines or timeout
// passes, and returns the count then (lines logged after a client exits).
func waitLogLines(s *ftpstest.Server, expr string, want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := logLines(s, expr)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log patterns of the server (slog text handler).
const (
	logReply425   = `msg=reply .* code=425$`
	logRefusedTLS = `msg="data connection refused: TLS session not resumed" .* tls_resumption=`
)

// assertControlTLS fails unless the server logged at least one control TLS
// handshake and every one of them negotiated version (e.g. "TLS 1.3"): it
// checks that an external client really ran at the version under test.
func assertControlTLS(t *testing.T, s *ftpstest.Server, version string) {
	t.Helper()
	all := logLines(s, `msg="control TLS established"`)
	want := logLines(s, `msg="control TLS established" .* version="`+regexp.QuoteMeta(version)+`"`)
	if all == 0 || want != all {
		t.Errorf("%d of %d control TLS handshakes negotiated %s, want all", want, all, version)
	}
}

// assertCommands fails unless the server received each of the commands
// (verbs): it shows that a client really exercised what the test is about
// (for instance MLSD rather than LIST, or REST before STOR).
func assertCommands(t *testing.T, s *ftpstest.Server, verbs ...string) {
	t.Helper()
	for _, v := range verbs {
		if logLines(s, `msg=command .* cmd=`+regexp.QuoteMeta(v)+`( |$)`) == 0 {
			t.Errorf("the client never sent %s", v)
		}
	}
}
