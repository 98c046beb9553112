// Package ftpstest starts a real ftpsd server on 127.0.0.1 for tests, the
// way net/http/httptest does for HTTP: real sockets, real TLS with a test
// CA the client trusts, real users with hashed passwords and real home
// directories.
package ftpstest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// User is a test account. Perms nil means all permissions.
type User struct {
	Name, Password string
	Perms          []string
	// Hash, if set, is the encoded password hash to configure instead of
	// CheapHash(Password) (for tests that need a costlier one).
	Hash string
}

// Options tune a test server. The zero value gives one user "alice"
// (password "alice-secret") with every permission and strict defaults.
type Options struct {
	Users []User
	// Server, Passive, TLS and Auth, if set, adjust the configs before
	// they are validated.
	Server  func(*ftps.Config)
	Passive func(*passive.Config)
	TLS     func(*tlsctl.Config)
	Auth    func(*auth.Config)
	// Implicit also starts an implicit-FTPS listener (Server.ImplicitAddr).
	Implicit bool
}

// Server is a running test server.
type Server struct {
	Addr         string // "127.0.0.1:port" of the control listener
	ImplicitAddr string // the implicit-FTPS listener, with Options.Implicit
	CAPool       *x509.CertPool
	CAFile       string // PEM of the CA, for curl --cacert and lftp ssl:ca-file
	Root         string // directory holding every user's home
	Passive      *passive.Manager
	Log          *LogBuffer

	srv   *ftps.Server
	store *auth.Store
	done  chan error
}

// DefaultUser is the user created when Options.Users is empty.
var DefaultUser = User{Name: "alice", Password: "alice-secret"}

// NewServer starts a server and stops it in t.Cleanup.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	dir := t.TempDir()
	caPEM, certFile, keyFile := writeTestPKI(t, dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	caFile := filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(caFile, caPEM, 0o644))

	logs := &LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	tcfg := tlsctl.Config{Mode: "files", CertFile: certFile, KeyFile: keyFile, StateDir: filepath.Join(dir, "state")}
	if opts.TLS != nil {
		opts.TLS(&tcfg)
	}
	must(t, tcfg.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	tm, err := tlsctl.New(ctx, tcfg, log)
	must(t, err)

	first := 20000 + mrand.IntN(30000)
	pcfg := passive.Config{Ports: fmt.Sprintf("%d-%d", first, first+49), AcceptTimeout: 10 * time.Second}
	if opts.Passive != nil {
		opts.Passive(&pcfg)
	}
	must(t, pcfg.Validate())
	pm, err := passive.New(pcfg, log)
	must(t, err)

	users := opts.Users
	if len(users) == 0 {
		users = []User{DefaultUser}
	}
	homes := filepath.Join(dir, "homes")
	var ucfgs []auth.UserConfig
	for _, u := range users {
		perms := u.Perms
		if perms == nil {
			perms = []string{"all"}
		}
		hash := u.Hash
		if hash == "" {
			hash = CheapHash(u.Password)
		}
		ucfgs = append(ucfgs, auth.UserConfig{
			Name: u.Name, PasswordHash: hash,
			Home: filepath.Join(homes, u.Name), Permissions: perms,
		})
	}
	acfg := auth.Config{FailureDelay: time.Millisecond}
	if opts.Auth != nil {
		opts.Auth(&acfg)
	}
	must(t, acfg.Validate())
	store, err := auth.New(acfg, ucfgs, log)
	must(t, err)

	scfg := ftps.Config{Listen: "127.0.0.1:0", StateDir: filepath.Join(dir, "state"), DataTimeout: 10 * time.Second}
	if opts.Server != nil {
		opts.Server(&scfg)
	}
	srv, err := ftps.New(scfg, ftps.Deps{TLS: tm.ServerConfig(), Auth: store, Passive: pm, Log: log})
	must(t, err)
	ln, err := net.Listen("tcp", scfg.Listen)
	must(t, err)

	s := &Server{
		Addr: ln.Addr().String(), CAPool: pool, CAFile: caFile, Root: homes,
		Passive: pm, Log: logs, srv: srv, store: store, done: make(chan error, 1),
	}
	go func() { s.done <- srv.Serve(ctx, ln) }()
	implicitDone := make(chan error, 1)
	if opts.Implicit {
		iln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		s.ImplicitAddr = iln.Addr().String()
		go func() { implicitDone <- srv.ServeImplicit(ctx, iln) }()
	} else {
		implicitDone <- ftps.ErrServerClosed
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		if err := <-s.done; !errors.Is(err, ftps.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if err := <-implicitDone; !errors.Is(err, ftps.ErrServerClosed) {
			t.Errorf("ServeImplicit returned %v, want ErrServerClosed", err)
		}
		cancel()
		pm.Close()
		tm.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return s
}

// FTPS is the server itself, for tests of its methods (Reload, CloseUsers).
func (s *Server) FTPS() *ftps.Server { return s.srv }

// Auth is the server's user store, for tests that reload users.
func (s *Server) Auth() *auth.Store { return s.store }

// Shutdown stops the server gracefully (for shutdown tests).
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Home is the home directory of user name.
func (s *Server) Home(name string) string { return filepath.Join(s.Root, name) }

// Port is the control port.
func (s *Server) Port() int {
	return int(netip.MustParseAddrPort(s.Addr).Port())
}

// ClientTLS is what a well-behaved client uses: it trusts the test CA,
// names the server, and keeps a session cache keyed by that name so data
// connections (to other ports) resume the control session.
func (s *Server) ClientTLS() *tls.Config {
	return &tls.Config{
		RootCAs:            s.CAPool,
		ServerName:         "localhost",
		ClientSessionCache: tls.NewLRUClientSessionCache(16),
		MinVersion:         tls.VersionTLS12,
	}
}

// CheapHash is an argon2id PHC hash with tiny parameters, so that tests
// under -race log in quickly. Production hashes come from ftpsd
// hash-password.
func CheapHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 1024, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=1024,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// LogBuffer collects the server's log for assertions and failure output.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether the log holds s.
func (l *LogBuffer) Contains(s string) bool {
	return bytes.Contains([]byte(l.String()), []byte(s))
}

// writeTestPKI makes a CA and a leaf for localhost/127.0.0.1/::1 and
// writes the leaf's files; it returns the CA PEM.
func writeTestPKI(t testing.TB, dir string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ftpstest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(caDER)
	must(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	must(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)

	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	must(t, os.WriteFile(certFile, chain, 0o644))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
