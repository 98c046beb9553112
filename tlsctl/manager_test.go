package tlsctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
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
	// With no SNI the source still answers.
	cert, err := base.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || cert == nil {
		t.Fatalf("GetCertificate without SNI: %v, %v", cert, err)
	}
}

// TestCipherSuitesConfig checks the suites the base config lists: by default
// only ECDHE (forward secrecy) with an AEAD, none of them TLS 1.3-only
// (those are not configurable and would be ignored); with legacy_ciphers
// nil, i.e. Go's defaults, and a warning at startup.
func TestCipherSuitesConfig(t *testing.T) {
	t.Parallel()
	insecure := map[uint16]bool{}
	for _, s := range tls.InsecureCipherSuites() {
		insecure[s.ID] = true
	}
	secure := map[uint16]*tls.CipherSuite{}
	for _, s := range tls.CipherSuites() {
		secure[s.ID] = s
	}
	tests := []struct {
		name   string
		legacy bool
	}{
		{name: "default", legacy: false},
		{name: "legacy_ciphers", legacy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &logRecorder{}
			m := newTestManager(t, Config{StateDir: t.TempDir(), LegacyCiphers: tt.legacy}, slog.New(rec))
			base := m.ServerConfig()
			// passive clones the base per control session, and the data
			// connections use that clone: the policy must survive Clone.
			if !slices.Equal(base.Clone().CipherSuites, base.CipherSuites) {
				t.Errorf("Clone().CipherSuites = %v, want %v", base.Clone().CipherSuites, base.CipherSuites)
			}
			warnings := rec.count(slog.LevelWarn, "legacy_ciphers")
			if tt.legacy {
				if base.CipherSuites != nil {
					t.Errorf("CipherSuites = %v, want nil (Go's defaults)", base.CipherSuites)
				}
				if warnings != 1 {
					t.Errorf("%d warnings about legacy_ciphers, want 1", warnings)
				}
				return
			}
			if warnings != 0 || rec.maxLevel() >= slog.LevelWarn {
				t.Errorf("warnings logged with the default suites (max level %s)", rec.maxLevel())
			}
			if len(base.CipherSuites) == 0 {
				t.Fatal("CipherSuites empty: Go's defaults include CBC suites with SHA-1")
			}
			var names []string
			for _, id := range base.CipherSuites {
				name := tls.CipherSuiteName(id)
				names = append(names, name)
				s := secure[id]
				switch {
				case insecure[id] || s == nil:
					t.Errorf("%s is not in tls.CipherSuites()", name)
				case !slices.Contains(s.SupportedVersions, tls.VersionTLS12):
					t.Errorf("%s is not a TLS 1.2 suite", name)
				case !strings.HasPrefix(name, "TLS_ECDHE_"):
					t.Errorf("%s has no forward secrecy", name)
				case strings.Contains(name, "_CBC_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "_CHACHA20_POLY1305_")):
					t.Errorf("%s is not an AEAD suite", name)
				}
			}
			// Both key types a certificate may have (files and acme mode
			// may serve RSA) need all three AEADs.
			for _, want := range []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
				tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
			} {
				if !slices.Contains(base.CipherSuites, want) {
					t.Errorf("CipherSuites %v lack %s", names, tls.CipherSuiteName(want))
				}
			}
		})
	}
}

// TestCipherSuitesHandshake checks the TLS 1.2 suite policy with real
// handshakes against an ECDSA and an RSA certificate (the suite names the
// key type), on the base config and on a clone as passive makes for each
// control session and its data connections.
func TestCipherSuitesHandshake(t *testing.T) {
	t.Parallel()
	type server struct {
		key    string // "ecdsa" or "rsa"
		legacy bool
	}
	pairs := map[string]testPair{"ecdsa": validPair(t), "rsa": rsaPair(t)}
	type target struct{ name, addr string }
	targets := map[server][]target{}
	for key, p := range pairs {
		for _, legacy := range []bool{false, true} {
			certFile, keyFile := writePairFiles(t, t.TempDir(), p)
			m := newTestManager(t, Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, LegacyCiphers: legacy}, nil)
			targets[server{key, legacy}] = []target{
				{"base", serveTLS(t, m.ServerConfig)},
				{"clone", serveTLS(t, func() *tls.Config { return m.ServerConfig().Clone() })},
			}
		}
	}

	tests := []struct {
		name   string
		key    string
		legacy bool
		offer  []uint16 // the client's only suites, in its order
		want   uint16   // 0 = refused
	}{
		// Default: AEAD with ECDHE only.
		{name: "ECDSA AES-128-GCM", key: "ecdsa", offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, want: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "ECDSA AES-256-GCM", key: "ecdsa", offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, want: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{name: "ECDSA ChaCha20-Poly1305", key: "ecdsa", offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, want: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "ECDSA AES-128-CBC-SHA refused", key: "ecdsa", offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		{name: "ECDSA AES-256-CBC-SHA refused", key: "ecdsa", offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}},
		{name: "ECDSA CBC listed first still gets GCM", key: "ecdsa",
			offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, want: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "RSA AES-128-GCM", key: "rsa", offer: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, want: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{name: "RSA AES-256-GCM", key: "rsa", offer: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, want: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
		{name: "RSA ChaCha20-Poly1305", key: "rsa", offer: []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, want: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "RSA AES-128-CBC-SHA refused", key: "rsa", offer: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}},
		{name: "RSA AES-256-CBC-SHA refused", key: "rsa", offer: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}},
		{name: "RSA key exchange refused", key: "rsa", offer: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},

		// legacy_ciphers: Go's default list, CBC with SHA-1 included.
		{name: "legacy ECDSA AES-128-CBC-SHA", key: "ecdsa", legacy: true, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, want: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
		{name: "legacy ECDSA AES-256-CBC-SHA", key: "ecdsa", legacy: true, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, want: tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA},
		{name: "legacy ECDSA AES-128-GCM", key: "ecdsa", legacy: true, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, want: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "legacy RSA AES-128-CBC-SHA", key: "rsa", legacy: true, offer: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}, want: tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
		{name: "legacy RSA ChaCha20-Poly1305", key: "rsa", legacy: true, offer: []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, want: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		// Go's defaults leave out CBC with SHA-256 (not constant time in Go).
		{name: "legacy ECDSA AES-128-CBC-SHA256 refused", key: "ecdsa", legacy: true, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, tg := range targets[server{tt.key, tt.legacy}] {
				t.Run(tg.name, func(t *testing.T) {
					client := &tls.Config{
						RootCAs:      poolOf(t, pairs[tt.key].certPEM),
						ServerName:   "localhost",
						MaxVersion:   tls.VersionTLS12,
						CipherSuites: tt.offer,
					}
					if tt.want == 0 {
						refusedHandshake(t, tg.addr, client)
						return
					}
					state := mustHandshake(t, tg.addr, client)
					if state.Version != tls.VersionTLS12 || state.CipherSuite != tt.want {
						t.Errorf("negotiated %s %s, want TLS 1.2 %s", tls.VersionName(state.Version),
							tls.CipherSuiteName(state.CipherSuite), tls.CipherSuiteName(tt.want))
					}
				})
			}
		})
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
			if tt.wantErr {
				refusedHandshake(t, addr, cfg)
				return
			}
			state := mustHandshake(t, addr, cfg)
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
			if tt.want == 0 {
				refusedHandshake(t, addr, client)
				return
			}
			state := mustHandshake(t, addr, client)
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

				if first := mustHandshake(t, cloneAddr, client); first.DidResume {
					t.Fatal("first connection resumed")
				}
				for range tt.rotations {
					m.tickets.rotate()
				}
				// Both listeners are 127.0.0.1 with ServerName localhost, so
				// the client offers the same ticket to either.
				for _, a := range []string{cloneAddr, addr} {
					if second := mustHandshake(t, a, client); second.DidResume != tt.wantResume {
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
	testutil.WaitFor(t, 5*time.Second, "3 ticket keys", func() bool { return m.tickets.count() == maxTicketKeys })
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
