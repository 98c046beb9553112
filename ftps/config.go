package ftps

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"time"

	"github.com/ftpsd/ftpsd/passive"
)

// Config is the [server] section: the control listener, the session policy
// and every limit a client could otherwise hold open forever.
type Config struct {
	// S3 is [storage.s3], which cmd/ftpsd composes in: how to reach the
	// server of the homes written "s3://bucket/prefix/".
	S3 S3Config `toml:"-"`
	// Listen is the control listener address (explicit FTPS), host:port.
	Listen string `toml:"listen"`
	// ImplicitListen, when set, is a second listener for implicit FTPS
	// (TLS from the first byte, traditionally port 990) for clients that
	// cannot do AUTH TLS. Empty (default) means off.
	ImplicitListen string `toml:"implicit_listen"`
	// StateDir holds persistent server state: the self-signed certificate
	// (tlsctl), the bans (cmd), and the quota usage, quota.json, which
	// ftps itself keeps there.
	StateDir string `toml:"state_dir"`
	// Banner is the text of the 220 greeting.
	Banner string `toml:"banner"`
	// AllowPlaintextLogin lets USER/PASS through before AUTH TLS. Off by
	// default: the password would cross the network in clear.
	AllowPlaintextLogin bool `toml:"allow_plaintext_login"`
	// AllowPlaintextData accepts PROT C (clear data connections).
	AllowPlaintextData bool `toml:"allow_plaintext_data"`
	// MaxConnections caps control connections server-wide.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerIP caps control connections from one client: one
	// IPv4 address, or one IPv6 /64. FileZilla needs at least 3 (browsing
	// plus two transfers).
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// MaxPreloginConnections caps the control connections that have not
	// logged in yet, server-wide. When it is reached, a new connection
	// evicts a pre-login one (see Server.preloginVictimLocked), so idle
	// connections cannot lock real users out; logged-in sessions are never
	// evicted. Default max_connections/4 (at least 1).
	MaxPreloginConnections int `toml:"max_prelogin_connections"`
	// IdleTimeout closes a logged-in session that sends no command.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// LoginTimeout bounds the time from connect to a successful PASS.
	LoginTimeout time.Duration `toml:"login_timeout"`
	// AuthTLSTimeout bounds the time from connect to the end of the TLS
	// handshake (after AUTH TLS, or the implicit handshake): a client that
	// has not started TLS within seconds is not an FTPS client. It does not
	// apply to clients that stay in plain text while AllowPlaintextLogin is
	// on. Default 10s.
	AuthTLSTimeout time.Duration `toml:"auth_tls_timeout"`
	// TLSHandshakeTimeout bounds the control TLS handshake after AUTH TLS.
	TLSHandshakeTimeout time.Duration `toml:"tls_handshake_timeout"`
	// DataTimeout aborts a transfer that moves no byte for this long.
	DataTimeout time.Duration `toml:"data_timeout"`
	// ShutdownTimeout is how long running transfers may go on after a
	// shutdown signal before they are cut.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
	// MaxLoginAttempts is the number of failed PASS per session before 421.
	MaxLoginAttempts int `toml:"max_login_attempts"`
	// MaxHashes caps the HASH commands computing at once, server-wide
	// (each session runs one at a time); beyond it HASH answers 450.
	// Reading and hashing a file needs no network, so nothing else bounds
	// it. Default: the number of CPUs.
	MaxHashes int `toml:"max_hashes"`
	// ActiveMode accepts PORT and EPRT: the server connects to the client
	// for data. Off by default: clients behind NAT cannot receive it, and
	// passive mode serves every client ftpsd supports. When on, the server
	// connects only to the control connection's peer IP and to ports from
	// 1024 up (RFC 2577), from an ephemeral port.
	ActiveMode bool `toml:"active_mode"`
	// TrustedProxies lists the load balancers (CIDRs or IP addresses)
	// in front of this node. When set, every connection, control (both
	// listeners) and passive data, must come from one of them and start
	// with a PROXY protocol header (v1 or v2), whose source address is
	// the client's for everything: limits, bans, the data connection's
	// address check, logs, metrics. Connections from any other source are
	// closed without a byte. Empty (default): no PROXY protocol.
	TrustedProxies []string `toml:"trusted_proxies"`
	// ProxyHeaderTimeout bounds the wait for the PROXY header of a
	// connection from a trusted proxy. Default 5s.
	ProxyHeaderTimeout time.Duration `toml:"proxy_header_timeout"`

	proxies passive.Proxies // TrustedProxies parsed by Validate
}

// Proxies returns server.trusted_proxies as parsed by Validate, for the
// passive manager's data connections (passive.Config.TrustedProxies).
func (c *Config) Proxies() passive.Proxies { return c.proxies }

// Validate fills defaults and reports the first invalid key.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = ":21"
	}
	if err := checkListen("server.listen", c.Listen); err != nil {
		return err
	}
	if c.ImplicitListen != "" {
		if err := checkListen("server.implicit_listen", c.ImplicitListen); err != nil {
			return err
		}
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/ftpsd"
	}
	if c.Banner == "" {
		c.Banner = "ftpsd ready"
	}
	for _, r := range c.Banner {
		if r == '\r' || r == '\n' {
			return fmt.Errorf("server.banner: must be one line")
		}
	}
	ints := []struct {
		key string
		v   *int
		def int
	}{
		{"max_connections", &c.MaxConnections, 100},
		{"max_connections_per_ip", &c.MaxConnectionsPerIP, 10},
		{"max_login_attempts", &c.MaxLoginAttempts, 3},
		{"max_hashes", &c.MaxHashes, runtime.NumCPU()},
	}
	for _, f := range ints {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 {
			return fmt.Errorf("server.%s: %d: must be positive", f.key, *f.v)
		}
	}
	if c.MaxConnectionsPerIP > c.MaxConnections {
		return fmt.Errorf("server.max_connections_per_ip: %d is more than server.max_connections (%d)", c.MaxConnectionsPerIP, c.MaxConnections)
	}
	switch {
	case c.MaxPreloginConnections < 0:
		return fmt.Errorf("server.max_prelogin_connections: %d: must be positive", c.MaxPreloginConnections)
	case c.MaxPreloginConnections == 0:
		c.MaxPreloginConnections = max(1, c.MaxConnections/4)
	case c.MaxPreloginConnections > c.MaxConnections:
		return fmt.Errorf("server.max_prelogin_connections: %d is more than server.max_connections (%d)", c.MaxPreloginConnections, c.MaxConnections)
	}
	proxies, err := passive.ParseProxies("server.trusted_proxies", c.TrustedProxies)
	if err != nil {
		return err
	}
	c.proxies = proxies
	if len(proxies) > 0 && c.ActiveMode {
		// The node would connect to the client itself, around the
		// balancer: from another address than the one the client knows,
		// through a firewall that admits only the balancer.
		return fmt.Errorf("server.active_mode: cannot be on with server.trusted_proxies (behind a load balancer only passive mode works)")
	}
	durs := []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"idle_timeout", &c.IdleTimeout, 5 * time.Minute},
		{"login_timeout", &c.LoginTimeout, time.Minute},
		{"auth_tls_timeout", &c.AuthTLSTimeout, 10 * time.Second},
		{"tls_handshake_timeout", &c.TLSHandshakeTimeout, 10 * time.Second},
		{"data_timeout", &c.DataTimeout, time.Minute},
		{"shutdown_timeout", &c.ShutdownTimeout, 30 * time.Second},
		{"proxy_header_timeout", &c.ProxyHeaderTimeout, passive.DefaultProxyHeaderTimeout},
	}
	for _, f := range durs {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 {
			return fmt.Errorf("server.%s: %s: must be positive", f.key, *f.v)
		}
	}
	return nil
}

// checkListen validates a listener address key.
func checkListen(key, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q: want host:port (e.g. \"0.0.0.0:21\")", key, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s: %q: %q is not a port", key, addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%s: %q: host must be an IP address, \"localhost\" or empty", key, addr)
	}
	return nil
}
