package tlsctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func selfSignedPaths(stateDir string) (dir, certFile, keyFile string) {
	dir = filepath.Join(stateDir, selfSignedDir)
	return dir, filepath.Join(dir, selfSignedCertName), filepath.Join(dir, selfSignedKeyName)
}

func TestSelfSignedPersistedAndReused(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	dir, certFile, keyFile := selfSignedPaths(state)

	m1 := newTestManager(t, Config{StateDir: state}, nil)
	info1 := m1.Certificate()
	if info1.Source != ModeSelfSigned || info1.File != certFile {
		t.Errorf("Certificate() = %+v, want source %q file %q", info1, ModeSelfSigned, certFile)
	}
	if want := []string{"localhost", "127.0.0.1", "::1"}; !slices.Equal(info1.Names, want) {
		t.Errorf("Names = %q, want %q", info1.Names, want)
	}
	for _, f := range []struct {
		path string
		perm os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {keyFile, 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != f.perm {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode(), f.perm)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*")); len(tmp) != 0 {
		t.Errorf("temporary files left behind: %q", tmp)
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}

	rec := &logRecorder{}
	m2 := newTestManager(t, Config{StateDir: state}, slog.New(rec))
	if got := m2.Certificate().SHA256; got != info1.SHA256 {
		t.Errorf("second start: fingerprint %s, want the stored %s", got, info1.SHA256)
	}
	if rec.count(slog.LevelInfo, "generating") != 0 {
		t.Error("second start generated a new certificate")
	}
}

func TestSelfSignedCertificateShape(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	before := time.Now()
	m := newTestManager(t, Config{StateDir: state, SelfSignedNames: []string{"ftp.example.com", "192.0.2.7", "localhost"}}, nil)
	_, certFile, keyFile := selfSignedPaths(state)

	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if !leaf.BasicConstraintsValid || !leaf.IsCA {
		t.Error("not a CA certificate: OpenSSL and GnuTLS would not take it as a trust anchor")
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign; leaf.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", leaf.KeyUsage, want)
	}
	if err := leaf.CheckSignatureFrom(leaf); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"ftp.example.com", "localhost"}) ||
		len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("192.0.2.7")) {
		t.Errorf("SANs = %q %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if d := before.Sub(leaf.NotBefore); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("NotBefore %v is not backdated by 1h", leaf.NotBefore)
	}
	if d := leaf.NotAfter.Sub(before); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("NotAfter %v is not 1 year ahead", leaf.NotAfter)
	}
	if got := m.Certificate(); !got.NotAfter.Equal(leaf.NotAfter) || !got.NotBefore.Equal(leaf.NotBefore) {
		t.Errorf("Certificate() validity %v..%v, want %v..%v", got.NotBefore, got.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if kblock, _ := pem.Decode(kb); kblock == nil || kblock.Type != "PRIVATE KEY" {
		t.Error("key file is not a PKCS #8 PEM key")
	}
}

func TestSelfSignedRegenerated(t *testing.T) {
	t.Parallel()
	now := time.Now()
	defaults := []string{"localhost", "127.0.0.1", "::1"}
	tests := []struct {
		name   string
		names  []string                                     // names of the second start
		spoil  func(t *testing.T, certFile, keyFile string) // changes the stored pair
		wantLv slog.Level
	}{
		{name: "names changed", names: []string{"ftp.example.com"}, wantLv: slog.LevelInfo},
		{name: "name added", names: append(slices.Clone(defaults), "ftp.example.com"), wantLv: slog.LevelInfo},
		{
			name: "expires within 30 days", names: defaults, wantLv: slog.LevelInfo,
			spoil: func(t *testing.T, certFile, keyFile string) {
				p := newTestPair(t, defaults, now.Add(-300*24*time.Hour), now.Add(20*24*time.Hour))
				writeFile(t, keyFile, p.keyPEM)
				writeFile(t, certFile, p.certPEM)
			},
		},
		{
			name: "not yet valid", names: defaults, wantLv: slog.LevelWarn,
			spoil: func(t *testing.T, certFile, keyFile string) {
				p := newTestPair(t, defaults, now.Add(24*time.Hour), now.Add(300*24*time.Hour))
				writeFile(t, keyFile, p.keyPEM)
				writeFile(t, certFile, p.certPEM)
			},
		},
		{
			name: "corrupt certificate", names: defaults, wantLv: slog.LevelWarn,
			spoil: func(t *testing.T, certFile, _ string) { writeFile(t, certFile, []byte("garbage")) },
		},
		{
			name: "key does not match", names: defaults, wantLv: slog.LevelWarn,
			spoil: func(t *testing.T, _, keyFile string) {
				writeFile(t, keyFile, newTestPair(t, defaults, now, now.Add(time.Hour)).keyPEM)
			},
		},
		{
			name: "key missing", names: defaults, wantLv: slog.LevelInfo,
			spoil: func(t *testing.T, _, keyFile string) {
				if err := os.Remove(keyFile); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			_, certFile, keyFile := selfSignedPaths(state)
			m1 := newTestManager(t, Config{StateDir: state}, nil)
			old := m1.Certificate().SHA256
			m1.Close()
			if tt.spoil != nil {
				tt.spoil(t, certFile, keyFile)
			}

			rec := &logRecorder{}
			m2 := newTestManager(t, Config{StateDir: state, SelfSignedNames: tt.names}, slog.New(rec))
			info := m2.Certificate()
			if info.SHA256 == old {
				t.Fatal("certificate was reused, want a new one")
			}
			if rec.count(tt.wantLv, "generating self-signed certificate") != 1 {
				t.Errorf("regeneration not logged at %v", tt.wantLv)
			}
			if want := normalizeNames(tt.names); !slices.Equal(normalizeNames(info.Names), want) {
				t.Errorf("Names = %q, want %q", info.Names, want)
			}
			if time.Until(info.NotAfter) < 364*24*time.Hour {
				t.Errorf("new certificate ends %v", info.NotAfter)
			}
			// The regenerated pair is stored and reused in turn.
			m3 := newTestManager(t, Config{StateDir: state, SelfSignedNames: tt.names}, nil)
			if got := m3.Certificate().SHA256; got != info.SHA256 {
				t.Errorf("third start: fingerprint %s, want %s", got, info.SHA256)
			}
		})
	}
}

func TestSelfSignedStateDirUnwritable(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "file")
	writeFile(t, state, []byte("not a directory"))
	_, err := New(t.Context(), Config{StateDir: state}, nil)
	if err == nil {
		t.Fatal("New: no error with a state dir that is a file")
	}
	if !strings.Contains(err.Error(), "self-signed certificate") {
		t.Errorf("error %q does not say what failed", err)
	}
}

// TestSelfSignedVerifies checks that a client trusting exactly the stored
// certificate (like curl --cacert) verifies it by host name and by IP, the
// latter without SNI.
func TestSelfSignedVerifies(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	m := newTestManager(t, Config{StateDir: state}, nil)
	_, certFile, _ := selfSignedPaths(state)
	pool := poolFromFile(t, certFile)

	snis := make(chan string, 10)
	addr := serveTLS(t, func() *tls.Config {
		cfg := m.ServerConfig().Clone()
		get := cfg.GetCertificate
		cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			snis <- h.ServerName
			return get(h)
		}
		return cfg
	})

	tests := []struct {
		serverName string
		wantSNI    string
		wantErr    bool
	}{
		{serverName: "localhost", wantSNI: "localhost"},
		{serverName: "LOCALHOST", wantSNI: "LOCALHOST"},
		{serverName: "127.0.0.1", wantSNI: ""}, // Go sends no SNI for an IP, like clients connecting by address
		{serverName: "::1", wantSNI: ""},
		{serverName: "ftp.example.com", wantSNI: "ftp.example.com", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.serverName, func(t *testing.T) {
			state, err := dialTLS(t, addr, &tls.Config{RootCAs: pool, ServerName: tt.serverName})
			if sni := <-snis; sni != tt.wantSNI {
				t.Errorf("server saw SNI %q, want %q", sni, tt.wantSNI)
			}
			if tt.wantErr {
				var verr *tls.CertificateVerificationError
				if !errors.As(err, &verr) {
					t.Fatalf("handshake error %v, want a verification error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := fingerprint(t, state); got != m.Certificate().SHA256 {
				t.Errorf("served %s, Certificate() says %s", got, m.Certificate().SHA256)
			}
		})
	}
}
