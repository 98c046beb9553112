package test

// Tests of "ftpsd who" and "ftpsd ban" against a real "ftpsd serve": the
// commands reach it through its control socket in the state directory.

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsd/ftpsd/test/ftpstest"
)

// dialGoFrom connects github.com/jlaffaye/ftp to the service from the
// loopback address src (control and data connections alike) and logs in.
func dialGoFrom(t *testing.T, s *service, src, name, password string) (*ftp.ServerConn, error) {
	t.Helper()
	c, err := ftp.Dial(s.Addr,
		ftp.DialWithExplicitTLS(ftpstest.ClientTLS(s.pool)),
		ftp.DialWithDialer(net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}),
		ftp.DialWithShutTimeout(10*time.Second),
		ftp.DialWithContext(t.Context()))
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Quit() })
	return c, c.Login(name, password)
}

// whoJSON is what "ftpsd who -json" prints, as far as the tests read it.
type whoJSON struct {
	Sessions []struct {
		User        string  `json:"user"`
		Client      string  `json:"client"`
		IdleSeconds float64 `json:"idle_seconds"`
		TLS         bool    `json:"tls"`
		Transfer    *struct {
			Op             string  `json:"op"`
			Bytes          int64   `json:"bytes"`
			BytesPerSecond float64 `json:"bytes_per_second"`
		} `json:"transfer"`
	} `json:"sessions"`
	Users []struct {
		Name         string `json:"name"`
		Sessions     int    `json:"sessions"`
		MaxSessions  int    `json:"max_sessions"`
		DownloadRate int64  `json:"download_rate"`
		QuotaBytes   int64  `json:"quota_bytes"`
	} `json:"users"`
}

// TestServiceWho: "ftpsd who" shows two logged-in Go clients, one in the
// middle of a download that has stalled (the client stopped reading), with
// the transfer's bytes and rate; -json carries the same. Once the server
// has stopped, it says so.
func TestServiceWho(t *testing.T) {
	t.Parallel()
	bob := newAccount("bob", "bob-secret")
	bob.extra = []string{`max_sessions = 3`, `download_rate = "2MiB"`, `quota = "1GiB"`, `allowed_networks = ["127.0.0.0/8"]`}
	s := startService(t, newSvcConfig(newAccount(user, pass), bob))
	s.put(t, user, "big.bin", bytes.Repeat([]byte("x"), 64<<20))

	alice, err := dialGoFrom(t, s, "127.0.0.3", user, pass)
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	if _, err := dialGoFrom(t, s, "127.0.0.4", bob.name, bob.pass); err != nil {
		t.Fatalf("bob: %v", err)
	}
	r, err := alice.Retr("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read the first MiB: %v", err)
	}
	// alice reads no more: the server's writes block, the RETR stays.

	out, _, code := s.ftpsd(t, false, "who", "-config", s.path)
	t.Logf("ftpsd who:\n%s", out)
	if code != 0 {
		t.Fatalf("ftpsd who: exit %d", code)
	}
	table, users, _ := strings.Cut(strings.TrimRight(out, "\n"), "\n\n")
	lines := strings.Split(table, "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^USER +CLIENT +SINCE +IDLE +TRANSFER$`).MatchString(lines[0]) {
		t.Fatalf("ftpsd who printed %q, want a header and two sessions", out)
	}
	// Then each user's limits and usage, one line each, by name.
	for i, re := range []string{
		`^alice: 1 logged in; sessions unlimited, download unlimited, upload unlimited, quota none, networks any$`,
		`^bob: 1 logged in; quota used 0B and 0 files; sessions 3, download 2MiB/s, upload unlimited, quota 1GiB, networks 127\.0\.0\.0/8$|^bob: 1 logged in; quota usage being scanned; sessions 3`,
	} {
		if ul := strings.Split(users, "\n"); len(ul) != 2 || !regexp.MustCompile(re).MatchString(ul[i]) {
			t.Errorf("ftpsd who: user lines %q; line %d should match %s", users, i+1, re)
		}
	}
	for i, re := range []string{
		`^alice +127\.0\.0\.3:\d+ +\d\d:\d\d:\d\d +\d+:\d\d +RETR /big\.bin \d+\.\d [KMG]iB \d+(\.\d)? [KMG]?i?B/s$`,
		`^bob +127\.0\.0\.4:\d+ +\d\d:\d\d:\d\d +\d+:\d\d$`,
	} {
		if !regexp.MustCompile(re).MatchString(lines[i+1]) {
			t.Errorf("ftpsd who line %d: %q, want it to match %s", i+2, lines[i+1], re)
		}
	}
	// The columns line up: every line's CLIENT starts where the header's does.
	col := strings.Index(lines[0], "CLIENT")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "127.0.0.") {
			t.Errorf("ftpsd who: %q: CLIENT not in its column (%d)", l, col)
		}
	}

	out, _, code = s.ftpsd(t, false, "who", "-json", "-config", s.path)
	var doc whoJSON
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil {
		t.Fatalf("ftpsd who -json: exit %d, %v", code, err)
	}
	if len(doc.Sessions) != 2 {
		t.Fatalf("ftpsd who -json: %d sessions, want 2", len(doc.Sessions))
	}
	if len(doc.Users) != 2 || doc.Users[1].Name != "bob" || doc.Users[1].MaxSessions != 3 ||
		doc.Users[1].DownloadRate != 2<<20 || doc.Users[1].QuotaBytes != 1<<30 || doc.Users[1].Sessions != 1 {
		t.Errorf("ftpsd who -json users: %+v; want alice, then bob with his limits", doc.Users)
	}
	for _, ss := range doc.Sessions {
		switch ss.User {
		case user:
			x := ss.Transfer
			if x == nil || x.Op != "RETR /big.bin" || x.Bytes < 1<<20 || x.BytesPerSecond <= 0 || !strings.HasPrefix(ss.Client, "127.0.0.3:") || !ss.TLS {
				t.Errorf("alice in -json: %+v, transfer %+v; want RETR /big.bin with at least 1 MiB and a rate, from 127.0.0.3, TLS", ss, x)
			}
		case bob.name:
			if ss.Transfer != nil || !strings.HasPrefix(ss.Client, "127.0.0.4:") || !ss.TLS || ss.IdleSeconds < 0 {
				t.Errorf("bob in -json: %+v, want idle from 127.0.0.4, TLS, no transfer", ss)
			}
		default:
			t.Errorf("ftpsd who -json: unexpected session %+v", ss)
		}
	}

	sock := filepath.Join(s.dir, "state", "ftpsd.sock")
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v, %v; want a socket with mode 0600", fi, err)
	}
	r.Close()
	if code := s.Stop(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket after shutdown: %v, want it removed", err)
	}
	_, errOut, code := s.ftpsd(t, false, "who", "-config", s.path)
	if want := "ftpsd: no running ftpsd: " + sock + " not found\n"; code != 1 || errOut != want {
		t.Errorf("ftpsd who without a server: exit %d, stderr %q; want 1, %q", code, errOut, want)
	}
}

// TestServiceBans: wrong passwords ban 127.0.0.1 and "ftpsd ban list"
// shows it; 127.0.0.2, in never_ban, is never banned (its failures are
// logged); "ftpsd ban remove" lifts the ban at once and for good: a crash
// and a restart do not bring it back, and the stale control socket the
// crash left is replaced.
func TestServiceBans(t *testing.T) {
	t.Parallel()
	c := newSvcConfig(newAccount(user, pass))
	c.maxFailures = 2
	c.auth = []string{`failure_window = "10m"`, `ban_duration = "10m"`, `never_ban = ["127.0.0.2"]`}
	s := startService(t, c)

	// 127.0.0.2: more wrong passwords than max_failures, then the right one.
	for i := range 4 {
		if _, err := dialGoFrom(t, s, "127.0.0.2", user, "wrong"); err == nil || !strings.Contains(err.Error(), "530") {
			t.Fatalf("wrong password %d from 127.0.0.2: %v, want 530", i+1, err)
		}
	}
	if _, err := dialGoFrom(t, s, "127.0.0.2", user, pass); err != nil {
		t.Fatalf("127.0.0.2 (never_ban) after 4 wrong passwords: %v, want a login", err)
	}
	if n := s.count(0, func(r logRec) bool {
		return r.str("msg") == "login failed" && strings.HasPrefix(r.str("remote"), "127.0.0.2:")
	}); n != 4 {
		t.Errorf("%d failed logins from 127.0.0.2 logged, want 4", n)
	}

	// 127.0.0.1: banned after two.
	for range 2 {
		s.tryLogin(t, user, "wrong")
	}
	s.await(t, 0, msgIs("login ban started"))
	if code, _ := s.tryLogin(t, user, pass); code != 421 {
		t.Fatalf("right password from the banned 127.0.0.1: %d, want 421", code)
	}
	s.reload(t) // saves the bans: the ban is in bans.json from now on

	out, _, code := s.ftpsd(t, false, "ban", "list", "-config", s.path)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 || !regexp.MustCompile(`^CLIENT +BANNED UNTIL +FAILURES$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^127\.0\.0\.1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((9m\d\ds|10m0s) left\) +0$`).MatchString(lines[1]) {
		t.Fatalf("ftpsd ban list: exit %d\n%s\nwant a header and 127.0.0.1 banned for about 10m (and not 127.0.0.2)", code, out)
	}
	out, _, code = s.ftpsd(t, false, "ban", "list", "-json", "-config", s.path)
	var bans struct {
		Bans []struct {
			Client      string    `json:"client"`
			BannedUntil time.Time `json:"banned_until"`
		} `json:"bans"`
	}
	if err := json.Unmarshal([]byte(out), &bans); code != 0 || err != nil || len(bans.Bans) != 1 ||
		bans.Bans[0].Client != "127.0.0.1/32" || time.Until(bans.Bans[0].BannedUntil) < 5*time.Minute {
		t.Fatalf("ftpsd ban list -json: exit %d, %v, %+v; want 127.0.0.1/32 banned for about 10m", code, err, bans)
	}

	for _, tc := range []struct {
		addr string
		code int
		out  string // stdout, or else stderr
	}{
		{"nonsense", 2, `ftpsd ban remove: ADDR: "nonsense" is not an IP address`},
		{"10.0.0.0/8", 2, `is neither an IP address nor a banned client`},
		{"192.0.2.1", 1, "ftpsd: 192.0.2.1/32: no ban or failed login on record"},
		{"127.0.0.1", 0, "lifted: 127.0.0.1 can log in again"},
		{"127.0.0.1", 1, "ftpsd: 127.0.0.1/32: no ban or failed login on record"},
	} {
		stdout, stderr, code := s.ftpsd(t, false, "ban", "remove", tc.addr, "-config", s.path)
		if code != tc.code || !strings.Contains(stdout+stderr, tc.out) {
			t.Errorf("ftpsd ban remove %s: exit %d, %q %q; want %d and %q", tc.addr, code, stdout, stderr, tc.code, tc.out)
		}
	}
	s.await(t, 0, func(r logRec) bool { return r.str("msg") == "login ban lifted" && r.str("client") == "127.0.0.1/32" })
	s.login(t, user, pass).Cmd(221, "QUIT")
	out, _, _ = s.ftpsd(t, false, "ban", "list", "-config", s.path)
	if out != "no bans, no failed logins counting\n" {
		t.Errorf("ftpsd ban list after the removal: %q", out)
	}

	// A crash saves nothing: only the save by "ban remove" can keep the
	// ban away after the restart.
	s.signal(t, syscall.SIGKILL)
	if _, err := s.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	s.await(t, 0, msgIs("replaced a stale control socket"))
	s.login(t, user, pass).Cmd(221, "QUIT")
	out, _, code = s.ftpsd(t, false, "ban", "list", "-config", s.path)
	if code != 0 || out != "no bans, no failed logins counting\n" {
		t.Errorf("ftpsd ban list after a crash and a restart: exit %d, %q", code, out)
	}
}
