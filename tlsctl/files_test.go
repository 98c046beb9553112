package tlsctl

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestFilesLoadErrors(t *testing.T) {
	t.Parallel()
	a, b := validPair(t), validPair(t)
	tests := []struct {
		name       string
		cert, key  []byte // nil = file missing
		wantKey    string // the config key the error names
		wantInErr  string
		wantInFile string // "cert" or "key": the file named
	}{
		{name: "cert missing", key: a.keyPEM, wantKey: "tls.cert_file", wantInErr: "no such file", wantInFile: "cert"},
		{name: "key missing", cert: a.certPEM, wantKey: "tls.key_file", wantInErr: "no such file", wantInFile: "key"},
		{name: "cert garbage", cert: []byte("garbage"), key: a.keyPEM, wantKey: "tls.cert_file", wantInErr: "no PEM CERTIFICATE", wantInFile: "cert"},
		{name: "key garbage", cert: a.certPEM, key: []byte("garbage"), wantKey: "tls.key_file", wantInErr: "no PEM PRIVATE KEY", wantInFile: "key"},
		{name: "files swapped", cert: a.keyPEM, key: a.certPEM, wantKey: "tls.cert_file", wantInErr: "swapped", wantInFile: "cert"},
		{name: "key of another certificate", cert: a.certPEM, key: b.keyPEM, wantKey: "tls.key_file", wantInErr: "does not match the certificate", wantInFile: "key"},
		{name: "truncated certificate", cert: bytes.Replace(a.certPEM, []byte("MII"), []byte("MIA"), 1), key: a.keyPEM, wantKey: "tls.cert_file", wantInFile: "cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
			if tt.cert != nil {
				writeFile(t, certFile, tt.cert)
			}
			if tt.key != nil {
				writeFile(t, keyFile, tt.key)
			}
			m, err := New(t.Context(), Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile}, nil)
			if err == nil {
				m.Close()
				t.Fatal("New: no error")
			}
			msg := err.Error()
			file := map[string]string{"cert": certFile, "key": keyFile}[tt.wantInFile]
			if !strings.HasPrefix(msg, tt.wantKey+":") || !strings.Contains(msg, tt.wantInErr) || !strings.Contains(msg, file) {
				t.Errorf("error %q: want %q prefix, %q and the file %s", msg, tt.wantKey+":", tt.wantInErr, file)
			}
		})
	}
}

func TestFilesServeAndInfo(t *testing.T) {
	t.Parallel()
	p := validPair(t)
	certFile, keyFile := writePairFiles(t, t.TempDir(), p)
	m := newTestManager(t, Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile}, nil)
	info := m.Certificate()
	if info.Source != ModeFiles || info.File != certFile || info.SHA256 != p.sha256 {
		t.Errorf("Certificate() = %+v", info)
	}
	addr := serveTLS(t, m.ServerConfig)
	// By name and by IP (no SNI): the only certificate is served either way.
	for _, name := range []string{"localhost", "127.0.0.1"} {
		state := mustHandshake(t, addr, &tls.Config{RootCAs: poolOf(t, p.certPEM), ServerName: name})
		if got := fingerprint(t, state); got != p.sha256 {
			t.Errorf("%s: served %s, want %s", name, got, p.sha256)
		}
	}
}

// TestFilesReload replaces the files on disk while serving: a good pair is
// picked up, broken replacements are logged and the good one stays.
func TestFilesReload(t *testing.T) {
	t.Parallel()
	a, b, c := validPair(t), validPair(t), validPair(t)
	dir := t.TempDir()
	certFile, keyFile := writePairFiles(t, dir, a)
	rec := &logRecorder{}
	m := newTestManager(t, Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, ReloadInterval: 10 * time.Millisecond}, slog.New(rec))
	addr := serveTLS(t, m.ServerConfig)
	client := &tls.Config{RootCAs: poolOf(t, a.certPEM, b.certPEM, c.certPEM), ServerName: "localhost"}
	served := func() string {
		return fingerprint(t, mustHandshake(t, addr, client))
	}
	if got := served(); got != a.sha256 {
		t.Fatalf("served %s, want A %s", got, a.sha256)
	}

	// A good replacement (both files renamed into place) is picked up.
	writePairFiles(t, dir, b)
	testutil.WaitFor(t, 5*time.Second, "certificate B served", func() bool { return served() == b.sha256 })
	if got := m.Certificate().SHA256; got != b.sha256 {
		t.Errorf("Certificate().SHA256 = %s, want B %s", got, b.sha256)
	}
	if rec.count(slog.LevelInfo, "reloaded certificate") != 1 {
		t.Error("reload not logged")
	}
	// A poll between the two renames above may have seen cert B with key A
	// and logged it; count from here.
	base := countErrors(rec)

	// Broken replacements: logged at Error, B stays.
	broken := []struct {
		name string
		do   func()
	}{
		{"garbage certificate", func() { writeFile(t, certFile, []byte("garbage")) }},
		{"certificate C with key B", func() { writeFile(t, certFile, c.certPEM) }},
		{"key file removed", func() {
			if err := os.Remove(keyFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, br := range broken {
		br.do()
		testutil.WaitFor(t, 5*time.Second, "error logged for "+br.name, func() bool { return countErrors(rec) == base+i+1 })
		if got := served(); got != b.sha256 {
			t.Fatalf("after %s: served %s, want B %s", br.name, got, b.sha256)
		}
		if got := m.Certificate().SHA256; got != b.sha256 {
			t.Fatalf("after %s: Certificate().SHA256 = %s, want B", br.name, got)
		}
	}
	// A broken state is logged once, not at every poll.
	time.Sleep(50 * time.Millisecond)
	if n := countErrors(rec) - base; n != len(broken) {
		t.Errorf("%d errors logged, want %d", n, len(broken))
	}

	// Repaired: C is picked up.
	writeFile(t, keyFile, c.keyPEM)
	testutil.WaitFor(t, 5*time.Second, "certificate C served", func() bool { return served() == c.sha256 })
}

func countErrors(rec *logRecorder) int {
	return rec.count(slog.LevelError, "certificate files changed but cannot be used") +
		rec.count(slog.LevelError, "cannot read certificate files")
}

func TestFilesExpiryLog(t *testing.T) {
	t.Parallel()
	now := time.Now()
	day := 24 * time.Hour
	tests := []struct {
		name      string
		notAfter  time.Time
		wantLevel slog.Level // highest level logged
		wantMsg   string
	}{
		{name: "valid for 60 days", notAfter: now.Add(60 * day), wantLevel: slog.LevelInfo, wantMsg: "loaded certificate"},
		{name: "expires in 5 days", notAfter: now.Add(5 * day), wantLevel: slog.LevelWarn, wantMsg: "certificate expires soon"},
		{name: "expired", notAfter: now.Add(-day), wantLevel: slog.LevelError, wantMsg: "certificate has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newTestPair(t, []string{"localhost"}, now.Add(-100*day), tt.notAfter)
			certFile, keyFile := writePairFiles(t, t.TempDir(), p)
			rec := &logRecorder{}
			newTestManager(t, Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, ReloadInterval: 5 * time.Millisecond}, slog.New(rec))
			time.Sleep(30 * time.Millisecond) // several polls: still one line
			if got := rec.maxLevel(); got != tt.wantLevel {
				t.Errorf("highest level logged %v, want %v", got, tt.wantLevel)
			}
			if n := rec.count(tt.wantLevel, tt.wantMsg); n != 1 {
				t.Errorf("%q logged %d times at %v, want once", tt.wantMsg, n, tt.wantLevel)
			}
		})
	}
}
