package tlsctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// selfSignedClient starts a self-signed Manager with cfg (StateDir filled
// in), serves its base config and returns the address and a client config
// that trusts the certificate.
func selfSignedClient(t *testing.T, cfg Config) (*Manager, string, *tls.Config) {
	t.Helper()
	cfg.StateDir = t.TempDir()
	m := newTestManager(t, cfg, nil)
	addr := serveTLS(t, m.ServerConfig)
	_, certFile, _ := selfSignedPaths(cfg.StateDir)
	return m, addr, &tls.Config{RootCAs: poolFromFile(t, certFile), ServerName: "localhost"}
}

func TestServerConfig(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{StateDir: t.TempDir()}, nil)
	base := m.ServerConfig()
	if m.ServerConfig() != base {
		t.Error("ServerConfig returns a different pointer on each call")
	}
	if base.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", base.MinVersion)
	}
	if !slices.Equal(base.NextProtos, []string{"ftp"}) {
		t.Errorf("NextProtos = %q, want [ftp]", base.NextProtos)
	}
	if base.GetCertificate == nil || len(base.Certificates) != 0 {
		t.Error("want GetCertificate and no static Certificates")
	}
	if base.CipherSuites != nil {
		t.Error("CipherSuites set; Go's defaults are wanted")
	}
	// With no SNI the source still answers.
	cert, err := base.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || cert == nil {
		t.Fatalf("GetCertificate without SNI: %v, %v", cert, err)
	}
}

func TestALPN(t *testing.T) {
	t.Parallel()
	_, addr, client := selfSignedClient(t, Config{})
	tests := []struct {
		name    string
		offer   []string
		want    string
		wantErr bool
	}{
		{name: "FileZilla", offer: []string{"ftp", "x-filezilla-ftp"}, want: "ftp"},
		{name: "FileZilla order reversed", offer: []string{"x-filezilla-ftp", "ftp"}, want: "ftp"},
		{name: "no ALPN (curl, lftp, data connections)", offer: nil, want: ""},
		// Why "ftp" must be in NextProtos: Go refuses a hello without overlap.
		{name: "no overlap", offer: []string{"h2"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := client.Clone()
			cfg.NextProtos = tt.offer
			state, err := dialTLS(t, addr, cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("handshake succeeded with protocol %q, want an error", state.NegotiatedProtocol)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if state.NegotiatedProtocol != tt.want {
				t.Errorf("NegotiatedProtocol = %q, want %q", state.NegotiatedProtocol, tt.want)
			}
		})
	}
}

func TestMinVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		minVersion           string
		clientMin, clientMax uint16
		want                 uint16 // 0 = refused
	}{
		{name: "1.2 refuses a TLS 1.1 client", minVersion: "1.2", clientMin: tls.VersionTLS10, clientMax: tls.VersionTLS11},
		{name: "1.2 accepts TLS 1.2", minVersion: "1.2", clientMax: tls.VersionTLS12, want: tls.VersionTLS12},
		{name: "1.2 prefers TLS 1.3", minVersion: "1.2", want: tls.VersionTLS13},
		{name: "1.3 refuses a TLS 1.2 client", minVersion: "1.3", clientMax: tls.VersionTLS12},
		{name: "1.3 refuses a TLS 1.1 client", minVersion: "1.3", clientMin: tls.VersionTLS10, clientMax: tls.VersionTLS11},
		{name: "1.3 accepts TLS 1.3", minVersion: "1.3", want: tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, addr, client := selfSignedClient(t, Config{MinVersion: tt.minVersion})
			client.MinVersion, client.MaxVersion = tt.clientMin, tt.clientMax
			state, err := dialTLS(t, addr, client)
			if tt.want == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded at %s, want refused", tls.VersionName(state.Version))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if state.Version != tt.want {
				t.Errorf("version %s, want %s", tls.VersionName(state.Version), tls.VersionName(tt.want))
			}
		})
	}
}

// TestTicketResumption checks that sessions resume across connections
// served by different clones of the base config (as passive makes one per
// control session) and that a ticket survives two key rotations but not
// three.
func TestTicketResumption(t *testing.T) {
	t.Parallel()
	versions := []uint16{tls.VersionTLS12, tls.VersionTLS13}
	tests := []struct {
		rotations  int
		wantResume bool
	}{
		{rotations: 0, wantResume: true},
		{rotations: 1, wantResume: true},
		{rotations: 2, wantResume: true},
		{rotations: 3, wantResume: false},
	}
	for _, v := range versions {
		for _, tt := range tests {
			name := fmt.Sprintf("%s/rotations=%d", tls.VersionName(v), tt.rotations)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				m, addr, client := selfSignedClient(t, Config{})
				// The address serves m.ServerConfig() itself; serve clones too.
				cloneAddr := serveTLS(t, func() *tls.Config { return m.ServerConfig().Clone() })
				client.MinVersion, client.MaxVersion = v, v
				client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

				first, err := dialTLS(t, cloneAddr, client)
				if err != nil {
					t.Fatalf("first handshake: %v", err)
				}
				if first.DidResume {
					t.Fatal("first connection resumed")
				}
				for range tt.rotations {
					m.tickets.rotate()
				}
				// Both listeners are 127.0.0.1 with ServerName localhost, so
				// the client offers the same ticket to either.
				for _, a := range []string{cloneAddr, addr} {
					second, err := dialTLS(t, a, client)
					if err != nil {
						t.Fatalf("second handshake: %v", err)
					}
					if second.DidResume != tt.wantResume {
						t.Fatalf("DidResume = %v, want %v", second.DidResume, tt.wantResume)
					}
					if !tt.wantResume {
						break // a full handshake replaced the ticket
					}
				}
			})
		}
	}
}

func TestTicketKeyRotationRuns(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{StateDir: t.TempDir(), TicketKeyRotation: 5 * time.Millisecond}, nil)
	if n := m.tickets.count(); n < 1 {
		t.Fatalf("%d ticket keys after New, want 1", n)
	}
	eventually(t, "3 ticket keys", func() bool { return m.tickets.count() == maxTicketKeys })
	time.Sleep(30 * time.Millisecond)
	if n := m.tickets.count(); n != maxTicketKeys {
		t.Fatalf("%d ticket keys, want at most %d", n, maxTicketKeys)
	}
	// Close stops the goroutine (the -race run and a second Close must not hang).
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		cfg     Config
		wantErr func(error) bool
	}{
		{name: "canceled context", ctx: canceled, cfg: Config{StateDir: t.TempDir()},
			wantErr: func(err error) bool { return errors.Is(err, context.Canceled) }},
		{name: "invalid config", ctx: context.Background(), cfg: Config{Mode: "acme2"},
			wantErr: func(err error) bool {
				return err != nil && err.Error() == `tls.mode: "acme2" (want self-signed, files or acme)`
			}},
		{name: "missing files", ctx: context.Background(), cfg: Config{Mode: ModeFiles, CertFile: filepath.Join(t.TempDir(), "nope.pem"), KeyFile: "k"},
			wantErr: func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := New(tt.ctx, tt.cfg, nil)
			if m != nil {
				m.Close()
			}
			if !tt.wantErr(err) {
				t.Fatalf("New: unexpected error %v", err)
			}
		})
	}
}
