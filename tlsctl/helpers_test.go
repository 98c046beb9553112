package tlsctl

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestManager builds a Manager and closes it at the end of the test.
func newTestManager(t *testing.T, cfg Config, log *slog.Logger) *Manager {
	t.Helper()
	m, err := New(t.Context(), cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// serveTLS accepts TLS connections on 127.0.0.1:0 with the config cfgFor
// returns for each connection. After the handshake the server writes one
// byte (which makes a TLS 1.3 client process the session ticket) and waits
// for the client to close.
func serveTLS(t *testing.T, cfgFor func() *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cfg := cfgFor()
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, cfg)
				if err := tc.Handshake(); err != nil {
					return
				}
				if _, err := tc.Write([]byte("x")); err != nil {
					return
				}
				io.Copy(io.Discard, tc)
			})
		}
	})
	return ln.Addr().String()
}

// dialTLS connects to addr, completes the handshake, reads the server's byte
// and returns the connection state, or the handshake error.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return tls.ConnectionState{}, err
	}
	state := tc.ConnectionState()
	tc.Close()
	return state, nil
}

// mustHandshake is dialTLS for a handshake that must succeed.
func mustHandshake(t *testing.T, addr string, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	state, err := dialTLS(t, addr, cfg)
	if err != nil {
		t.Fatalf("handshake with %s (server name %q): %v", addr, cfg.ServerName, err)
	}
	return state
}

// refusedHandshake is dialTLS for a handshake that must fail.
func refusedHandshake(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	if state, err := dialTLS(t, addr, cfg); err == nil {
		t.Fatalf("handshake succeeded (%s, %s, ALPN %q), want refused", tls.VersionName(state.Version),
			tls.CipherSuiteName(state.CipherSuite), state.NegotiatedProtocol)
	}
}

// fingerprint is the CertInfo.SHA256 form of the peer's leaf.
func fingerprint(t *testing.T, state tls.ConnectionState) string {
	t.Helper()
	if len(state.PeerCertificates) == 0 {
		t.Fatal("no peer certificate")
	}
	sum := sha256.Sum256(state.PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}

// poolOf makes a root pool of PEM certificates.
func poolOf(t *testing.T, pems ...[]byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, p := range pems {
		if !pool.AppendCertsFromPEM(p) {
			t.Fatal("no certificate in PEM")
		}
	}
	return pool
}

// poolFromFile makes a root pool of the certificate file path.
func poolFromFile(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return poolOf(t, b)
}

// testPair is a generated certificate and key, also written to files.
type testPair struct {
	certPEM, keyPEM []byte
	sha256          string
}

// newTestPair generates a certificate for names valid in [notBefore, notAfter].
func newTestPair(t *testing.T, names []string, notBefore, notAfter time.Time) testPair {
	t.Helper()
	certPEM, keyPEM, err := generateSelfSigned(names, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Leaf.Raw)
	return testPair{certPEM: certPEM, keyPEM: keyPEM, sha256: hex.EncodeToString(sum[:])}
}

// validPair is a certificate for localhost valid now.
func validPair(t *testing.T) testPair {
	t.Helper()
	now := time.Now()
	return newTestPair(t, []string{"localhost", "127.0.0.1"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
}

// rsaPair is a self-signed RSA certificate for localhost valid now.
// generateSelfSigned only makes ECDSA keys, but files and acme mode may
// serve RSA, which needs the ECDHE_RSA suites.
func rsaPair(t *testing.T) testPair {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return testPair{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		sha256:  hex.EncodeToString(sum[:]),
	}
}

// writeFile replaces path atomically with data.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePairFiles writes p to dir/cert.pem and dir/key.pem and returns the paths.
func writePairFiles(t *testing.T, dir string, p testPair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, p.certPEM)
	writeFile(t, keyFile, p.keyPEM)
	return certFile, keyFile
}

// logRecorder is a slog.Handler that keeps every record for inspection.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// count returns how many records at level have a message containing msg.
func (r *logRecorder) count(level slog.Level, msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level && strings.Contains(rec.Message, msg) {
			n++
		}
	}
	return n
}

// maxLevel returns the highest level logged, or slog.LevelDebug-1 if none.
func (r *logRecorder) maxLevel() slog.Level {
	r.mu.Lock()
	defer r.mu.Unlock()
	max := slog.LevelDebug - 1
	for _, rec := range r.recs {
		if rec.Level > max {
			max = rec.Level
		}
	}
	return max
}
