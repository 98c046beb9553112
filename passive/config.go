package passive

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults filled in by Validate for keys left empty or zero.
const (
	DefaultPorts            = "50000-50100"
	DefaultResolveInterval  = time.Minute
	DefaultAcceptTimeout    = 30 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultTLSResumption    = ResumptionRequired
)

// Values of Config.TLSResumption.
const (
	// ResumptionRequired refuses every TLS data connection that does not
	// resume the TLS session of its own control connection (vsftpd's
	// require_ssl_reuse). It is the default.
	ResumptionRequired = "required"
	// ResumptionUser also accepts a data connection that resumes a ticket
	// issued to another open, logged-in control session of the same user
	// from the same client IP: for clients that share one ticket cache
	// across their connections, such as rclone before 1.64 and some Java
	// clients. Never a ticket of another user, of another address, or of
	// a session that has ended.
	ResumptionUser = "user"
	// ResumptionCompatible is strict for clients whose control ClientHello
	// offered session tickets for the negotiated version, and falls back to
	// the peer-IP check (with a log line) for clients that cannot resume
	// with Go at all, such as curl/OpenSSL at TLS 1.2.
	ResumptionCompatible = "compatible"
	// ResumptionOff checks only the peer IP of data connections.
	ResumptionOff = "off"
)

// Config is the [passive] section: the data port range, the address
// advertised in PASV answers and the data-connection policy.
type Config struct {
	// Ports is the passive port range, "first-last" or a single port.
	// Default "50000-50100".
	Ports string `toml:"ports"`
	// PublicAddress is the address advertised to clients: an IP literal or
	// a host name (re-resolved every ResolveInterval). Empty means the
	// control connection's local address.
	PublicAddress string `toml:"public_address"`
	// LocalNetworks lists CIDRs whose clients get the control connection's
	// local address instead of PublicAddress (clients on the LAN).
	LocalNetworks []string `toml:"local_networks"`
	// ResolveInterval is how long a resolved PublicAddress host name is
	// used before it is looked up again. Default 1m.
	ResolveInterval time.Duration `toml:"resolve_interval"`
	// AcceptTimeout bounds the wait for the client's data connection, and
	// in active mode the connect to the client. Default 30s.
	AcceptTimeout time.Duration `toml:"accept_timeout"`
	// HandshakeTimeout bounds the TLS handshake on a data connection.
	// Default 10s.
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// TLSResumption is "required" (default), "user", "compatible" or
	// "off"; see ResumptionRequired, ResumptionUser, ResumptionCompatible
	// and ResumptionOff.
	TLSResumption string `toml:"tls_resumption"`

	// TrustedProxies and ProxyHeaderTimeout are server.trusted_proxies
	// and server.proxy_header_timeout, which the caller copies here (one
	// key for the administrator): when set, data connections must come
	// from a trusted proxy with a PROXY header, whose source address is
	// the one compared with the control connection's client.
	TrustedProxies     Proxies       `toml:"-"`
	ProxyHeaderTimeout time.Duration `toml:"-"`
}

// Validate fills defaults and checks every key. Its errors name the key
// with the section prefix, e.g. `passive.ports: "70000-1": 70000 is not a port`.
func (c *Config) Validate() error {
	c.Ports = strings.TrimSpace(c.Ports)
	if c.Ports == "" {
		c.Ports = DefaultPorts
	}
	if _, _, err := parsePorts(c.Ports); err != nil {
		return fmt.Errorf("passive.ports: %q: %w", c.Ports, err)
	}

	c.PublicAddress = strings.TrimSpace(c.PublicAddress)
	if c.PublicAddress != "" {
		if err := checkPublicAddress(c.PublicAddress); err != nil {
			return fmt.Errorf("passive.public_address: %q %w", c.PublicAddress, err)
		}
	}

	for i, s := range c.LocalNetworks {
		if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil {
			return fmt.Errorf("passive.local_networks[%d]: %q is not a CIDR", i, s)
		}
	}

	durations := []struct {
		key string
		d   *time.Duration
		def time.Duration
	}{
		{"resolve_interval", &c.ResolveInterval, DefaultResolveInterval},
		{"accept_timeout", &c.AcceptTimeout, DefaultAcceptTimeout},
		{"handshake_timeout", &c.HandshakeTimeout, DefaultHandshakeTimeout},
	}
	for _, d := range durations {
		switch {
		case *d.d < 0:
			return fmt.Errorf("passive.%s: %s is negative", d.key, *d.d)
		case *d.d == 0:
			*d.d = d.def
		}
	}

	switch {
	case c.ProxyHeaderTimeout < 0:
		return fmt.Errorf("server.proxy_header_timeout: %s is negative", c.ProxyHeaderTimeout)
	case c.ProxyHeaderTimeout == 0:
		c.ProxyHeaderTimeout = DefaultProxyHeaderTimeout
	}

	mode := strings.ToLower(strings.TrimSpace(c.TLSResumption))
	switch mode {
	case "":
		mode = DefaultTLSResumption
	case ResumptionRequired, ResumptionUser, ResumptionCompatible, ResumptionOff:
	default:
		return fmt.Errorf("passive.tls_resumption: %q (want required, user, compatible or off)", c.TLSResumption)
	}
	c.TLSResumption = mode
	return nil
}

// PortRange returns the first and last port of the range. It is meant to be
// called after Validate; for an invalid Ports it returns 0, 0.
func (c *Config) PortRange() (first, last uint16) {
	first, last, err := parsePorts(c.Ports)
	if err != nil {
		return 0, 0
	}
	return first, last
}

// parsePorts parses "first-last" or "port". The error does not carry the key
// or the input; Validate adds both.
func parsePorts(s string) (first, last uint16, err error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if first, err = parsePort(lo); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return first, first, nil
	}
	if last, err = parsePort(hi); err != nil {
		return 0, 0, err
	}
	if first > last {
		return 0, 0, fmt.Errorf("first port %d is greater than last port %d", first, last)
	}
	return first, last, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("missing port number")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("%s is not a port", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("port 0 cannot be used")
	}
	return uint16(n), nil
}

// checkPublicAddress accepts an IP literal (not unspecified, no zone) or a
// syntactically valid host name. It does no DNS lookup. The error reads
// after the quoted value: `"x_y" is not an IP address or host name`.
func checkPublicAddress(s string) error {
	if ip, err := netip.ParseAddr(s); err == nil {
		switch {
		case ip.Zone() != "":
			return fmt.Errorf("has a zone; an advertised address cannot")
		case ip.Unmap().IsUnspecified():
			return fmt.Errorf("is unspecified; set the address clients can reach")
		}
		return nil
	}
	if !isHostName(s) {
		return fmt.Errorf("is not an IP address or host name")
	}
	return nil
}

// isHostName reports whether s is a syntactically valid DNS host name
// (RFC 1123 labels, at most 253 characters, an optional trailing dot, and a
// last label that is not all digits, so "1.2.3" is not taken for a name).
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			ch := l[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}
