package tlsctl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// selfSignedValidity is the lifetime of a generated certificate.
	selfSignedValidity = 365 * 24 * time.Hour
	// selfSignedBackdate covers clients whose clock is a little behind.
	selfSignedBackdate = time.Hour
	// selfSignedRenewBefore: a stored certificate closer than this to its end
	// is replaced at start, so a server restarted now and then never serves
	// an expired one.
	selfSignedRenewBefore = 30 * 24 * time.Hour

	selfSignedDir      = "tls"
	selfSignedCertName = "self-signed.crt"
	selfSignedKeyName  = "self-signed.key"
)

// selfSignedSource serves one certificate, generated once and kept in
// <StateDir>/tls so that clients which pinned or trusted it keep working
// across restarts.
type selfSignedSource struct {
	lc loadedCert
}

// newSelfSignedSource reuses the stored certificate when it is readable,
// covers exactly cfg.SelfSignedNames and is valid for more than
// selfSignedRenewBefore; otherwise it generates and stores a new one.
func newSelfSignedSource(ctx context.Context, cfg Config, log *slog.Logger) (*selfSignedSource, error) {
	dir := filepath.Join(cfg.StateDir, selfSignedDir)
	certPath := filepath.Join(dir, selfSignedCertName)
	keyPath := filepath.Join(dir, selfSignedKeyName)
	now := time.Now()

	cert, why, level := loadSelfSigned(certPath, keyPath, cfg.SelfSignedNames, now)
	if cert != nil {
		lc := loadedCert{cert: cert, info: describe(ModeSelfSigned, certPath, cert.Leaf)}
		log.Info("using stored self-signed certificate", "file", certPath,
			"sha256", lc.info.SHA256, "not_after", lc.info.NotAfter)
		return &selfSignedSource{lc: lc}, nil
	}
	log.Log(ctx, level, "generating self-signed certificate", "file", certPath, "reason", why)

	certPEM, keyPEM, err := generateSelfSigned(cfg.SelfSignedNames, now.Add(-selfSignedBackdate), now.Add(selfSignedValidity))
	if err != nil {
		return nil, fmt.Errorf("tls: generate self-signed certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: self-signed certificate: %w", err)
	}
	// Key first: a crash between the two renames leaves a pair that does
	// not match, which the next start detects and replaces.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("tls: self-signed certificate: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("tls: self-signed certificate: %w", err)
	}
	cert, err = keyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: self-signed certificate: %w", err)
	}
	lc := loadedCert{cert: cert, info: describe(ModeSelfSigned, certPath, cert.Leaf)}
	log.Info("generated self-signed certificate", "file", certPath, "names", lc.info.Names,
		"sha256", lc.info.SHA256, "not_after", lc.info.NotAfter)
	return &selfSignedSource{lc: lc}, nil
}

// inspectSelfSigned describes the stored certificate that serve would reuse,
// or, when serve would generate one, a CertInfo with the names and a zero
// NotAfter. It never writes.
func inspectSelfSigned(cfg Config) CertInfo {
	dir := filepath.Join(cfg.StateDir, selfSignedDir)
	certPath := filepath.Join(dir, selfSignedCertName)
	cert, _, _ := loadSelfSigned(certPath, filepath.Join(dir, selfSignedKeyName), cfg.SelfSignedNames, time.Now())
	if cert == nil {
		return CertInfo{Source: ModeSelfSigned, File: certPath, Names: normalizeNames(cfg.SelfSignedNames)}
	}
	return describe(ModeSelfSigned, certPath, cert.Leaf)
}

// GetCertificate returns the certificate whatever the hello asks for.
func (s *selfSignedSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.lc.cert, nil
}

// Info describes the certificate.
func (s *selfSignedSource) Info() CertInfo { return s.lc.info.clone() }

// Close has nothing to stop.
func (s *selfSignedSource) Close() error { return nil }

// loadSelfSigned returns the stored certificate if it can be reused, or nil
// with the reason (and the log level of that reason) to make a new one.
func loadSelfSigned(certPath, keyPath string, names []string, now time.Time) (*tls.Certificate, string, slog.Level) {
	cert, err := readKeyPair(certPath, keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "no stored certificate", slog.LevelInfo
	case err != nil:
		return nil, fmt.Sprintf("stored certificate unusable: %v", err), slog.LevelWarn
	}
	leaf := cert.Leaf
	switch {
	case now.Before(leaf.NotBefore):
		return nil, "stored certificate not valid before " + leaf.NotBefore.Format(time.RFC3339), slog.LevelWarn
	case leaf.NotAfter.Sub(now) < selfSignedRenewBefore:
		return nil, "stored certificate expires " + leaf.NotAfter.Format(time.RFC3339), slog.LevelInfo
	case !slices.Equal(normalizeNames(names), certNames(leaf)):
		return nil, "tls.self_signed_names changed", slog.LevelInfo
	}
	return cert, "", slog.LevelInfo
}

// readKeyPair reads and parses a PEM certificate and key file pair.
func readKeyPair(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	return keyPair(certPEM, keyPEM)
}

// generateSelfSigned makes an ECDSA P-256 certificate for names, returned as
// PEM. It is its own CA (IsCA, CertSign) so that OpenSSL (curl --cacert)
// and GnuTLS (lftp ssl:ca-file) accept it as a trust anchor, and it carries
// the names as SANs (IPs as IP addresses) because clients ignore the CN.
func generateSelfSigned(names []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return nil, nil, err
	}
	// RFC 7093 method 1: leftmost 160 bits of the SHA-256 of the key.
	sum := sha256.Sum256(pub.Bytes())
	keyID := sum[:20]

	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	serial.Add(serial, big.NewInt(1)) // positive, never zero

	var dnsNames []string
	var ips []net.IP
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, net.IP(ip.Unmap().AsSlice()))
		} else {
			dnsNames = append(dnsNames, n)
		}
	}
	cn := "ftpsd"
	if len(names) > 0 && len(names[0]) <= 64 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"ftpsd self-signed"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs nothing but itself
		SubjectKeyId:          keyID,
		AuthorityKeyId:        keyID,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// keyPair parses a PEM pair and makes sure Leaf is set.
func keyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// normalizeNames returns the configured names as a sorted set in the form
// certNames uses: IPs canonical, DNS names lower case.
func normalizeNames(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			out = append(out, ip.Unmap().String())
		} else {
			out = append(out, strings.ToLower(n))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// certNames returns the SANs of leaf as a sorted set (see normalizeNames).
func certNames(leaf *x509.Certificate) []string {
	out := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	for _, n := range leaf.DNSNames {
		out = append(out, strings.ToLower(n))
	}
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap().String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// writeFileAtomic writes data to a temporary file in the target directory
// and renames it over path, so a reader (or a crash) never sees half a file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename itself durable; not every file system supports
	// syncing a directory, and the data is safe either way.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
