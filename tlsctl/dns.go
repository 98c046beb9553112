package tlsctl

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// tsigAlgorithms maps the tsig_algorithm key to miekg/dns names.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

func isBase64(s string) bool {
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil && s != ""
}

// rfc2136 is a libdns provider (certmagic's DNSProvider) that adds and
// removes the ACME TXT records with RFC 2136 dynamic updates signed with
// TSIG (RFC 8945). No libdns RFC 2136 provider fitting certmagic's libdns
// API is served here, and the protocol is small enough to speak directly.
type rfc2136 struct {
	server  string
	zone    string // configured zone, "" = the zone certmagic found
	keyName string // fully qualified
	alg     string // miekg/dns algorithm name
	secret  string // base64; never logged
}

func newRFC2136(d DNSConfig) (*rfc2136, error) {
	secret, err := d.secret()
	if err != nil {
		return nil, err
	}
	zone := ""
	if d.Zone != "" {
		zone = dns.Fqdn(d.Zone)
	}
	return &rfc2136{
		server:  d.Server,
		zone:    zone,
		keyName: dns.Fqdn(d.TSIGKeyName),
		alg:     tsigAlgorithms[strings.ToLower(d.TSIGAlgorithm)],
		secret:  secret,
	}, nil
}

// AppendRecords adds TXT records (the only type ACME needs).
func (p *rfc2136) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return p.update(ctx, zone, recs, true)
}

// DeleteRecords removes exactly the given TXT records.
func (p *rfc2136) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return p.update(ctx, zone, recs, false)
}

func (p *rfc2136) update(ctx context.Context, zone string, recs []libdns.Record, add bool) ([]libdns.Record, error) {
	target := dns.Fqdn(zone)
	if p.zone != "" {
		target = p.zone
	}
	m := new(dns.Msg)
	m.SetUpdate(target)
	var rrs []dns.RR
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "TXT" {
			return nil, fmt.Errorf("rfc2136: record type %s not supported (only TXT)", rr.Type)
		}
		ttl := uint32(rr.TTL / time.Second)
		if ttl == 0 {
			ttl = 60
		}
		rrs = append(rrs, &dns.TXT{
			Hdr: dns.RR_Header{Name: libdns.AbsoluteName(rr.Name, zone), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
			Txt: splitTXT(rr.Data),
		})
	}
	if add {
		m.Insert(rrs)
	} else {
		m.Remove(rrs)
	}
	m.SetTsig(p.keyName, p.alg, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 15 * time.Second, TsigSecret: map[string]string{p.keyName: p.secret}}
	resp, _, err := c.ExchangeContext(ctx, m, p.server)
	if errors.Is(err, dns.ErrAuth) || errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrKeyAlg) || errors.Is(err, dns.ErrTime) {
		// The server answered, but not with a valid signature: it
		// rejected ours (BADSIG, BADKEY, BADTIME).
		return nil, fmt.Errorf("DNS update of zone %s refused by %s: %w (check the TSIG key name, secret and algorithm, and the server's clock)", target, p.server, err)
	}
	if err != nil {
		return nil, fmt.Errorf("DNS update of zone %s at %s failed: %w (check tls.dns.server and that TCP port 53 is reachable)", target, p.server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("DNS update of zone %s refused by %s: %s (check tls.dns.zone, the TSIG key name/secret/algorithm and the server's allow-update/update-policy)",
			target, p.server, dns.RcodeToString[resp.Rcode])
	}
	return recs, nil
}

// splitTXT cuts a TXT value into the 255-byte strings DNS allows.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
