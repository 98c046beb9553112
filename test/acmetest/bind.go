package acmetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BIND is a running BIND9 named, authoritative for Zone on 127.0.0.1
// (UDP and TCP), accepting RFC 2136 updates signed with the TSIG key
// KeyName. The zone holds SOA, NS, an A 127.0.0.1 at the apex and a
// wildcard A 127.0.0.1 (*.acme.test.), so every name in it resolves to
// loopback until a record is added under it (an empty non-terminal then
// hides the wildcard: once _acme-challenge.x.acme.test. exists, x.acme.test.
// has no A record any more — add one with Update if a test needs both).
type BIND struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Zone is "acme.test." (fully qualified).
	Zone string
	// KeyName is the TSIG key's name, "ftpsd-test." (fully qualified).
	KeyName string
	// KeyAlgorithm is "hmac-sha256" (BIND's spelling; miekg/dns wants
	// dns.Fqdn of it, which is dns.HmacSHA256).
	KeyAlgorithm string
	// KeySecret is the key's secret, base64, new for each BIND.
	KeySecret string
	// KeySecretFile holds KeySecret and a newline (mode 0600), for
	// configurations that read the secret from a file.
	KeySecretFile string
	// Dir is named's working directory: config, zone file, journal.
	Dir string

	p *proc
}

// BINDZone is the zone StartBIND serves.
const BINDZone = "acme.test."

var (
	namedMu   sync.Mutex
	namedPath string
	namedErr  error
)

// ensureNamed returns the path of named, installing Debian's bind9 with
// apt-get when it is missing (as root only).
func ensureNamed(t testing.TB) string {
	t.Helper()
	namedMu.Lock()
	defer namedMu.Unlock()
	if namedPath == "" && namedErr == nil {
		namedPath, namedErr = findOrInstallNamed(t)
	}
	if namedErr != nil {
		unavailable(t, "%v", namedErr)
	}
	return namedPath
}

func lookNamed() (string, error) {
	if p, err := exec.LookPath("named"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/named", "/usr/local/sbin/named"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func findOrInstallNamed(t testing.TB) (string, error) {
	t.Helper()
	if p, err := lookNamed(); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("named (BIND9) is not installed and this is not root, so it cannot be installed: run `apt-get install bind9 bind9-dnsutils`")
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		return "", fmt.Errorf("named (BIND9) is not installed and there is no apt-get to install it: %v", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), aptTimeout)
	defer cancel()
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update", "-qq"},
		// Another test binary may be installing at the same time: wait
		// for dpkg's lock rather than fail.
		{"-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "bind9", "bind9-dnsutils"},
	} {
		cmd := exec.CommandContext(ctx, apt, args...)
		cmd.Env = env
		cmd.Stdin = nil
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("named (BIND9) is not installed and `apt-get %s` failed after %v: %v\n%s",
				strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, bytes.TrimSpace(out))
		}
	}
	p, err := lookNamed()
	if err != nil {
		return "", fmt.Errorf("apt-get installed bind9 but named is not found")
	}
	t.Logf("acmetest: installed bind9 with apt-get in %v", time.Since(start).Round(time.Millisecond))
	return p, nil
}

// namedConfined reports whether an AppArmor profile for named is loaded
// in enforce mode: it would keep named from reading and writing the
// test's temporary directory.
func namedConfined() bool {
	b, err := os.ReadFile("/sys/kernel/security/apparmor/profiles")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "named") && strings.Contains(line, "(enforce)") {
			return true
		}
	}
	return false
}

// StartBIND starts named on a free loopback port with a new TSIG key,
// installing bind9 first if needed, and waits until it answers the zone's
// SOA over UDP and TCP. It is stopped when the test ends.
func StartBIND(t testing.TB) *BIND {
	t.Helper()
	bin := ensureNamed(t)
	dir := t.TempDir()
	if namedConfined() {
		// AppArmor profiles attach by path: a copy of the binary runs
		// unconfined.
		cp := filepath.Join(dir, "named")
		if err := copyFile(bin, cp, 0o755); err != nil {
			t.Fatalf("acmetest: AppArmor confines named and copying it failed: %v", err)
		}
		bin = cp
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	b := &BIND{
		Zone:          BINDZone,
		KeyName:       "ftpsd-test.",
		KeyAlgorithm:  "hmac-sha256",
		KeySecret:     base64.StdEncoding.EncodeToString(secret),
		KeySecretFile: filepath.Join(dir, "tsig.secret"),
		Dir:           dir,
	}
	if err := os.WriteFile(b.KeySecretFile, []byte(b.KeySecret+"\n"), 0o600); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	zoneFile := filepath.Join(dir, "acme.test.zone")
	if err := os.WriteFile(zoneFile, []byte(zoneText), 0o644); err != nil {
		t.Fatalf("acmetest: %v", err)
	}

	start := time.Now()
	_, err := startReady(t, func() (*proc, func() error, error) {
		port := freeDNSPort(t)
		b.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := filepath.Join(dir, "named.conf")
		if err := os.WriteFile(conf, []byte(b.namedConf(port, zoneFile)), 0o644); err != nil {
			return nil, nil, err
		}
		// -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker.
		// As root named keeps running as root without -u.
		p, err := startProc("named", bin, []string{"-g", "-4", "-n", "1", "-c", conf}, environ(nil), dir)
		if err != nil {
			return nil, nil, err
		}
		b.p = p
		return p, b.ready, nil
	})
	if err != nil && strings.Contains(err.Error(), "ermission denied") {
		err = fmt.Errorf("%v\n(named was refused access to %s: AppArmor or SELinux confining named?)", err, dir)
	}
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	t.Logf("acmetest: named for %s on %s ready in %v", b.Zone, b.Addr, time.Since(start).Round(time.Millisecond))
	return b
}

const zoneText = `$TTL 60
@	IN SOA	ns.acme.test. hostmaster.acme.test. ( 1 60 60 600 60 )
@	IN NS	ns.acme.test.
@	IN A	127.0.0.1
ns	IN A	127.0.0.1
*	IN A	127.0.0.1
`

func (b *BIND) namedConf(port int, zoneFile string) string {
	d := b.Dir
	return fmt.Sprintf(`options {
	directory %[1]q;
	pid-file %[2]q;
	lock-file %[3]q;
	session-keyfile %[4]q;
	managed-keys-directory %[1]q;
	dump-file %[5]q;
	statistics-file %[6]q;
	listen-on port %[7]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	allow-query { any; };
	allow-transfer { none; };
	notify no;
};
controls { };
key %[8]q {
	algorithm %[9]s;
	secret %[10]q;
};
zone %[11]q {
	type primary;
	file %[12]q;
	allow-update { key %[8]q; };
};
`, d, filepath.Join(d, "named.pid"), filepath.Join(d, "named.lock"), filepath.Join(d, "session.key"),
		filepath.Join(d, "named_dump.db"), filepath.Join(d, "named.stats"), port,
		b.KeyName, b.KeyAlgorithm, b.KeySecret, b.Zone, zoneFile)
}

func (b *BIND) ready() error {
	for _, netw := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion(b.Zone, dns.TypeSOA)
		c := &dns.Client{Net: netw, Timeout: time.Second}
		r, _, err := c.Exchange(m, b.Addr)
		if err != nil {
			return fmt.Errorf("SOA over %s: %v", netw, err)
		}
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) == 0 {
			return fmt.Errorf("SOA over %s: rcode %s, authoritative %v, %d answers",
				netw, dns.RcodeToString[r.Rcode], r.Authoritative, len(r.Answer))
		}
	}
	return nil
}

// Output is everything named printed so far.
func (b *BIND) Output() string { return b.p.output() }

// Stop stops named now (it is also stopped when the test ends).
func (b *BIND) Stop() { b.p.Stop() }

// Update sends one RFC 2136 update of the zone signed with the TSIG key:
// it removes the RRsets of the names in removeNames (all types) and then
// inserts insert. It returns an error if named refuses it.
func (b *BIND) Update(insert []dns.RR, removeNames []string) error {
	m := new(dns.Msg)
	m.SetUpdate(b.Zone)
	for _, name := range removeNames {
		m.RemoveName([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeANY, Class: dns.ClassANY}}})
	}
	if len(insert) > 0 {
		m.Insert(insert)
	}
	return b.send(m)
}

// send signs the update m with the TSIG key and sends it over TCP.
func (b *BIND) send(m *dns.Msg) error {
	m.SetTsig(b.KeyName, dns.Fqdn(b.KeyAlgorithm), 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{b.KeyName: b.KeySecret}}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		return fmt.Errorf("DNS update to %s: %w", b.Addr, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("DNS update to %s refused: %s", b.Addr, dns.RcodeToString[r.Rcode])
	}
	return nil
}

// AddTXT adds a TXT record (TTL 60) for name through a signed update.
func (b *BIND) AddTXT(t testing.TB, name, value string) {
	t.Helper()
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{value}}
	if err := b.Update([]dns.RR{rr}, nil); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// RemoveTXT removes every TXT record of name through a signed update.
func (b *BIND) RemoveTXT(t testing.TB, name string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetUpdate(b.Zone)
	m.RemoveRRset([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET}}})
	if err := b.send(m); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// Lookup asks named (directly, over UDP) for name's records of type
// qtype and returns the answer section; NXDOMAIN and NODATA give none.
func (b *BIND) Lookup(t testing.TB, name string, qtype uint16) []dns.RR {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		t.Fatalf("acmetest: DNS query %s %s to %s: %v", name, dns.TypeToString[qtype], b.Addr, err)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		t.Fatalf("acmetest: DNS query %s %s to %s: %s", name, dns.TypeToString[qtype], b.Addr, dns.RcodeToString[r.Rcode])
	}
	return r.Answer
}

// LookupTXT returns the TXT values of name (each record's strings
// joined), as named serves them now.
func (b *BIND) LookupTXT(t testing.TB, name string) []string {
	t.Helper()
	var vals []string
	for _, rr := range b.Lookup(t, name, dns.TypeTXT) {
		if txt, ok := rr.(*dns.TXT); ok {
			vals = append(vals, strings.Join(txt.Txt, ""))
		}
	}
	return vals
}

// WaitTXT waits up to timeout until name has a TXT record with value (or,
// if value is "", none at all), and fails the test otherwise.
func (b *BIND) WaitTXT(t testing.TB, name, value string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		vals := b.LookupTXT(t, name)
		if (value == "" && len(vals) == 0) || (value != "" && slices.Contains(vals, value)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("acmetest: after %v, TXT %s is %q, want %q", timeout, name, vals, value)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
