package acmetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// PebbleOptions tune StartPebble. The zero value is usable: free ports
// for the challenges, its own ChallTestSrv as DNS, Pebble's default
// 90-day certificates.
type PebbleOptions struct {
	// HTTPPort is the port on 127.0.0.1 where Pebble's validation
	// authority fetches HTTP-01 challenges (a real CA always uses 80).
	// 0 picks a free port; read it back from Pebble.HTTPPort.
	HTTPPort int
	// TLSPort is where it connects for TLS-ALPN-01 (a real CA: 443).
	// 0 picks a free port; read it back from Pebble.TLSPort.
	TLSPort int
	// DNSServer is the "host:port" Pebble resolves names and looks up
	// DNS-01 TXT records with (over TCP): BIND.Addr for DNS-01 tests.
	// Empty starts a ChallTestSrv (Pebble.ChallTestSrv), which resolves
	// every name to 127.0.0.1.
	DNSServer string
	// ValidityPeriod is the lifetime of issued certificates (whole
	// seconds, at least one). 0 means Pebble's default of 90 days.
	ValidityPeriod time.Duration
	// AuthzReuse lets Pebble reuse a valid authorization for a name (as
	// Let's Encrypt does); by default every order needs a fresh
	// validation, so a test proves its solver ran.
	AuthzReuse bool
	// Env adds or overrides Pebble's environment (e.g.
	// "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_WFE_NONCEREJECT=20").
	Env []string
}

// Pebble is a running Pebble ACME server on 127.0.0.1.
type Pebble struct {
	// DirectoryURL is the ACME directory, "https://127.0.0.1:port/dir".
	DirectoryURL string
	// ServerCAFile, ServerCAPEM and ServerCAPool are the test CA that
	// signed the certificate of Pebble's own HTTPS (for 127.0.0.1, ::1 and
	// localhost): what an ACME client must trust to talk to DirectoryURL
	// (ftpsd's `trusted_roots`).
	ServerCAFile string
	ServerCAPEM  []byte
	ServerCAPool *x509.CertPool
	// IssuerRootPEM, IssuerRootFile and IssuerRootPool are the root that
	// issued certificates chain to (via an intermediate that comes with
	// each certificate): what an FTPS client must trust. Pebble makes a
	// new one at each start.
	IssuerRootPEM  []byte
	IssuerRootFile string
	IssuerRootPool *x509.CertPool
	// ManagementURL is Pebble's management API (HTTPS, same server
	// certificate), "https://127.0.0.1:port".
	ManagementURL string
	// HTTPPort and TLSPort are where the validation authority connects on
	// 127.0.0.1 for HTTP-01 and TLS-ALPN-01.
	HTTPPort, TLSPort int
	// DNSServer is the DNS server Pebble uses.
	DNSServer string
	// ChallTestSrv is the DNS server StartPebble started, or nil when
	// PebbleOptions.DNSServer was given.
	ChallTestSrv *ChallTestSrv
	// ValidityPeriod is the lifetime of issued certificates.
	ValidityPeriod time.Duration

	p *proc
}

// StartPebble starts Pebble on loopback, installing it first if needed,
// waits until its directory answers and fetches its issuing root. It is
// stopped when the test ends.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	bin := ensureTool(t, "pebble")
	if opts.ValidityPeriod < 0 || (opts.ValidityPeriod > 0 && opts.ValidityPeriod < time.Second) {
		t.Fatalf("acmetest: PebbleOptions.ValidityPeriod %v: want 0 or at least 1s", opts.ValidityPeriod)
	}
	validity := uint64((opts.ValidityPeriod + time.Second - 1) / time.Second)
	if validity == 0 {
		validity = 7776000 // Pebble's default, 90 days
	}
	var cts *ChallTestSrv
	dnsServer := opts.DNSServer
	if dnsServer == "" {
		cts = StartChallTestSrv(t)
		dnsServer = cts.DNSAddr
	}
	httpPort, tlsPort := opts.HTTPPort, opts.TLSPort
	if httpPort == 0 {
		httpPort = FreePort(t)
	}
	if tlsPort == 0 {
		tlsPort = FreePort(t)
	}

	// Pebble's HTTPS certificate, from a test CA; Pebble wants absolute
	// paths, which TempDir gives.
	dir := t.TempDir()
	pki := testutil.NewPKI(t)
	caFile, certFile, keyFile := pki.WriteFiles(t, dir)
	caPEM, caPool := pki.CAPEM, pki.CAPool

	authzReuse := "0"
	if opts.AuthzReuse {
		authzReuse = "100"
	}
	env := environ([]string{"PEBBLE_"},
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0",
		"PEBBLE_AUTHZREUSE="+authzReuse,
	)
	env = append(env, opts.Env...)

	start := time.Now()
	var pb *Pebble
	_, err := startReady(t, func() (*proc, func() error, error) {
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		mgmt := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		pb = &Pebble{
			DirectoryURL:   "https://" + listen + "/dir",
			ServerCAFile:   caFile,
			ServerCAPEM:    caPEM,
			ServerCAPool:   caPool,
			ManagementURL:  "https://" + mgmt,
			HTTPPort:       httpPort,
			TLSPort:        tlsPort,
			DNSServer:      dnsServer,
			ChallTestSrv:   cts,
			ValidityPeriod: time.Duration(validity) * time.Second,
		}
		cfg := pebbleConfig(listen, mgmt, certFile, keyFile, httpPort, tlsPort, validity)
		cfgFile := filepath.Join(dir, "pebble-config.json")
		if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
			return nil, nil, err
		}
		p, err := startProc("pebble", bin, []string{"-config", cfgFile, "-dnsserver", dnsServer}, env, dir)
		if err != nil {
			return nil, nil, err
		}
		pb.p = p
		client := pb.HTTPClient()
		return p, func() error { return pb.fetchRoot(client, dir) }, nil
	})
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	t.Logf("acmetest: pebble at %s (HTTP-01 port %d, TLS-ALPN-01 port %d, DNS %s, validity %v) ready in %v",
		pb.DirectoryURL, httpPort, tlsPort, dnsServer, pb.ValidityPeriod, time.Since(start).Round(time.Millisecond))
	return pb
}

func pebbleConfig(listen, mgmt, certFile, keyFile string, httpPort, tlsPort int, validity uint64) []byte {
	type profile struct {
		Description    string `json:"description"`
		ValidityPeriod uint64 `json:"validityPeriod"`
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 0, "order": 0},
		"keyAlgorithm":                   "ecdsa",
		// Exactly one profile: with several, clients that do not name one
		// get a random profile, hence a random lifetime.
		"profiles": map[string]profile{
			"default": {Description: "acmetest", ValidityPeriod: validity},
		},
	}}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

// fetchRoot gets the issuing root from the management API; it fails
// until Pebble is up. It also checks that the directory answers.
func (p *Pebble) fetchRoot(client *http.Client, dir string) error {
	if _, err := get(client, p.DirectoryURL); err != nil {
		return err
	}
	body, err := get(client, p.ManagementURL+"/roots/0")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		return fmt.Errorf("no certificate in /roots/0: %q", body)
	}
	file := filepath.Join(dir, "issuer-root.pem")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		return err
	}
	p.IssuerRootPEM, p.IssuerRootFile, p.IssuerRootPool = body, file, pool
	return nil
}

func get(client *http.Client, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// HTTPClient returns a client that trusts Pebble's server certificate,
// for ACME clients and the management API. Its requests time out after
// 30s.
func (p *Pebble) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: p.ServerCAPool},
			Proxy:           nil,
		},
	}
}

// IssuedCount is how many certificates Pebble has issued since it
// started, counted in its log ("Issued certificate serial ..."), as its
// management API has no such count. Pebble writes that line before the
// certificate can be downloaded, and its log goes straight to a file, so
// the count is exact as soon as a client holds the certificate.
func (p *Pebble) IssuedCount() int { return strings.Count(p.Output(), "Issued certificate serial ") }

// OrderCount is how many orders Pebble has accepted since it started
// (written before it answers the new-order request).
func (p *Pebble) OrderCount() int { return strings.Count(p.Output(), "Added order ") }

// WaitIssued waits up to timeout until IssuedCount is at least n, and
// fails the test otherwise.
func (p *Pebble) WaitIssued(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for p.IssuedCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("acmetest: pebble issued %d certificates within %v, want at least %d", p.IssuedCount(), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Output is everything Pebble printed so far.
func (p *Pebble) Output() string { return p.p.output() }

// Stop stops Pebble now, e.g. to test a CA that cannot be reached (it is
// also stopped when the test ends). A stopped Pebble cannot be restarted;
// a new one has a new root.
func (p *Pebble) Stop() { p.p.Stop() }
