package ftps_test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
)

// greeting connects and returns the first reply line.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// TestServerReload: a reload applies to new connections (banner, limits)
// while a session opened before goes on; listener addresses cannot change,
// and an invalid config changes nothing.
func TestServerReload(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	srv := s.FTPS()
	before := s.Login(t, s.ClientTLS())

	cfg := ftps.Config{Listen: "127.0.0.1:0", MaxConnections: 100, MaxConnectionsPerIP: 2, Banner: "reloaded banner"}
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := greeting(t, s.Addr); got != "220 reloaded banner" {
		t.Errorf("after reload: %q, want the new banner", got)
	}
	// before and the connection above hold the 2 allowed from 127.0.0.1.
	if got := greeting(t, s.Addr); !strings.HasPrefix(got, "421 ") {
		t.Errorf("third connection: %q, want 421 (max_connections_per_ip reloaded to 2)", got)
	}
	before.Cmd(200, "NOOP")

	for _, bad := range []struct {
		cfg  ftps.Config
		want string
	}{
		{ftps.Config{Listen: "127.0.0.1:1"}, "server.listen: cannot change without a restart"},
		{ftps.Config{Listen: "127.0.0.1:0", MaxConnections: -1}, "server.max_connections"},
	} {
		if err := srv.Reload(bad.cfg); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Reload(%+v) = %v, want %q", bad.cfg, err, bad.want)
		}
	}
}

// TestCloseUsers: the sessions of the named users are closed with a 421 at
// once, even in the middle of a transfer; other users' sessions go on.
func TestCloseUsers(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{{Name: "alice", Password: "a"}, {Name: "bob", Password: "b"}}})
	alice := s.Dial(t)
	alice.Login(s.ClientTLS(), "alice", "a")
	bob := s.Dial(t)
	bob.Login(s.ClientTLS(), "bob", "b")
	idle := s.Dial(t) // not logged in: never closed by CloseUsers

	// alice downloads a big file slowly: she never reads the data.
	if err := os.WriteFile(filepath.Join(s.Home("alice"), "big"), bytes.Repeat([]byte("x"), 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := alice.Pasv()
	alice.Send("RETR big")
	dc, err := ftpstest.DialData(t, addr, alice.TLS)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	alice.Expect(150)

	start := time.Now()
	if n := s.FTPS().CloseUsers(func(name string) bool { return name == "alice" }); n != 1 {
		t.Errorf("CloseUsers closed %d sessions, want 1", n)
	}
	code, msg, err := alice.TryRead()
	for err == nil && code != 421 { // the transfer's 426 may come first
		code, msg, err = alice.TryRead()
	}
	if code != 421 || !strings.Contains(msg, "account was changed") {
		t.Errorf("alice got %d %q %v, want 421", code, msg, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closing took %v", d)
	}
	bob.Cmd(200, "NOOP")
	idle.Cmd(211, "FEAT")
	if !s.Log.Contains("session closed: user removed or disabled") {
		t.Error("the close was not logged")
	}
}

// TestUserDisabledDuringPASS: a reload that disables a user while its
// password is being checked (the reload applies the new users, then closes
// the sessions of the users gone) must not let that login through.
func TestUserDisabledDuringPASS(t *testing.T) {
	t.Parallel()
	// The project's own argon2id parameters: the check takes tens of
	// milliseconds at least, so the reload lands in the middle.
	slow, err := auth.HashPassword("m-pw")
	if err != nil {
		t.Fatal(err)
	}
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{{Name: "mallory", Password: "m-pw", Hash: slow}, {Name: "alice", Password: "a"}}})
	c := s.DialTLS(t)
	c.Cmd(331, "USER mallory")
	c.Send("PASS m-pw")
	waitLog(t, s, "cmd=\"PASS ****\"")

	users := []auth.UserConfig{
		{Name: "mallory", PasswordHash: slow, Home: s.Home("mallory"), Disabled: true},
		{Name: "alice", PasswordHash: ftpstest.CheapHash("a"), Home: s.Home("alice")},
	}
	p, err := s.Auth().PrepareReload(auth.Config{FailureDelay: time.Millisecond}, users)
	if err != nil {
		t.Fatal(err)
	}
	p.Apply()
	s.FTPS().CloseUsers(func(name string) bool { return name == "mallory" })

	code, msg, err := c.TryRead()
	if code == 230 {
		t.Fatalf("a user disabled during its PASS logged in: %d %q", code, msg)
	}
	if code != 421 {
		t.Errorf("PASS: %d %q %v, want 421", code, msg, err)
	}
}

// waitLog polls the server log until it holds text (bounded).
func waitLog(t *testing.T, s *ftpstest.Server, text string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !s.Log.Contains(text); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log", text)
		}
	}
}
