package tlsctl

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" = valid
		check   func(t *testing.T, c Config)
	}{
		{
			name: "defaults",
			cfg:  Config{StateDir: "/var/lib/ftpsd"},
			check: func(t *testing.T, c Config) {
				if c.Mode != ModeSelfSigned || c.MinVersion != "1.2" || c.ReloadInterval != time.Minute ||
					c.TicketKeyRotation != 24*time.Hour ||
					!slices.Equal(c.SelfSignedNames, []string{"localhost", "127.0.0.1", "::1"}) {
					t.Errorf("defaults not filled: %+v", c)
				}
			},
		},
		{
			name: "explicit values kept",
			cfg: Config{Mode: "files", CertFile: "c.pem", KeyFile: "k.pem", MinVersion: "1.3",
				ReloadInterval: 5 * time.Second, TicketKeyRotation: time.Hour},
			check: func(t *testing.T, c Config) {
				if c.MinVersion != "1.3" || c.ReloadInterval != 5*time.Second || c.TicketKeyRotation != time.Hour {
					t.Errorf("values changed: %+v", c)
				}
			},
		},
		{name: "self-signed names", cfg: Config{StateDir: "s", SelfSignedNames: []string{"ftp.example.com", "*.example.org", "10.0.0.1", "2001:db8::1"}}},
		{name: "unknown mode", cfg: Config{Mode: "acme2", StateDir: "s"}, wantErr: `tls.mode: "acme2" (want self-signed, files or acme)`},
		{name: "acme without domains", cfg: Config{Mode: "acme", StateDir: "s"}, wantErr: `tls.domains: required`},
		{name: "acme without agreement", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}}, wantErr: `tls.agree_to_terms: must be true`},
		{name: "acme IP domain", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"192.0.2.1"}}, wantErr: `tls.domains[0]: "192.0.2.1" is not a DNS name`},
		{name: "acme wildcard needs dns-01", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"*.a.example"}, AgreeToTerms: true}, wantErr: `tls.domains[0]: "*.a.example": wildcard names need`},
		{name: "acme bad ca", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}, AgreeToTerms: true, CA: "http://x"}, wantErr: `tls.ca: "http://x"`},
		{name: "acme bad challenge", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}, AgreeToTerms: true, Challenges: []string{"dns"}}, wantErr: `tls.challenges[0]: "dns"`},
		{name: "acme bad port", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}, AgreeToTerms: true, HTTPPort: 70000}, wantErr: `tls.http_port: 70000 is not a port`},
		{name: "acme dns-01 without server", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}, AgreeToTerms: true, Challenges: []string{"dns-01"}}, wantErr: `tls.dns.server`},
		{name: "acme dns-01 without key", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}, AgreeToTerms: true, Challenges: []string{"dns-01"}, DNS: DNSConfig{Server: "127.0.0.1:53"}}, wantErr: `tls.dns.tsig_key_name: required`},
		{name: "acme dns-01 secret env unset", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}, AgreeToTerms: true, Challenges: []string{"dns-01"}, DNS: DNSConfig{Server: "127.0.0.1:53", TSIGKeyName: "k", TSIGSecretEnv: "FTPSD_TEST_UNSET_SECRET"}}, wantErr: `tls.dns.tsig_secret_env: environment variable FTPSD_TEST_UNSET_SECRET is empty`},
		{name: "acme dns-01 bad algorithm", cfg: Config{Mode: "acme", StateDir: "s", Domains: []string{"a.example"}, AgreeToTerms: true, Challenges: []string{"dns-01"}, DNS: DNSConfig{Server: "127.0.0.1:53", TSIGKeyName: "k", TSIGAlgorithm: "md5", TSIGSecretEnv: "X"}}, wantErr: `tls.dns.tsig_algorithm: "md5"`},
		{name: "domains outside acme", cfg: Config{StateDir: "s", Domains: []string{"a.example"}}, wantErr: `tls.domains: only used when tls.mode = "acme"`},
		{name: "files without cert", cfg: Config{Mode: "files", KeyFile: "k"}, wantErr: `tls.cert_file: required when tls.mode = "files"`},
		{name: "files without key", cfg: Config{Mode: "files", CertFile: "c"}, wantErr: `tls.key_file: required when tls.mode = "files"`},
		{name: "files needs no state dir", cfg: Config{Mode: "files", CertFile: "c", KeyFile: "k"}},
		{name: "self-signed without state dir", cfg: Config{}, wantErr: "server.state_dir: required for the self-signed certificate"},
		{name: "cert file in self-signed mode", cfg: Config{StateDir: "s", CertFile: "c"}, wantErr: `tls.cert_file, tls.key_file: only used when tls.mode = "files"`},
		{name: "min version 1.1", cfg: Config{StateDir: "s", MinVersion: "1.1"}, wantErr: `tls.min_version: "1.1" (want 1.2 or 1.3)`},
		{name: "min version TLS1.2", cfg: Config{StateDir: "s", MinVersion: "TLS1.2"}, wantErr: `tls.min_version: "TLS1.2"`},
		{name: "legacy ciphers with 1.2", cfg: Config{StateDir: "s", LegacyCiphers: true}},
		{name: "legacy ciphers with 1.3", cfg: Config{StateDir: "s", MinVersion: "1.3", LegacyCiphers: true}, wantErr: `tls.legacy_ciphers: only used when tls.min_version = "1.2" (tls.min_version is "1.3")`},
		{name: "negative reload", cfg: Config{Mode: "files", CertFile: "c", KeyFile: "k", ReloadInterval: -time.Second}, wantErr: "tls.reload_interval: -1s"},
		{name: "negative rotation", cfg: Config{StateDir: "s", TicketKeyRotation: -time.Hour}, wantErr: "tls.ticket_key_rotation: -1h0m0s"},
		{name: "empty name", cfg: Config{StateDir: "s", SelfSignedNames: []string{"localhost", ""}}, wantErr: `tls.self_signed_names[1]: "" is not a host name or IP address`},
		{name: "name with space", cfg: Config{StateDir: "s", SelfSignedNames: []string{"my host"}}, wantErr: `tls.self_signed_names[0]: "my host"`},
		{name: "IP with zone", cfg: Config{StateDir: "s", SelfSignedNames: []string{"fe80::1%eth0"}}, wantErr: `tls.self_signed_names[0]: "fe80::1%eth0"`},
		{name: "label too long", cfg: Config{StateDir: "s", SelfSignedNames: []string{strings.Repeat("a", 64) + ".example"}}, wantErr: "tls.self_signed_names[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.cfg
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate: no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate: %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestDefaultNamesNotShared(t *testing.T) {
	t.Parallel()
	a, b := Config{StateDir: "s"}, Config{StateDir: "s"}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	a.SelfSignedNames[0] = "changed"
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if b.SelfSignedNames[0] != "localhost" {
		t.Fatalf("default names shared between configs: %q", b.SelfSignedNames)
	}
}
