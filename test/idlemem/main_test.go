package main

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpsdproc"
)

func TestMain(m *testing.M) { os.Exit(ftpsdproc.Main(m)) }

// TestRun: a small run against the real binary logs every session in and
// reports the figures, among them about one descriptor per session (one
// per session plus one home per user).
func TestRun(t *testing.T) {
	bin := ftpsdproc.Build(t)
	var out bytes.Buffer
	o := options{bin: bin, n: 30, users: 3, hash: "bcrypt", sources: 2, parallel: 4,
		settle: 0, sample: time.Second, timeout: 2 * time.Minute}
	err := run(o, &out)
	t.Logf("report:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"30 sessions logged in, 0 failed", "per session (final reading - before, / 30 sessions)", "RSS ", "stacks "} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
	m := regexp.MustCompile(`file descriptors ([0-9.]+)`).FindSubmatch(out.Bytes())
	if m == nil {
		t.Fatal("no descriptor count in the report")
	}
	// 30 sessions and 3 homes: 1.1 each.
	if fds, _ := strconv.ParseFloat(string(m[1]), 64); fds < 1 || fds > 1.2 {
		t.Errorf("%v descriptors per session, want 1.1 (30 sessions, 3 shared homes)", fds)
	}
}
