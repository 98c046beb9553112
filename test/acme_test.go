package test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/acmetest"
	"github.com/ftpsd/ftpsd/test/ftpsdproc"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// acmeTLS configures tlsctl's acme mode against a test Pebble.
func acmeTLS(p *acmetest.Pebble, domain, storage string, challenges ...string) func(*tlsctl.Config) {
	return func(c *tlsctl.Config) {
		c.Mode, c.CertFile, c.KeyFile = tlsctl.ModeACME, "", ""
		c.Domains = []string{domain}
		c.CA = p.DirectoryURL
		c.TrustedRoots = p.ServerCAFile
		c.AgreeToTerms = true
		c.Email = "admin@" + domain
		c.Challenges = challenges
		c.HTTPPort, c.TLSALPNPort = p.HTTPPort, p.TLSPort
		c.ListenHost = "127.0.0.1"
		c.Storage = storage
		c.ObtainTimeout = time.Minute
	}
}

// acmeClient trusts only Pebble's issuing root and checks domain.
func acmeClient(p *acmetest.Pebble, domain string) *tls.Config {
	return &tls.Config{
		RootCAs:            p.IssuerRootPool,
		ServerName:         domain,
		ClientSessionCache: tls.NewLRUClientSessionCache(16),
		NextProtos:         []string{"ftp", "x-filezilla-ftp"},
	}
}

// leafSHA256 is the hex fingerprint of a connection's leaf.
func leafSHA256(st tls.ConnectionState) string {
	s := sha256.Sum256(st.PeerCertificates[0].Raw)
	return hex.EncodeToString(s[:])
}

// checkVerifiedSession logs in with a client that verifies the ACME chain
// and name, then downloads a file, and checks the data connection carries
// the same verified certificate (it resumes the control session). It
// returns the control connection, still logged in, and the fingerprint.
func checkVerifiedSession(t *testing.T, s *ftpstest.Server, p *acmetest.Pebble, domain string) (*ftpstest.Conn, string) {
	t.Helper()
	cfg := acmeClient(p, domain)
	c := s.Login(t, cfg)
	st := c.ControlState()
	if len(st.VerifiedChains) == 0 || st.VerifiedChains[0][0].VerifyHostname(domain) != nil {
		t.Fatalf("control connection not verified for %s", domain)
	}
	if st.NegotiatedProtocol != "ftp" {
		t.Errorf("ALPN %q, want ftp", st.NegotiatedProtocol)
	}
	testutil.WriteFile(t, s.Home(user), "hello.txt", []byte("hello over ACME"))
	retrieve(t, c, cfg, "hello.txt", "hello over ACME")

	// The same through jlaffaye/ftp, a real client library: its control
	// and data connections use cfg, which trusts only Pebble's root.
	gc := dialGo(t, s, acmeClient(p, domain)) // logs in
	r, err := gc.Retr("hello.txt")
	if err != nil {
		t.Fatalf("jlaffaye RETR: %v", err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "hello over ACME" {
		t.Errorf("jlaffaye RETR = %q", got)
	}
	return c, leafSHA256(st)
}

// retrieve runs PASV + RETR and checks the data connection.
func retrieve(t *testing.T, c *ftpstest.Conn, cfg *tls.Config, name, want string) {
	t.Helper()
	addr := c.Pasv()
	c.Send("RETR " + name)
	dc, err := ftpstest.DialData(t, addr, cfg)
	if err != nil {
		t.Fatalf("data connection: %v", err)
	}
	c.Expect(150)
	got, _ := io.ReadAll(dc)
	c.Expect(226)
	if string(got) != want {
		t.Fatalf("RETR %s = %q", name, got)
	}
	ds := dc.(*tls.Conn).ConnectionState()
	if !ds.DidResume || len(ds.VerifiedChains) == 0 || ds.PeerCertificates[0].VerifyHostname(cfg.ServerName) != nil {
		t.Errorf("data connection: resumed=%t verified chains=%d", ds.DidResume, len(ds.VerifiedChains))
	}
}

func TestACMEChallenges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		challenge string
	}{
		{"http-01", tlsctl.ChallengeHTTP01},
		{"tls-alpn-01", tlsctl.ChallengeTLSALPN01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := acmetest.StartPebble(t, acmetest.PebbleOptions{
				HTTPPort: acmetest.FreePort(t), TLSPort: acmetest.FreePort(t)})
			domain := "ftp-" + tt.challenge + ".acme.test"
			start := time.Now()
			s := ftpstest.NewServer(t, ftpstest.Options{TLS: acmeTLS(p, domain, t.TempDir(), tt.challenge)})
			t.Logf("%s: certificate obtained and server started in %s", tt.challenge, time.Since(start).Round(time.Millisecond))
			checkVerifiedSession(t, s, p, domain)
			if n := p.IssuedCount(); n != 1 {
				t.Errorf("Pebble issued %d certificates, want 1", n)
			}
		})
	}
}

func TestACMEDNS01(t *testing.T) {
	t.Parallel()
	b := acmetest.StartBIND(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{DNSServer: b.Addr})
	domain := "ftp-dns.acme.test"
	start := time.Now()
	s := ftpstest.NewServer(t, ftpstest.Options{TLS: func(c *tlsctl.Config) {
		acmeTLS(p, domain, t.TempDir(), tlsctl.ChallengeDNS01)(c)
		c.HTTPPort, c.TLSALPNPort = 0, 0 // dns-01 needs no inbound port
		c.DNS = tlsctl.DNSConfig{
			Server: b.Addr, Zone: b.Zone, TSIGKeyName: b.KeyName, TSIGAlgorithm: b.KeyAlgorithm,
			TSIGSecretFile: b.KeySecretFile, Resolvers: []string{b.Addr}, PropagationTimeout: 30 * time.Second,
		}
	}})
	t.Logf("dns-01: certificate obtained and server started in %s", time.Since(start).Round(time.Millisecond))
	checkVerifiedSession(t, s, p, domain)
	if s.Log.Contains(strings.TrimSpace(b.KeySecret)) {
		t.Error("the TSIG secret appears in the log")
	}
	// The challenge record is cleaned up.
	if txt := b.LookupTXT(t, "_acme-challenge."+domain); len(txt) != 0 {
		t.Errorf("challenge TXT left behind: %q", txt)
	}
}

func TestACMERefusedDNSUpdateIsExplained(t *testing.T) {
	t.Parallel()
	b := acmetest.StartBIND(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{DNSServer: b.Addr})
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	os.WriteFile(wrong, []byte("c2VjcmV0LXRoYXQtaXMtd3Jvbmc="), 0o600)
	s := ftpstest.NewServer(t, ftpstest.Options{TLS: func(c *tlsctl.Config) {
		acmeTLS(p, "ftp-refused.acme.test", t.TempDir(), tlsctl.ChallengeDNS01)(c)
		c.ObtainTimeout = 5 * time.Second
		c.DNS = tlsctl.DNSConfig{Server: b.Addr, Zone: b.Zone, TSIGKeyName: b.KeyName,
			TSIGSecretFile: wrong, Resolvers: []string{b.Addr}, PropagationTimeout: 5 * time.Second}
	}})
	if !s.Log.Contains("refused by") || !s.Log.Contains("TSIG key") {
		t.Errorf("log does not explain the refused DNS update:\n%s", s.Log.String())
	}
	assertStillServing(t, s)
}

func TestACMEChallengePortInUse(t *testing.T) {
	t.Parallel()
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: acmetest.FreePort(t)})
	// Something else holds the HTTP-01 port and answers nothing useful.
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	go func() {
		for {
			c, err := busy.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	s := ftpstest.NewServer(t, ftpstest.Options{TLS: func(c *tlsctl.Config) {
		acmeTLS(p, "ftp-busy.acme.test", t.TempDir(), tlsctl.ChallengeHTTP01)(c)
		c.ObtainTimeout = 5 * time.Second
	}})
	if !s.Log.Contains("issuance failed") || !s.Log.Contains("tls.http_port") {
		t.Errorf("log does not explain the failed issuance:\n%s", s.Log.String())
	}
	if n := p.IssuedCount(); n != 0 {
		t.Errorf("issued %d", n)
	}
	testutil.WaitFor(t, 20*time.Second, "the failed obtain counted", func() bool { return s.TLS.ACMEStats().ObtainFailed > 0 })
	if st := s.TLS.ACMEStats(); st.ObtainOK != 0 || len(s.TLS.Expiries()) != 0 {
		t.Errorf("ACMEStats() = %+v, Expiries() = %v with no certificate", st, s.TLS.Expiries())
	}
	assertStillServing(t, s)
}

// assertStillServing checks the control port still greets and answers.
func assertStillServing(t *testing.T, s *ftpstest.Server) {
	t.Helper()
	c := s.Dial(t)
	c.Cmd(211, "FEAT")
	c.Cmd(221, "QUIT")
}

func TestACMEStoredCertificateIsReused(t *testing.T) {
	t.Parallel()
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: acmetest.FreePort(t)})
	domain, storage := "ftp-reuse.acme.test", t.TempDir()
	s1 := ftpstest.NewServer(t, ftpstest.Options{TLS: acmeTLS(p, domain, storage, tlsctl.ChallengeHTTP01)})
	_, fp1 := checkVerifiedSession(t, s1, p, domain)
	orders := p.OrderCount()
	s2 := ftpstest.NewServer(t, ftpstest.Options{TLS: acmeTLS(p, domain, storage, tlsctl.ChallengeHTTP01)})
	_, fp2 := checkVerifiedSession(t, s2, p, domain)
	if fp1 != fp2 {
		t.Error("second start serves another certificate")
	}
	if p.IssuedCount() != 1 || p.OrderCount() != orders {
		t.Errorf("second start asked the CA: issued %d, orders %d (were %d)", p.IssuedCount(), p.OrderCount(), orders)
	}
	// The metrics' view: one obtain by the first server, none by the
	// second, and both report the certificate's expiry for the domain.
	if got, want := s1.TLS.ACMEStats(), (tlsctl.ACMEStats{ObtainOK: 1}); got != want {
		t.Errorf("first server ACMEStats() = %+v, want %+v", got, want)
	}
	if got := s2.TLS.ACMEStats(); got != (tlsctl.ACMEStats{}) {
		t.Errorf("second server ACMEStats() = %+v, want none: it reused the stored certificate", got)
	}
	for _, s := range []*ftpstest.Server{s1, s2} {
		exp := s.TLS.Expiries()
		if na := s.TLS.Certificate().NotAfter; len(exp) != 1 || !exp[domain].Equal(na) {
			t.Errorf("Expiries() = %v, want %s: %v", exp, domain, na)
		}
	}
}

func TestACMERenewalReachesNewConnections(t *testing.T) {
	t.Parallel()
	const lifetime = 18 * time.Second // renewal starts with a third left
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: acmetest.FreePort(t), ValidityPeriod: lifetime})
	domain := "ftp-renew.acme.test"
	s := ftpstest.NewServer(t, ftpstest.Options{TLS: func(c *tlsctl.Config) {
		acmeTLS(p, domain, t.TempDir(), tlsctl.ChallengeHTTP01)(c)
		c.RenewCheckInterval = 500 * time.Millisecond
	}})
	old, fp1 := checkVerifiedSession(t, s, p, domain)

	deadline := time.Now().Add(lifetime + 10*time.Second)
	var fp2 string
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		c := s.Dial(t)
		c.AuthTLS(acmeClient(p, domain))
		fp2 = leafSHA256(c.ControlState())
		c.Close()
		if fp2 != fp1 {
			break
		}
	}
	if fp2 == fp1 {
		t.Fatalf("certificate not renewed within %s (issued %d)", lifetime+10*time.Second, p.IssuedCount())
	}
	// The old session keeps working (its data connections resume it),
	// checked first: once the old certificate expires (a third of its
	// lifetime after the renewal starts), the Go client drops the cached
	// session and no longer offers its ticket. New sessions get the
	// renewed certificate.
	retrieve(t, old, old.TLS, "hello.txt", "hello over ACME")
	old.Cmd(221, "QUIT")
	checkVerifiedSession(t, s, p, domain)
	if st := s.TLS.ACMEStats(); st.ObtainOK != 1 || st.RenewOK < 1 || st.ObtainFailed+st.RenewFailed != 0 {
		t.Errorf("ACMEStats() = %+v, want one obtain and at least one renewal, no failure", st)
	}
}

func TestACMETwoNodesShareStorage(t *testing.T) {
	t.Parallel()
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: acmetest.FreePort(t)})
	bin := ftpsdproc.Build(t)
	domain, storage := "ftp-cluster.acme.test", t.TempDir()
	// The nodes run as nobody when the test runs as root: they write the
	// shared storage and read Pebble's CA file.
	if err := ftpsdproc.Own(storage); err != nil {
		t.Fatal(err)
	}
	if err := ftpsdproc.Reach(p.ServerCAFile); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	addrs := make([]string, 2)
	for i := range addrs {
		dir := t.TempDir()
		port := acmetest.FreePort(t)
		pasv := acmetest.FreePort(t)
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := fmt.Sprintf(`[server]
listen = %q
state_dir = "state"
[passive]
ports = "%d"
[tls]
mode = "acme"
domains = [%q]
ca = %q
trusted_roots = %q
agree_to_terms = true
challenges = ["http-01"]
http_port = %d
listen_host = "127.0.0.1"
storage = %q
[[users]]
name = "alice"
password_hash = %q
home = "home"
permissions = ["all"]
`, addrs[i], pasv, domain, p.DirectoryURL, p.ServerCAFile, p.HTTPPort, storage, ftpstest.CheapHash(pass))
		path := filepath.Join(dir, "ftpsd.toml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			startNode(t, bin, path)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var fps []string
	for _, a := range addrs {
		fps = append(fps, nodeFingerprint(t, a, acmeClient(p, domain)))
	}
	if fps[0] != fps[1] {
		t.Error("the nodes serve different certificates")
	}
	if n := p.IssuedCount(); n != 1 {
		t.Errorf("Pebble issued %d certificates for two nodes sharing storage, want 1", n)
	}
}

// startNode runs "ftpsd serve" until the test ends and waits until it
// logs "listening" (after its certificate is ready). It runs as an
// unprivileged user when the test runs as root: ftpsd refuses root. It may
// be called from any goroutine.
func startNode(t *testing.T, bin, config string) {
	if err := ftpsdproc.Own(filepath.Dir(config)); err != nil {
		t.Error(err)
		return
	}
	if _, err := ftpsdproc.Start(t, bin, config, ftpsdproc.Options{Timeout: 90 * time.Second}); err != nil {
		t.Errorf("node %s: %v", config, err)
	}
}

// nodeFingerprint does AUTH TLS against addr and returns the leaf's
// fingerprint after verifying chain and name.
func nodeFingerprint(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c := ftpstest.Dial(t, addr)
	defer c.Close()
	c.AuthTLS(cfg)
	return leafSHA256(c.ControlState())
}

func TestACMENoSNIGetsTheDomainCertificate(t *testing.T) {
	t.Parallel()
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: acmetest.FreePort(t)})
	domain := "ftp-nosni.acme.test"
	s := ftpstest.NewServer(t, ftpstest.Options{TLS: acmeTLS(p, domain, t.TempDir(), tlsctl.ChallengeHTTP01)})
	// ServerName as an IP address: Go then sends no SNI, as FileZilla
	// does when connecting by IP. The chain is verified by hand for the
	// configured domain.
	cfg := &tls.Config{
		ServerName:         "127.0.0.1",
		InsecureSkipVerify: true, // replaced by the explicit check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: domain, Roots: p.IssuerRootPool, Intermediates: inter})
			return err
		},
	}
	nodeFingerprint(t, s.Addr, cfg)
}
