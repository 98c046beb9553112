package tlsctl

import (
	"crypto/tls"
	"slices"
	"testing"
)

// TestManagerReload: a reload that points at other certificate files serves
// the new certificate from the next handshake on, also through a clone of
// the base config made before the reload (every control session holds
// one); a reload whose files are broken changes nothing; settings fixed at
// start are reported as needing a restart.
func TestManagerReload(t *testing.T) {
	t.Parallel()
	a, b := validPair(t), validPair(t)
	certA, keyA := writePairFiles(t, t.TempDir(), a)
	certB, keyB := writePairFiles(t, t.TempDir(), b)
	cfg := Config{Mode: ModeFiles, CertFile: certA, KeyFile: keyA}
	m := newTestManager(t, cfg, nil)
	clone := m.ServerConfig().Clone() // made before the reload
	addr := serveTLS(t, func() *tls.Config { return clone })
	served := func() string {
		t.Helper()
		return fingerprint(t, mustHandshake(t, addr, &tls.Config{RootCAs: poolOf(t, a.certPEM, b.certPEM), ServerName: "localhost"}))
	}
	if got := served(); got != a.sha256 {
		t.Fatalf("before reload: served %s, want A", got)
	}

	steps := []struct {
		name        string
		cfg         Config
		wantErr     bool
		wantRestart []string
		want        string // the certificate served afterwards
	}{
		{"same settings", cfg, false, nil, a.sha256},
		{"broken files refused", Config{Mode: ModeFiles, CertFile: keyB, KeyFile: certB}, true, nil, a.sha256},
		{"invalid config refused", Config{Mode: "nonsense"}, true, nil, a.sha256},
		{"new files", Config{Mode: ModeFiles, CertFile: certB, KeyFile: keyB}, false, nil, b.sha256},
		{"min_version needs a restart", Config{Mode: ModeFiles, CertFile: certB, KeyFile: keyB, MinVersion: "1.3"},
			false, []string{"tls.min_version"}, b.sha256},
	}
	for _, st := range steps {
		restart, err := m.Reload(t.Context(), st.cfg)
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: Reload error %v, want error %t", st.name, err, st.wantErr)
		}
		if !slices.Equal(restart, st.wantRestart) {
			t.Errorf("%s: restart %v, want %v", st.name, restart, st.wantRestart)
		}
		if got := served(); got != st.want {
			t.Errorf("%s: served %s, want %s", st.name, got[:12], st.want[:12])
		}
		if info := m.Certificate(); info.SHA256 != st.want {
			t.Errorf("%s: Certificate() = %s", st.name, info.SHA256[:12])
		}
	}
	if got := clone.MinVersion; got != tls.VersionTLS12 {
		t.Errorf("min_version changed under running sessions: %x", got)
	}
}
