package passive

import (
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", cfg: Config{}, check: func(t *testing.T, c Config) {
			want := Config{Ports: "50000-50100", ResolveInterval: time.Minute, AcceptTimeout: 30 * time.Second,
				HandshakeTimeout: 10 * time.Second, TLSResumption: "required"}
			if c.Ports != want.Ports || c.ResolveInterval != want.ResolveInterval || c.AcceptTimeout != want.AcceptTimeout ||
				c.HandshakeTimeout != want.HandshakeTimeout || c.TLSResumption != want.TLSResumption {
				t.Fatalf("got %+v, want %+v", c, want)
			}
			if f, l := c.PortRange(); f != 50000 || l != 50100 {
				t.Fatalf("PortRange() = %d, %d", f, l)
			}
		}},
		{name: "single port", cfg: Config{Ports: "50000"}, check: func(t *testing.T, c Config) {
			if f, l := c.PortRange(); f != 50000 || l != 50000 {
				t.Fatalf("PortRange() = %d, %d", f, l)
			}
		}},
		{name: "explicit values kept", cfg: Config{Ports: " 1024 - 1030 ", ResolveInterval: time.Second,
			AcceptTimeout: time.Millisecond, HandshakeTimeout: time.Hour, TLSResumption: "Compatible"},
			check: func(t *testing.T, c Config) {
				if f, l := c.PortRange(); f != 1024 || l != 1030 {
					t.Fatalf("PortRange() = %d, %d", f, l)
				}
				if c.ResolveInterval != time.Second || c.AcceptTimeout != time.Millisecond ||
					c.HandshakeTimeout != time.Hour || c.TLSResumption != "compatible" {
					t.Fatalf("got %+v", c)
				}
			}},
		{name: "max port", cfg: Config{Ports: "65535"}},
		{name: "port too big", cfg: Config{Ports: "70000-1"},
			wantErr: `passive.ports: "70000-1": 70000 is not a port`},
		{name: "last port too big", cfg: Config{Ports: "1-65536"},
			wantErr: `passive.ports: "1-65536": 65536 is not a port`},
		{name: "first after last", cfg: Config{Ports: "50100-50000"},
			wantErr: `passive.ports: "50100-50000": first port 50100 is greater than last port 50000`},
		{name: "port zero", cfg: Config{Ports: "0-100"},
			wantErr: `passive.ports: "0-100": port 0 cannot be used`},
		{name: "not a number", cfg: Config{Ports: "abc"},
			wantErr: `passive.ports: "abc": abc is not a port`},
		{name: "negative", cfg: Config{Ports: "-5"},
			wantErr: `passive.ports: "-5": missing port number`},
		{name: "trailing dash", cfg: Config{Ports: "5-"},
			wantErr: `passive.ports: "5-": missing port number`},
		{name: "public IPv4", cfg: Config{PublicAddress: "203.0.113.7"}},
		{name: "public IPv6", cfg: Config{PublicAddress: "2001:db8::1"}},
		{name: "public host", cfg: Config{PublicAddress: "ftp.example.com."}},
		{name: "public host with digits", cfg: Config{PublicAddress: "ftp1.example-2.net"}},
		{name: "public unspecified", cfg: Config{PublicAddress: "0.0.0.0"},
			wantErr: `passive.public_address: "0.0.0.0" is unspecified; set the address clients can reach`},
		{name: "public zone", cfg: Config{PublicAddress: "fe80::1%eth0"},
			wantErr: `passive.public_address: "fe80::1%eth0" has a zone; an advertised address cannot`},
		{name: "public underscore", cfg: Config{PublicAddress: "ftp_host.example.com"},
			wantErr: `passive.public_address: "ftp_host.example.com" is not an IP address or host name`},
		{name: "public bad IPv4", cfg: Config{PublicAddress: "1.2.3.256"},
			wantErr: `passive.public_address: "1.2.3.256" is not an IP address or host name`},
		{name: "public with port", cfg: Config{PublicAddress: "203.0.113.7:21"},
			wantErr: `passive.public_address: "203.0.113.7:21" is not an IP address or host name`},
		{name: "public empty label", cfg: Config{PublicAddress: "ftp..example.com"},
			wantErr: `passive.public_address: "ftp..example.com" is not an IP address or host name`},
		{name: "public leading hyphen", cfg: Config{PublicAddress: "-ftp.example.com"},
			wantErr: `passive.public_address: "-ftp.example.com" is not an IP address or host name`},
		{name: "local networks", cfg: Config{LocalNetworks: []string{"10.0.0.0/8", "192.168.1.0/24", "fd00::/8"}}},
		{name: "local network not a CIDR", cfg: Config{LocalNetworks: []string{"10.0.0.0/8", "192.168.0.0/16", "10.0.0/8"}},
			wantErr: `passive.local_networks[2]: "10.0.0/8" is not a CIDR`},
		{name: "local network plain IP", cfg: Config{LocalNetworks: []string{"10.0.0.1"}},
			wantErr: `passive.local_networks[0]: "10.0.0.1" is not a CIDR`},
		{name: "negative accept timeout", cfg: Config{AcceptTimeout: -time.Second},
			wantErr: `passive.accept_timeout: -1s is negative`},
		{name: "negative handshake timeout", cfg: Config{HandshakeTimeout: -time.Second},
			wantErr: `passive.handshake_timeout: -1s is negative`},
		{name: "negative resolve interval", cfg: Config{ResolveInterval: -time.Minute},
			wantErr: `passive.resolve_interval: -1m0s is negative`},
		{name: "resumption off", cfg: Config{TLSResumption: "off"}},
		{name: "resumption user", cfg: Config{TLSResumption: " User "}, check: func(t *testing.T, c Config) {
			if c.TLSResumption != ResumptionUser {
				t.Errorf("TLSResumption = %q, want %q", c.TLSResumption, ResumptionUser)
			}
		}},
		{name: "resumption bad", cfg: Config{TLSResumption: "x"},
			wantErr: `passive.tls_resumption: "x" (want required, user, compatible or off)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.cfg
			err := c.Validate()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestPortRangeInvalid(t *testing.T) {
	t.Parallel()
	c := Config{Ports: "9-1"}
	if f, l := c.PortRange(); f != 0 || l != 0 {
		t.Fatalf("PortRange() = %d, %d, want 0, 0", f, l)
	}
}
