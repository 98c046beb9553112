package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
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

// eachVersion runs f as a parallel subtest at each of versions, with a
// server of its own.
func eachVersion(t *testing.T, f func(t *testing.T, v uint16, s *ftpstest.Server)) {
	eachVersionWith(t, ftpstest.Options{}, f)
}

// eachVersionWith is eachVersion with servers started with opts.
func eachVersionWith(t *testing.T, opts ftpstest.Options, f func(t *testing.T, v uint16, s *ftpstest.Server)) {
	eachVersionOn(t, localBackend, opts, func(t *testing.T, v uint16, h *home) { f(t, v, h.s) })
}

// eachVersionOn is eachVersionWith with alice's home on b.
func eachVersionOn(t *testing.T, b backend, opts ftpstest.Options, f func(t *testing.T, v uint16, h *home)) {
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			f(t, v, b.start(t, opts))
		})
	}
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
	all := s.Log.Count(`msg="control TLS established"`)
	want := s.Log.Count(`msg="control TLS established" .* version="` + regexp.QuoteMeta(version) + `"`)
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
		if s.Log.Count(`msg=command .* cmd=`+regexp.QuoteMeta(v)+`( |$)`) == 0 {
			t.Errorf("the client never sent %s", v)
		}
	}
}
