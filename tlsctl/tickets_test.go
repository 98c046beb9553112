package tlsctl

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// writeSecret writes n random bytes with mode perm and returns the path.
func writeSecret(t *testing.T, n int, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ticket.key")
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // the umask may have narrowed it
		t.Fatal(err)
	}
	return path
}

// setClock puts the ticket keys of m at the epoch of now.
func setClock(m *Manager, now time.Time) {
	m.tickets.mu.Lock()
	m.tickets.now = func() time.Time { return now }
	m.tickets.rotateLocked()
	m.tickets.mu.Unlock()
}

// TestSharedTicketKeys: two Managers (two nodes) reading the same
// ticket_key_file resume each other's tickets; one with another secret, or
// with random keys, does not (a full handshake, which still succeeds).
func TestSharedTicketKeys(t *testing.T) {
	t.Parallel()
	pair := validPair(t)
	certFile, keyFile := writePairFiles(t, t.TempDir(), pair)
	shared, other := writeSecret(t, 64, 0o600), writeSecret(t, 32, 0o640)
	node := func(secret string) string {
		m := newTestManager(t, Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, TicketKeyFile: secret}, nil)
		return serveTLS(t, func() *tls.Config { return m.ServerConfig().Clone() })
	}
	a, b, c, d := node(shared), node(shared), node(other), node("")
	tests := []struct {
		to         string
		addr       string
		wantResume bool
	}{
		{"same node", a, true},
		{"node with the same secret", b, true},
		{"node with another secret", c, false},
		{"node with random keys", d, false},
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s", tls.VersionName(v), tt.to), func(t *testing.T) {
				client := &tls.Config{RootCAs: poolOf(t, pair.certPEM), ServerName: "localhost",
					MinVersion: v, MaxVersion: v, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
				if first := mustHandshake(t, a, client); first.DidResume {
					t.Fatal("first handshake resumed")
				}
				if got := mustHandshake(t, tt.addr, client); got.DidResume != tt.wantResume {
					t.Fatalf("DidResume = %v, want %v", got.DidResume, tt.wantResume)
				}
			})
		}
	}
}

// TestSharedTicketKeyEpochs: a ticket issued at epoch e is resumed by a
// node (same secret) at e-1 (its clock a little behind), e, e+1 and e+2,
// and no longer at e+3.
func TestSharedTicketKeyEpochs(t *testing.T) {
	t.Parallel()
	const rotation = time.Hour
	secret := writeSecret(t, 48, 0o600)
	base := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		epochs     int
		wantResume bool
	}{{-1, true}, {0, true}, {1, true}, {2, true}, {3, false}} {
		t.Run(fmt.Sprintf("epochs=%+d", tt.epochs), func(t *testing.T) {
			t.Parallel()
			cfg := Config{StateDir: t.TempDir(), TicketKeyFile: secret, TicketKeyRotation: rotation}
			issuer := newTestManager(t, cfg, nil)
			cfg2 := cfg
			cfg2.StateDir = cfg.StateDir // same self-signed certificate
			resumer := newTestManager(t, cfg2, nil)
			setClock(issuer, base)
			setClock(resumer, base.Add(time.Duration(tt.epochs)*rotation))
			a := serveTLS(t, issuer.ServerConfig)
			b := serveTLS(t, resumer.ServerConfig)
			_, certFile, _ := selfSignedPaths(cfg.StateDir)
			client := &tls.Config{RootCAs: poolFromFile(t, certFile), ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			mustHandshake(t, a, client)
			if got := mustHandshake(t, b, client); got.DidResume != tt.wantResume {
				t.Fatalf("DidResume = %v, want %v", got.DidResume, tt.wantResume)
			}
		})
	}
}

// TestSharedTicketKeyRotationTimer: with a secret, the keys turn at the
// epoch boundary by themselves.
func TestSharedTicketKeyRotationTimer(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{StateDir: t.TempDir(), TicketKeyFile: writeSecret(t, 32, 0o600), TicketKeyRotation: time.Second}, nil)
	m.tickets.mu.Lock()
	first := m.tickets.epoch
	m.tickets.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m.tickets.mu.Lock()
		e := m.tickets.epoch
		m.tickets.mu.Unlock()
		if e > first {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("epoch still %d after 5s with a 1s rotation", first)
}

// TestTicketKeyFileErrors: a secret file that others may read, that is
// too short or missing is refused, naming the key.
func TestTicketKeyFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    string
		cfg     func(*Config)
		wantErr string
	}{
		{name: "world-readable", path: writeSecret(t, 64, 0o644), wantErr: "tls.ticket_key_file: "},
		{name: "group-writable", path: writeSecret(t, 64, 0o660), wantErr: "has mode 0660"},
		{name: "too short", path: writeSecret(t, 31, 0o600), wantErr: "holds 31 bytes, want at least 32"},
		{name: "missing", path: filepath.Join(t.TempDir(), "nope"), wantErr: "tls.ticket_key_file: open "},
		{name: "directory", path: t.TempDir(), wantErr: "is not a regular file"},
		{name: "rotation below 1s", path: writeSecret(t, 32, 0o600), cfg: func(c *Config) { c.TicketKeyRotation = time.Millisecond }, wantErr: "tls.ticket_key_rotation: 1ms (want at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{StateDir: t.TempDir(), TicketKeyFile: tt.path}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			testutil.AssertErrContains(t, "Validate", cfg.Validate(), tt.wantErr)
		})
	}
}

// TestTicketKeyFileReload: a reload reads the secret file again; a new
// secret stops the resumption of tickets made with the old one, an
// unchanged one keeps it, and an unreadable one is refused and changes
// nothing.
func TestTicketKeyFileReload(t *testing.T) {
	t.Parallel()
	secret := writeSecret(t, 64, 0o600)
	cfg := Config{StateDir: t.TempDir(), TicketKeyFile: secret}
	m := newTestManager(t, cfg, nil)
	addr := serveTLS(t, m.ServerConfig)
	_, certFile, _ := selfSignedPaths(cfg.StateDir)
	client := &tls.Config{RootCAs: poolFromFile(t, certFile), ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	mustHandshake(t, addr, client)

	if _, err := m.Reload(t.Context(), cfg); err != nil {
		t.Fatalf("reload with the same secret: %v", err)
	}
	if !mustHandshake(t, addr, client).DidResume {
		t.Fatal("not resumed after a reload with the same secret")
	}
	if err := os.Chmod(secret, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reload(t.Context(), cfg); err == nil {
		t.Fatal("reload with a world-readable secret accepted")
	}
	if !mustHandshake(t, addr, client).DidResume {
		t.Fatal("a refused reload changed the keys")
	}
	b := make([]byte, 64)
	rand.Read(b)
	if err := os.WriteFile(secret, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reload(t.Context(), cfg); err != nil {
		t.Fatalf("reload with a new secret: %v", err)
	}
	if mustHandshake(t, addr, client).DidResume {
		t.Fatal("a ticket of the old secret resumed after the secret changed")
	}
}
