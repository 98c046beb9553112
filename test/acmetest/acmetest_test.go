package acmetest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/ftpsd/ftpsd/test/acmetest"
)

// solver makes one challenge answerable and returns how to undo it.
type solver struct {
	typ     string
	prepare func(t *testing.T, cl *acme.Client, domain string, ch *acme.Challenge) (undo func())
}

// obtain runs a whole ACME issuance for domain with x/crypto/acme against
// p, checks the chain it gets with verify, and returns how long the order
// took, from new order to certificate.
func obtain(t *testing.T, p *acmetest.Pebble, domain string, s solver) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	accountKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl := &acme.Client{Key: accountKey, DirectoryURL: p.DirectoryURL, HTTPClient: p.HTTPClient()}
	if _, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatalf("register: %v", err)
	}

	start := time.Now()
	order, err := cl.AuthorizeOrder(ctx, acme.DomainIDs(domain))
	if err != nil {
		t.Fatalf("new order: %v", err)
	}
	for _, u := range order.AuthzURLs {
		az, err := cl.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatalf("authorization: %v", err)
		}
		i := slices.IndexFunc(az.Challenges, func(c *acme.Challenge) bool { return c.Type == s.typ })
		if i < 0 {
			t.Fatalf("no %s challenge offered for %s", s.typ, domain)
		}
		undo := s.prepare(t, cl, domain, az.Challenges[i])
		if _, err := cl.Accept(ctx, az.Challenges[i]); err != nil {
			t.Fatalf("accept %s: %v", s.typ, err)
		}
		err = waitAuthorization(ctx, cl, u)
		undo()
		if err != nil {
			t.Fatalf("authorization of %s by %s: %v", domain, s.typ, err)
		}
	}
	if order, err = cl.WaitOrder(ctx, order.URI); err != nil {
		t.Fatalf("order: %v", err)
	}
	certKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{domain}}, certKey)
	if err != nil {
		t.Fatal(err)
	}
	// CreateCertFromOrder, not CreateOrderCert: Pebble answers finalize with
	// "processing" and no Location, and CreateOrderCert then polls "".
	ders, _, err := cl.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		t.Fatalf("finalize: %v", err)
	}
	took := time.Since(start)
	var chain []*x509.Certificate
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) < 2 {
		t.Fatalf("got %d certificates, want leaf and intermediate", len(chain))
	}
	if pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(certKey.Public()) {
		t.Fatal("leaf is not for the CSR's key")
	}
	verify(t, p, chain, domain)
	return took
}

// waitAuthorization polls every 20ms: x/crypto/acme's WaitAuthorization
// waits a whole second when the CA sends no Retry-After (Pebble with
// retryAfter 0), which would hide how fast the CA really is.
func waitAuthorization(ctx context.Context, cl *acme.Client, url string) error {
	for {
		az, err := cl.GetAuthorization(ctx, url)
		if err != nil {
			return err
		}
		switch az.Status {
		case acme.StatusValid:
			return nil
		case acme.StatusInvalid, acme.StatusDeactivated, acme.StatusExpired, acme.StatusRevoked:
			return fmt.Errorf("authorization %s: %s", az.Status, describe(az))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func describe(az *acme.Authorization) string {
	for _, c := range az.Challenges {
		if c.Error != nil {
			return c.Error.Error()
		}
	}
	return "no challenge error"
}

// verify checks that chain is for domain and chains to Pebble's issuing
// root, and that its lifetime is the configured one.
func verify(t *testing.T, p *acmetest.Pebble, chain []*x509.Certificate, domain string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       domain,
		Roots:         p.IssuerRootPool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		t.Fatalf("issued certificate does not verify against Pebble's root: %v", err)
	}
	// Pebble sets NotAfter = NotBefore + validity - 1s.
	if life := chain[0].NotAfter.Sub(chain[0].NotBefore) + time.Second; life != p.ValidityPeriod {
		t.Errorf("certificate lifetime %v, want %v", life, p.ValidityPeriod)
	}
	// And it must not verify against the server CA, or anything else.
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: domain, Roots: p.ServerCAPool, Intermediates: inter}); err == nil {
		t.Error("issued certificate verifies against the server CA")
	}
}

// http01 serves the challenge on 127.0.0.1:p.HTTPPort, as an ACME HTTP
// solver would on port 80.
func http01(p *acmetest.Pebble) solver {
	return solver{typ: "http-01", prepare: func(t *testing.T, cl *acme.Client, domain string, ch *acme.Challenge) func() {
		body, err := cl.HTTP01ChallengeResponse(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		path := cl.HTTP01ChallengePath(ch.Token)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.HTTPPort)))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path || r.Host != net.JoinHostPort(domain, strconv.Itoa(p.HTTPPort)) {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, body)
		})}
		go srv.Serve(l)
		return func() { srv.Close() }
	}}
}

// tlsALPN01 answers the challenge on 127.0.0.1:p.TLSPort.
func tlsALPN01(p *acmetest.Pebble) solver {
	return solver{typ: "tls-alpn-01", prepare: func(t *testing.T, cl *acme.Client, domain string, ch *acme.Challenge) func() {
		cert, err := cl.TLSALPN01ChallengeCert(ch.Token, domain)
		if err != nil {
			t.Fatal(err)
		}
		l, err := tls.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.TLSPort)), &tls.Config{
			NextProtos: []string{acme.ALPNProto},
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if hello.ServerName != domain || !slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
					return nil, errors.New("not a TLS-ALPN-01 validation for " + domain)
				}
				return &cert, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.(*tls.Conn).Handshake()
					c.Close()
				}()
			}
		}()
		return func() { l.Close() }
	}}
}

// dns01 publishes the challenge in BIND through a signed RFC 2136 update.
func dns01(b *acmetest.BIND) solver {
	return solver{typ: "dns-01", prepare: func(t *testing.T, cl *acme.Client, domain string, ch *acme.Challenge) func() {
		val, err := cl.DNS01ChallengeRecord(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		name := "_acme-challenge." + domain
		b.AddTXT(t, name, val)
		b.WaitTXT(t, name, val, 5*time.Second)
		return func() { b.RemoveTXT(t, name) }
	}}
}

func TestPebbleHTTP01(t *testing.T) {
	t.Parallel()
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{ValidityPeriod: time.Hour})
	const domain = "smoke.acme.test"
	took := obtain(t, p, domain, http01(p))
	if n := p.IssuedCount(); n != 1 {
		t.Errorf("IssuedCount = %d, want 1", n)
	}
	if n := p.OrderCount(); n != 1 {
		t.Errorf("OrderCount = %d, want 1", n)
	}
	t.Logf("HTTP-01 issuance (new order to certificate) took %v", took)

	// A second order validates afresh (no authorization reuse) and counts.
	took = obtain(t, p, domain, http01(p))
	if n := p.IssuedCount(); n != 2 {
		t.Errorf("IssuedCount = %d, want 2", n)
	}
	t.Logf("second HTTP-01 issuance took %v", took)
}

func TestPebbleTLSALPN01(t *testing.T) {
	t.Parallel()
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{ValidityPeriod: 2 * time.Minute})
	const domain = "alpn.acme.test"
	took := obtain(t, p, domain, tlsALPN01(p))
	t.Logf("TLS-ALPN-01 issuance took %v", took)
}

// TestPebbleHTTP01Fails proves validation is real: with nothing on the
// HTTP-01 port the authorization fails, quickly.
func TestPebbleHTTP01Fails(t *testing.T) {
	t.Parallel()
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cl := &acme.Client{Key: key, DirectoryURL: p.DirectoryURL, HTTPClient: p.HTTPClient()}
	if _, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	order, err := cl.AuthorizeOrder(ctx, acme.DomainIDs("nobody.acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	az, err := cl.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(az.Challenges, func(c *acme.Challenge) bool { return c.Type == "http-01" })
	if _, err := cl.Accept(ctx, az.Challenges[i]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = cl.WaitAuthorization(ctx, order.AuthzURLs[0])
	var aerr *acme.AuthorizationError
	if !errors.As(err, &aerr) {
		t.Fatalf("WaitAuthorization = %v, want an AuthorizationError", err)
	}
	t.Logf("failed validation reported in %v: %v", time.Since(start), err)
	if p.IssuedCount() != 0 {
		t.Errorf("IssuedCount = %d, want 0", p.IssuedCount())
	}
}

func TestBINDUpdate(t *testing.T) {
	t.Parallel()
	b := acmetest.StartBIND(t)
	const name = "_acme-challenge.update.acme.test."

	// Wildcard A for every name in the zone.
	if rrs := b.Lookup(t, "anything.acme.test", dns.TypeA); len(rrs) != 1 || rrs[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("A anything.acme.test = %v, want 127.0.0.1", rrs)
	}
	if v := b.LookupTXT(t, name); len(v) != 0 {
		t.Fatalf("TXT before update = %q", v)
	}

	// A TSIG-signed RFC 2136 update, built by hand with miekg/dns.
	m := new(dns.Msg)
	m.SetUpdate(b.Zone)
	rr, err := dns.NewRR(name + ` 60 IN TXT "hello-acme"`)
	if err != nil {
		t.Fatal(err)
	}
	m.Insert([]dns.RR{rr})
	m.SetTsig(b.KeyName, dns.Fqdn(b.KeyAlgorithm), 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{b.KeyName: b.KeySecret}}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update rcode %s", dns.RcodeToString[r.Rcode])
	}
	if v := b.LookupTXT(t, name); !slices.Equal(v, []string{"hello-acme"}) {
		t.Fatalf("TXT after update = %q, want [hello-acme]", v)
	}

	// The helpers, and removal.
	b.AddTXT(t, name, "second")
	b.WaitTXT(t, name, "second", 2*time.Second)
	b.RemoveTXT(t, name)
	b.WaitTXT(t, name, "", 2*time.Second)

	// An update with a wrong secret is refused (NOTAUTH); unsigned too.
	bad := *b
	bad.KeySecret = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	err = bad.Update([]dns.RR{rr}, nil)
	if err == nil {
		t.Fatal("update with a wrong TSIG secret succeeded")
	}
	t.Logf("wrong secret: %v", err)
	m = new(dns.Msg)
	m.SetUpdate(b.Zone)
	m.Insert([]dns.RR{rr})
	r, _, err = (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("unsigned update: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if v := b.LookupTXT(t, name); len(v) != 0 {
		t.Fatalf("TXT after refused updates = %q", v)
	}
}

// TestPebbleDNS01BIND is the whole DNS-01 path: Pebble resolves through
// BIND and finds the TXT record a signed update put there.
func TestPebbleDNS01BIND(t *testing.T) {
	t.Parallel()
	b := acmetest.StartBIND(t)
	p := acmetest.StartPebble(t, acmetest.PebbleOptions{DNSServer: b.Addr, ValidityPeriod: 10 * time.Minute})
	if p.ChallTestSrv != nil {
		t.Fatal("StartPebble started a challtestsrv although DNSServer was set")
	}
	const domain = "dns.acme.test"
	took := obtain(t, p, domain, dns01(b))
	t.Logf("DNS-01 issuance through BIND took %v", took)
}

// TestChallTestSrvDNS checks the management helpers against its DNS.
func TestChallTestSrvDNS(t *testing.T) {
	t.Parallel()
	s := acmetest.StartChallTestSrv(t)
	query := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, s.DNSAddr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := query("x.acme.test", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("default A = %v", r.Answer)
	}
	if r := query("x.acme.test", dns.TypeAAAA); len(r.Answer) != 0 {
		t.Fatalf("AAAA = %v, want none (Pebble would dial [::1] first)", r.Answer)
	}
	s.SetTXT(t, "_acme-challenge.x.acme.test", "tok")
	if r := query("_acme-challenge.x.acme.test", dns.TypeTXT); len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "tok" {
		t.Fatalf("TXT = %v", r.Answer)
	}
	s.ClearTXT(t, "_acme-challenge.x.acme.test")
	if r := query("_acme-challenge.x.acme.test", dns.TypeTXT); len(r.Answer) != 0 {
		t.Fatalf("TXT after clear = %v", r.Answer)
	}
	s.AddA(t, "y.acme.test", "127.0.0.2")
	if r := query("y.acme.test", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
		t.Fatalf("A after AddA = %v", r.Answer)
	}
	s.ClearA(t, "y.acme.test")
	s.SetServFail(t, "z.acme.test")
	if r := query("z.acme.test", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode after SetServFail = %s", dns.RcodeToString[r.Rcode])
	}
	s.ClearServFail(t, "z.acme.test")
	s.SetDefaultIPv4(t, "")
	if r := query("x.acme.test", dns.TypeA); len(r.Answer) != 0 {
		t.Fatalf("A with no default = %v", r.Answer)
	}
}
