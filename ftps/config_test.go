package ftps

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Listen = "nonsense" }, "server.listen"},
		{func(c *Config) { c.Listen = "1.2.3.4:99999" }, "server.listen"},
		{func(c *Config) { c.MaxConnections = -1 }, "server.max_connections"},
		{func(c *Config) { c.IdleTimeout = -time.Second }, "server.idle_timeout"},
		{func(c *Config) { c.Banner = "a\nb" }, "server.banner"},
		{func(c *Config) { c.MaxConnections = 2; c.MaxConnectionsPerIP = 5 }, "server.max_connections_per_ip"},
		{func(c *Config) { c.MaxPreloginConnections = -1 }, "server.max_prelogin_connections"},
		{func(c *Config) { c.MaxPreloginConnections = 101 }, "server.max_prelogin_connections"},
		{func(c *Config) { c.AuthTLSTimeout = -time.Second }, "server.auth_tls_timeout"},
		{func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "lb1"} }, `server.trusted_proxies[1]: "lb1"`},
		{func(c *Config) { c.TrustedProxies = []string{"10.0.0.5"}; c.ActiveMode = true }, "server.active_mode: cannot be on with server.trusted_proxies"},
		{func(c *Config) { c.ProxyHeaderTimeout = -time.Second }, "server.proxy_header_timeout"},
		{func(c *Config) { c.TrustedProxies = []string{"10.0.0.5", "2001:db8::/48"} }, ""},
	}
	for i, tt := range tests {
		var c Config
		tt.mod(&c)
		err := c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%d: Validate() = %v, want mention of %q", i, err, tt.want)
		}
	}
	var c Config
	c.Validate()
	if c.Listen != ":21" || c.IdleTimeout != 5*time.Minute || c.MaxConnectionsPerIP != 10 ||
		c.MaxPreloginConnections != 25 || c.AuthTLSTimeout != 10*time.Second || c.ProxyHeaderTimeout != 5*time.Second ||
		c.Proxies() != nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	small := Config{MaxConnections: 2, MaxConnectionsPerIP: 1}
	if err := small.Validate(); err != nil || small.MaxPreloginConnections != 1 {
		t.Errorf("max_connections 2: max_prelogin_connections = %d, %v; want 1", small.MaxPreloginConnections, err)
	}
}
