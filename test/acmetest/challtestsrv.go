package acmetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ChallTestSrv is a running pebble-challtestsrv used only as a DNS server:
// it answers A 127.0.0.1 for every name (so Pebble's HTTP-01 and
// TLS-ALPN-01 validations reach the test on loopback) and no AAAA (so
// Pebble never dials [::1]). Its own HTTP-01, TLS-ALPN-01 and DoH
// responders are off, so it takes no challenge port.
type ChallTestSrv struct {
	// DNSAddr is "127.0.0.1:port", served over UDP and TCP (Pebble
	// queries over TCP).
	DNSAddr string
	// ManagementURL is its plain-HTTP management API,
	// "http://127.0.0.1:port".
	ManagementURL string

	p *proc
}

// StartChallTestSrv starts pebble-challtestsrv on loopback, installing it
// first if needed. It is stopped when the test ends.
func StartChallTestSrv(t testing.TB) *ChallTestSrv {
	t.Helper()
	bin := ensureTool(t, "pebble-challtestsrv")
	start := time.Now()
	var s *ChallTestSrv
	p, err := startReady(t, func() (*proc, func() error, error) {
		dnsPort, mgmtPort := freeDNSPort(t), FreePort(t)
		s = &ChallTestSrv{
			DNSAddr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort)),
			ManagementURL: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(mgmtPort)),
		}
		args := []string{
			"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
			"-dnsserver", s.DNSAddr,
			"-management", net.JoinHostPort("127.0.0.1", strconv.Itoa(mgmtPort)),
			"-defaultIPv4", "127.0.0.1",
			"-defaultIPv6", "",
		}
		p, err := startProc("pebble-challtestsrv", bin, args, environ(nil), t.TempDir())
		return p, s.ready, err
	})
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	s.p = p
	t.Logf("acmetest: pebble-challtestsrv DNS on %s ready in %v", s.DNSAddr, time.Since(start).Round(time.Millisecond))
	return s
}

// ready checks that the DNS server answers A 127.0.0.1 over UDP and TCP and
// that the management API is up.
func (s *ChallTestSrv) ready() error {
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion("ready.acme.test.", dns.TypeA)
		r, _, err := c.Exchange(m, s.DNSAddr)
		if err != nil {
			return fmt.Errorf("DNS over %s: %v", netw, err)
		}
		if len(r.Answer) == 0 {
			return fmt.Errorf("DNS over %s: no A answer", netw)
		}
	}
	c, err := net.DialTimeout("tcp", s.ManagementURL[len("http://"):], time.Second)
	if err != nil {
		return fmt.Errorf("management API: %v", err)
	}
	return c.Close()
}

// Output is everything the process printed so far.
func (s *ChallTestSrv) Output() string { return s.p.output() }

// Stop stops the process now (it is also stopped when the test ends).
func (s *ChallTestSrv) Stop() { s.p.Stop() }

// post calls one endpoint of the management API with a JSON body.
func (s *ChallTestSrv) post(t testing.TB, path string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ManagementURL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("acmetest: challtestsrv %s: %v", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("acmetest: challtestsrv %s %s: %s %s", path, b, resp.Status, msg)
	}
}

// SetTXT adds a TXT answer for host (a name, with or without the final
// dot), e.g. "_acme-challenge.example.acme.test", for DNS-01 without BIND.
func (s *ChallTestSrv) SetTXT(t testing.TB, host, value string) {
	t.Helper()
	s.post(t, "/set-txt", map[string]string{"host": dns.Fqdn(host), "value": value})
}

// ClearTXT removes the TXT answers for host.
func (s *ChallTestSrv) ClearTXT(t testing.TB, host string) {
	t.Helper()
	s.post(t, "/clear-txt", map[string]string{"host": dns.Fqdn(host)})
}

// AddA makes host resolve to addrs instead of the default 127.0.0.1.
func (s *ChallTestSrv) AddA(t testing.TB, host string, addrs ...string) {
	t.Helper()
	s.post(t, "/add-a", map[string]any{"host": dns.Fqdn(host), "addresses": addrs})
}

// ClearA removes the A answers AddA set for host.
func (s *ChallTestSrv) ClearA(t testing.TB, host string) {
	t.Helper()
	s.post(t, "/clear-a", map[string]string{"host": dns.Fqdn(host)})
}

// SetDefaultIPv4 changes the A answer for names without their own; ""
// makes such names not resolve at all (e.g. to test "domain does not
// resolve here").
func (s *ChallTestSrv) SetDefaultIPv4(t testing.TB, ip string) {
	t.Helper()
	s.post(t, "/set-default-ipv4", map[string]string{"ip": ip})
}

// SetServFail makes every query for host fail with SERVFAIL.
func (s *ChallTestSrv) SetServFail(t testing.TB, host string) {
	t.Helper()
	s.post(t, "/set-servfail", map[string]string{"host": dns.Fqdn(host)})
}

// ClearServFail undoes SetServFail.
func (s *ChallTestSrv) ClearServFail(t testing.TB, host string) {
	t.Helper()
	s.post(t, "/clear-servfail", map[string]string{"host": dns.Fqdn(host)})
}
