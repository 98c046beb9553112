package tlsctl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of the acme mode.
const (
	defaultRenewCheckInterval = 10 * time.Minute
	defaultObtainTimeout      = 5 * time.Minute
	defaultPropagationTimeout = 2 * time.Minute
)

// validateACME fills the acme-mode defaults and checks its keys.
func (c *Config) validateACME() error {
	if len(c.Domains) == 0 {
		return errors.New(`tls.domains: required when tls.mode = "acme" (e.g. ["ftp.example.com"])`)
	}
	for i, d := range c.Domains {
		if isIP(d) || !validHostOrIP(d) {
			return fmt.Errorf("tls.domains[%d]: %q is not a DNS name (ACME certificates here are for names, not IP addresses)", i, d)
		}
		if strings.HasPrefix(d, "*.") && !slices.Contains(c.Challenges, ChallengeDNS01) {
			return fmt.Errorf("tls.domains[%d]: %q: wildcard names need tls.challenges = [\"dns-01\"]", i, d)
		}
	}
	if !c.AgreeToTerms {
		return errors.New("tls.agree_to_terms: must be true in acme mode: it accepts the CA's subscriber agreement (for Let's Encrypt: https://letsencrypt.org/repository/)")
	}
	switch strings.ToLower(c.CA) {
	case "", "production":
		c.CA = LetsEncryptProduction
	case "staging":
		c.CA = LetsEncryptStaging
	default:
		u, err := url.Parse(c.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("tls.ca: %q (want \"production\", \"staging\" or an https:// ACME directory URL)", c.CA)
		}
	}
	if c.TrustedRoots != "" {
		if _, err := os.Stat(c.TrustedRoots); err != nil {
			return fmt.Errorf("tls.trusted_roots: %v", err)
		}
	}
	if len(c.Challenges) == 0 {
		c.Challenges = []string{ChallengeHTTP01}
	}
	for i, ch := range c.Challenges {
		switch ch {
		case ChallengeHTTP01, ChallengeTLSALPN01, ChallengeDNS01:
		default:
			return fmt.Errorf("tls.challenges[%d]: %q (want %s, %s or %s)", i, ch, ChallengeHTTP01, ChallengeTLSALPN01, ChallengeDNS01)
		}
	}
	ports := []struct {
		key string
		v   *int
		def int
	}{{"http_port", &c.HTTPPort, 80}, {"tls_alpn_port", &c.TLSALPNPort, 443}}
	for _, p := range ports {
		if *p.v == 0 {
			*p.v = p.def
		}
		if *p.v < 1 || *p.v > 65535 {
			return fmt.Errorf("tls.%s: %d is not a port", p.key, *p.v)
		}
	}
	if c.ListenHost != "" && !isIP(c.ListenHost) {
		return fmt.Errorf("tls.listen_host: %q is not an IP address", c.ListenHost)
	}
	if c.Storage == "" {
		if c.StateDir == "" {
			return errors.New("tls.storage: required when server.state_dir is empty")
		}
		c.Storage = filepath.Join(c.StateDir, "acme")
	}
	if c.RenewCheckInterval == 0 {
		c.RenewCheckInterval = defaultRenewCheckInterval
	}
	if c.ObtainTimeout == 0 {
		c.ObtainTimeout = defaultObtainTimeout
	}
	if c.RenewCheckInterval < 0 || c.ObtainTimeout < 0 {
		return errors.New("tls.renew_check_interval, tls.obtain_timeout: must be positive")
	}
	if slices.Contains(c.Challenges, ChallengeDNS01) {
		return c.DNS.validate()
	}
	return nil
}

func isIP(s string) bool { return net.ParseIP(s) != nil }

// validate checks [tls.dns] for the dns-01 challenge.
func (d *DNSConfig) validate() error {
	if _, _, err := net.SplitHostPort(d.Server); err != nil {
		return fmt.Errorf("tls.dns.server: %q: want host:port of the primary name server (e.g. \"ns1.example.com:53\")", d.Server)
	}
	if d.Zone != "" && !validHostOrIP(strings.TrimSuffix(d.Zone, ".")) {
		return fmt.Errorf("tls.dns.zone: %q is not a DNS zone name", d.Zone)
	}
	if d.TSIGKeyName == "" {
		return errors.New("tls.dns.tsig_key_name: required for dns-01")
	}
	if d.TSIGAlgorithm == "" {
		d.TSIGAlgorithm = "hmac-sha256"
	}
	if _, ok := tsigAlgorithms[strings.ToLower(d.TSIGAlgorithm)]; !ok {
		return fmt.Errorf("tls.dns.tsig_algorithm: %q (want hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1)", d.TSIGAlgorithm)
	}
	if d.TSIGSecretFile == "" && d.TSIGSecretEnv == "" {
		return errors.New("tls.dns.tsig_secret_file or tls.dns.tsig_secret_env: one is required for dns-01")
	}
	if _, err := d.secret(); err != nil {
		return err
	}
	for i, r := range d.Resolvers {
		if _, p, err := net.SplitHostPort(r); err != nil || p == "" {
			return fmt.Errorf("tls.dns.resolvers[%d]: %q: want host:port", i, r)
		} else if _, err := strconv.Atoi(p); err != nil {
			return fmt.Errorf("tls.dns.resolvers[%d]: %q: %q is not a port", i, r, p)
		}
	}
	if d.PropagationTimeout == 0 {
		d.PropagationTimeout = defaultPropagationTimeout
	}
	return nil
}

// secret reads the TSIG secret from its file or environment variable.
func (d *DNSConfig) secret() (string, error) {
	var s string
	if d.TSIGSecretFile != "" {
		b, err := os.ReadFile(d.TSIGSecretFile)
		if err != nil {
			return "", fmt.Errorf("tls.dns.tsig_secret_file: %v", err)
		}
		s = strings.TrimSpace(string(b))
	} else {
		s = strings.TrimSpace(os.Getenv(d.TSIGSecretEnv))
		if s == "" {
			return "", fmt.Errorf("tls.dns.tsig_secret_env: environment variable %s is empty or unset", d.TSIGSecretEnv)
		}
	}
	if !isBase64(s) {
		return "", errors.New("tls.dns: the TSIG secret is not base64 (copy the secret value from the key definition)")
	}
	return s, nil
}
