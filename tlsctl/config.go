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
	// ReloadInterval is how often the files of the files mode are checked
	// for changes. Default 1m.
	ReloadInterval time.Duration `toml:"reload_interval"`
	// TicketKeyRotation is how often a new session-ticket key is made. The
	// two previous keys stay valid for decryption, so a ticket lives between
	// two and three rotation periods (and never more than Go's 7 days).
	// Default 24h.
	TicketKeyRotation time.Duration `toml:"ticket_key_rotation"`
	// StateDir is the server's state directory ([server] state_dir), set by
	// cmd. The self-signed mode keeps its certificate in StateDir/tls.
	StateDir string `toml:"-"`
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
	default:
		return fmt.Errorf("tls.mode: %q (want %s or %s)", c.Mode, ModeSelfSigned, ModeFiles)
	}

	if _, err := parseMinVersion(c.MinVersion); err != nil {
		return err
	}
	if c.ReloadInterval < 0 {
		return fmt.Errorf("tls.reload_interval: %s (want a positive duration)", c.ReloadInterval)
	}
	if c.TicketKeyRotation < 0 {
		return fmt.Errorf("tls.ticket_key_rotation: %s (want a positive duration)", c.TicketKeyRotation)
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
