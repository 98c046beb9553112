// Package ftpstest starts a real ftpsd server on 127.0.0.1 for tests, the
// way net/http/httptest does for HTTP: real sockets, real TLS with a test
// CA the client trusts, real users with hashed passwords and real home
// directories.
package ftpstest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/testutil"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// User is a test account. Perms nil means all permissions.
type User struct {
	Name, Password string
	Perms          []string
	// Hash, if set, is the encoded password hash to configure instead of
	// CheapHash(Password) (for tests that need a costlier one).
	Hash string
	// Config, if set, adjusts the user's entry (its limits, its home)
	// before it is validated.
	Config func(*auth.UserConfig)
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
	// Metrics, if set, is passed in ftps.Deps.
	Metrics *ftps.Metrics
}

// Server is a running test server.
type Server struct {
	Addr         string // "127.0.0.1:port" of the control listener
	ImplicitAddr string // the implicit-FTPS listener, with Options.Implicit
	CAPool       *x509.CertPool
	CAFile       string // PEM of the CA, for curl --cacert and lftp ssl:ca-file
	Root         string // directory holding every user's home
	Passive      *passive.Manager
	TLS          *tlsctl.Manager
	Log          *testutil.LogBuffer

	srv   *ftps.Server
	store *auth.Store
	user  User // the first user, for Login
	done  chan error
}

// DefaultUser is the user created when Options.Users is empty.
var DefaultUser = User{Name: "alice", Password: "alice-secret"}

// NewServer starts a server and stops it in t.Cleanup.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	dir := t.TempDir()
	pki := testutil.NewPKI(t)
	caFile, certFile, keyFile := pki.WriteFiles(t, dir)
	log, logs := testutil.NewLogger()

	tcfg := tlsctl.Config{Mode: "files", CertFile: certFile, KeyFile: keyFile, StateDir: filepath.Join(dir, "state")}
	if opts.TLS != nil {
		opts.TLS(&tcfg)
	}
	must(t, tcfg.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	tm, err := tlsctl.New(ctx, tcfg, log)
	must(t, err)

	scfg := ftps.Config{Listen: "127.0.0.1:0", StateDir: filepath.Join(dir, "state"), DataTimeout: 10 * time.Second}
	if opts.Server != nil {
		opts.Server(&scfg)
	}
	must(t, scfg.Validate())

	first := 20000 + mrand.IntN(30000)
	pcfg := passive.Config{Ports: fmt.Sprintf("%d-%d", first, first+49), AcceptTimeout: 10 * time.Second}
	// As cmd/ftpsd does: the data listeners trust the same balancers.
	pcfg.TrustedProxies, pcfg.ProxyHeaderTimeout = scfg.Proxies(), scfg.ProxyHeaderTimeout
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
		uc := auth.UserConfig{
			Name: u.Name, PasswordHash: hash,
			Home: filepath.Join(homes, u.Name), Permissions: perms,
		}
		if u.Config != nil {
			u.Config(&uc)
		}
		ucfgs = append(ucfgs, uc)
	}
	acfg := auth.Config{FailureDelay: time.Millisecond}
	if opts.Auth != nil {
		opts.Auth(&acfg)
	}
	must(t, acfg.Validate())
	store, err := auth.New(acfg, ucfgs, log)
	must(t, err)

	srv, err := ftps.New(scfg, ftps.Deps{TLS: tm.ServerConfig(), Auth: store, Passive: pm, Log: log, Metrics: opts.Metrics})
	must(t, err)
	ln, err := net.Listen("tcp", scfg.Listen)
	must(t, err)

	s := &Server{
		Addr: ln.Addr().String(), CAPool: pki.CAPool, CAFile: caFile, Root: homes,
		Passive: pm, TLS: tm, Log: logs, srv: srv, store: store, user: users[0], done: make(chan error, 1),
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
func (s *Server) ClientTLS() *tls.Config { return ClientTLS(s.CAPool) }

// ClientTLS is such a client config for a server whose certificate pool
// trusts (a test server's CA, or a self-signed certificate of a real
// process).
func ClientTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		RootCAs:            pool,
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

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
