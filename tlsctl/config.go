package tlsctl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Certificate source names, as written in the mode key of the [tls] section.
const (
	// ModeSelfSigned serves a self-signed certificate that is generated once
	// and kept in the state directory. It is the default so that a fresh
	// install speaks TLS without any setup.
	ModeSelfSigned = "self-signed"
	// ModeFiles serves a certificate and key read from PEM files, which are
	// polled and reloaded when they change (e.g. after an external renewal).
	ModeFiles = "files"
	// ModeACME obtains and renews certificates from an ACME CA (Let's
	// Encrypt by default) through certmagic.
	ModeACME = "acme"
)

// ACME challenge names, as written in the challenges key.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
	ChallengeDNS01     = "dns-01"
)

// Well-known ACME directories, selectable by name in the ca key.
const (
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Config is the [tls] section of the configuration file.
type Config struct {
	// Mode selects the certificate source: "self-signed" (default) or "files".
	Mode string `toml:"mode"`
	// CertFile is the PEM certificate chain, leaf first (files mode only).
	CertFile string `toml:"cert_file"`
	// KeyFile is the PEM private key of the leaf (files mode only).
	KeyFile string `toml:"key_file"`
	// SelfSignedNames are the DNS names and IP addresses the self-signed
	// certificate covers. Default: localhost, 127.0.0.1 and ::1.
	SelfSignedNames []string `toml:"self_signed_names"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string `toml:"min_version"`
	// LegacyCiphers lets TLS 1.2 use Go's default suites, which add CBC
	// with SHA-1 MACs, for old clients that have no AEAD suite. Off by
	// default: TLS 1.2 then offers only ECDHE with AES-GCM or
	// ChaCha20-Poly1305. TLS 1.3 suites are not configurable in Go.
	LegacyCiphers bool `toml:"legacy_ciphers"`
	// ReloadInterval is how often the files of the files mode are checked
	// for changes. Default 1m.
	ReloadInterval time.Duration `toml:"reload_interval"`
	// TicketKeyRotation is how often a new session-ticket key is made. The
	// two previous keys stay valid for decryption, so a ticket lives between
	// two and three rotation periods (and never more than Go's 7 days).
	// Default 24h.
	TicketKeyRotation time.Duration `toml:"ticket_key_rotation"`
	// TicketKeyFile, if set, is a secret of at least 32 random bytes that
	// the ticket keys are derived from (HKDF-SHA256 per rotation epoch), so
	// that the nodes of a cluster sharing it resume each other's sessions.
	// Their clocks must agree to well within ticket_key_rotation. Empty:
	// random keys, known to this process only.
	TicketKeyFile string `toml:"ticket_key_file"`
	// StateDir is the server's state directory ([server] state_dir), set by
	// cmd. The self-signed mode keeps its certificate in StateDir/tls.
	StateDir string `toml:"-"`

	// Domains are the names to obtain a certificate for (acme mode); the
	// first is served to clients that send no SNI (connecting by IP).
	Domains []string `toml:"domains"`
	// Email is the ACME account contact (expiry notices); may be empty.
	Email string `toml:"email"`
	// CA is the ACME directory URL, or "production" / "staging" for Let's
	// Encrypt. Default "production".
	CA string `toml:"ca"`
	// TrustedRoots is a PEM file of extra roots for the CA's HTTPS (a
	// private CA); empty uses the system roots.
	TrustedRoots string `toml:"trusted_roots"`
	// Challenges are the ACME challenge types to use. Default ["http-01"].
	Challenges []string `toml:"challenges"`
	// HTTPPort is where the HTTP-01 responder listens (the CA always
	// connects to port 80; forward 80 here if they differ). Default 80.
	HTTPPort int `toml:"http_port"`
	// TLSALPNPort is where the TLS-ALPN-01 responder listens (the CA
	// always connects to 443). Default 443.
	TLSALPNPort int `toml:"tls_alpn_port"`
	// ListenHost is the interface address the challenge responders bind;
	// empty means all interfaces.
	ListenHost string `toml:"listen_host"`
	// Storage is the directory holding ACME accounts, certificates and
	// locks. Nodes sharing it obtain once and all serve. Default
	// <state_dir>/acme.
	Storage string `toml:"storage"`
	// AgreeToTerms must be true: it accepts the CA's subscriber agreement.
	AgreeToTerms bool `toml:"agree_to_terms"`
	// RenewCheckInterval is how often certificates are checked for renewal
	// (they renew when a third of their lifetime is left). Default 10m.
	RenewCheckInterval time.Duration `toml:"renew_check_interval"`
	// ObtainTimeout bounds the first issuance at startup; after it the
	// server runs and issuance keeps retrying in the background. Default 5m.
	ObtainTimeout time.Duration `toml:"obtain_timeout"`
	// DNS configures the dns-01 challenge ([tls.dns]).
	DNS DNSConfig `toml:"dns"`
}

// DNSConfig is the [tls.dns] section: RFC 2136 dynamic updates signed with
// TSIG, which BIND, Knot, PowerDNS and most self-hosted DNS servers accept.
type DNSConfig struct {
	// Server is the primary name server that accepts updates, host:port.
	Server string `toml:"server"`
	// Zone is the zone to update (e.g. "example.com."); empty means the
	// zone is found by an SOA lookup of the domain.
	Zone string `toml:"zone"`
	// TSIGKeyName and TSIGAlgorithm name the TSIG key (algorithm default
	// "hmac-sha256"; also hmac-sha1, hmac-sha384, hmac-sha512).
	TSIGKeyName   string `toml:"tsig_key_name"`
	TSIGAlgorithm string `toml:"tsig_algorithm"`
	// The base64 TSIG secret is read from TSIGSecretFile or, if that is
	// empty, from the environment variable TSIGSecretEnv. It is never
	// written to the configuration or logged.
	TSIGSecretFile string `toml:"tsig_secret_file"`
	TSIGSecretEnv  string `toml:"tsig_secret_env"`
	// Resolvers are the DNS servers (host:port) used to find the zone and
	// to wait until the record is visible; empty uses the system's.
	Resolvers []string `toml:"resolvers"`
	// PropagationTimeout bounds the wait for the record to be visible;
	// "-1s" disables the check. Default 2m.
	PropagationTimeout time.Duration `toml:"propagation_timeout"`
}

// Defaults filled in by Validate.
const (
	defaultMinVersion        = "1.2"
	defaultReloadInterval    = time.Minute
	defaultTicketKeyRotation = 24 * time.Hour
)

// defaultSelfSignedNames returns a fresh slice each time, so that no caller
// can change the default of another.
func defaultSelfSignedNames() []string {
	return []string{"localhost", "127.0.0.1", "::1"}
}

// Validate fills in defaults and checks the section. Its errors name the
// offending key, e.g. `tls.min_version: "1.1" (want 1.2 or 1.3)`.
func (c *Config) Validate() error {
	if c.Mode == "" {
		c.Mode = ModeSelfSigned
	}
	if c.MinVersion == "" {
		c.MinVersion = defaultMinVersion
	}
	if c.ReloadInterval == 0 {
		c.ReloadInterval = defaultReloadInterval
	}
	if c.TicketKeyRotation == 0 {
		c.TicketKeyRotation = defaultTicketKeyRotation
	}
	if len(c.SelfSignedNames) == 0 {
		c.SelfSignedNames = defaultSelfSignedNames()
	}

	if c.Mode != ModeACME && len(c.Domains) > 0 {
		// Same reasoning as for cert_file below: a forgotten mode = "acme".
		return fmt.Errorf("tls.domains: only used when tls.mode = %q (tls.mode is %q)", ModeACME, c.Mode)
	}
	switch c.Mode {
	case ModeSelfSigned:
		if c.StateDir == "" {
			return errors.New("server.state_dir: required for the self-signed certificate")
		}
		// A certificate file next to the default mode is almost certainly a
		// forgotten mode = "files"; serving the self-signed certificate
		// instead would go unnoticed until a client complains.
		if c.CertFile != "" || c.KeyFile != "" {
			return fmt.Errorf("tls.cert_file, tls.key_file: only used when tls.mode = %q (tls.mode is %q)", ModeFiles, c.Mode)
		}
		for i, name := range c.SelfSignedNames {
			if !validHostOrIP(name) {
				return fmt.Errorf("tls.self_signed_names[%d]: %q is not a host name or IP address", i, name)
			}
		}
	case ModeFiles:
		if c.CertFile == "" {
			return fmt.Errorf("tls.cert_file: required when tls.mode = %q", ModeFiles)
		}
		if c.KeyFile == "" {
			return fmt.Errorf("tls.key_file: required when tls.mode = %q", ModeFiles)
		}
	case ModeACME:
		if c.CertFile != "" || c.KeyFile != "" {
			return fmt.Errorf("tls.cert_file, tls.key_file: only used when tls.mode = %q (tls.mode is %q)", ModeFiles, c.Mode)
		}
		if err := c.validateACME(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("tls.mode: %q (want %s, %s or %s)", c.Mode, ModeSelfSigned, ModeFiles, ModeACME)
	}

	minVersion, err := parseMinVersion(c.MinVersion)
	if err != nil {
		return err
	}
	// Go does not configure TLS 1.3 suites, so the key would do nothing;
	// like a stray cert_file, that is most likely a misunderstanding.
	if c.LegacyCiphers && minVersion != tls.VersionTLS12 {
		return fmt.Errorf("tls.legacy_ciphers: only used when tls.min_version = \"1.2\" (tls.min_version is %q)", c.MinVersion)
	}
	if c.ReloadInterval < 0 {
		return fmt.Errorf("tls.reload_interval: %s (want a positive duration)", c.ReloadInterval)
	}
	if c.TicketKeyRotation < 0 {
		return fmt.Errorf("tls.ticket_key_rotation: %s (want a positive duration)", c.TicketKeyRotation)
	}
	if c.TicketKeyFile != "" {
		if c.TicketKeyRotation < time.Second {
			return fmt.Errorf("tls.ticket_key_rotation: %s (want at least 1s with tls.ticket_key_file)", c.TicketKeyRotation)
		}
		if _, err := readTicketSecret(c.TicketKeyFile); err != nil {
			return err
		}
	}
	return nil
}

// parseMinVersion maps the min_version key to a crypto/tls constant.
func parseMinVersion(s string) (uint16, error) {
	switch s {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls.min_version: %q (want 1.2 or 1.3)", s)
}

// validHostOrIP reports whether s is an IP address without zone, or a DNS
// name (optionally with a leading "*." wildcard label) that a certificate
// SAN may hold.
func validHostOrIP(s string) bool {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Zone() == ""
	}
	name := strings.TrimPrefix(s, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			default:
				return false
			}
		}
	}
	return true
}
