package ftps_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/ftpstest"
)

const user, pass = "alice", "alice-secret"

// step is one command and the reply code it must get.
type step struct {
	line string
	code int
}

func run(t *testing.T, c *ftpstest.Conn, steps []step) {
	t.Helper()
	for _, st := range steps {
		c.Send(st.line)
		if code, msg := c.Read(); code != st.code {
			t.Errorf("%q: got %d %q, want %d", st.line, code, msg, st.code)
		}
	}
}

func TestBeforeTLS(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	run(t, c, []step{
		{"USER alice", 530},
		{"PASS alice-secret", 530},
		{"PBSZ 0", 503},
		{"PROT P", 503},
		{"FEAT", 211},
		{"NOOP", 200},
		{"LIST", 530},
		{"RETR x", 530},
		{"PASV", 530},
		{"XYZZY", 500},
		{"AUTH KERBEROS", 504},
		{"AUTH", 501},
		{"HELP", 214},
		{"QUIT", 221},
	})
}

func TestAfterTLSBeforeLogin(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	c.AuthTLS(s.ClientTLS())
	if got := c.ControlState().NegotiatedProtocol; got != "" && got != "ftp" {
		t.Errorf("ALPN = %q", got)
	}
	run(t, c, []step{
		{"AUTH TLS", 503},
		{"PROT P", 503}, // PBSZ first
		{"PBSZ x", 501},
		{"PBSZ 0", 200},
		{"PROT X", 504},
		{"PROT C", 534},
		{"PROT S", 536},
		{"PROT P", 200},
		{"CCC", 534},
		{"PASV", 530},
		{"CWD /", 530},
		{"PASS x", 503},
		{"USER alice", 331},
		{"PASS wrong", 530},
		{"USER alice", 331},
		{"PASS alice-secret", 230},
		{"USER bob", 530},
		{"PWD", 257},
		{"SYST", 215},
		{"TYPE I", 200},
		{"TYPE A", 200},
		{"TYPE E", 504},
		{"MODE S", 200},
		{"MODE B", 504},
		{"STRU F", 200},
		{"STRU R", 504},
		{"OPTS UTF8 ON", 200},
		{"OPTS MLST type;size;", 200},
		{"OPTS BOGUS", 501},
		{"ALLO 100", 202},
		{"REST x", 501},
		{"REST -1", 501},
		{"RNTO x", 503},
		{"STAT", 211},
		{"PORT 127,0,0,1,4,1", 502},
		{"EPSV 9", 501},
		{"MFMT 2026 x", 501},
		{"ABOR", 225},
		{"QUIT", 221},
	})
}

func TestLoginAttemptsLimited(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	c.AuthTLS(s.ClientTLS())
	run(t, c, []step{{"USER alice", 331}, {"PASS a", 530}, {"USER alice", 331}, {"PASS b", 530}, {"USER alice", 331}, {"PASS c", 421}})
}

func TestPlaintextLoginAllowedByConfig(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.AllowPlaintextLogin = true }})
	c := s.Dial(t)
	run(t, c, []step{{"USER alice", 331}, {"PASS alice-secret", 230}, {"PASV", 227}, {"LIST", 521}})
}

func TestLineTooLong(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	c.Send("NOOP " + strings.Repeat("x", 10<<10))
	c.Expect(500)
	assertClosed(t, c)
}

func TestPipelinedAfterAuthIsRefused(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	c.Send("AUTH TLS\r\nUSER alice")
	c.Expect(503)
	assertClosed(t, c)
}

func assertClosed(t *testing.T, c *ftpstest.Conn) {
	t.Helper()
	for range 3 {
		if _, _, err := c.TryRead(); err != nil {
			return
		}
	}
	t.Fatal("connection still open")
}

// login returns a logged-in control connection with PROT P.
func login(t *testing.T, s *ftpstest.Server, cfg *tls.Config) *ftpstest.Conn {
	t.Helper()
	c := s.Dial(t)
	c.Login(cfg, user, pass)
	return c
}

// transfer runs a data command over PASV and returns what the data
// connection carried; send is uploaded when non-nil.
func transfer(t *testing.T, c *ftpstest.Conn, line string, send []byte) []byte {
	t.Helper()
	addr := c.Pasv()
	c.Send(line)
	dc, err := ftpstest.DialData(t, addr, c.TLS)
	if err != nil {
		t.Fatalf("%s: data dial: %v", line, err)
	}
	c.Expect(150)
	var got []byte
	if send != nil {
		if _, err := dc.Write(send); err != nil {
			t.Fatal(err)
		}
		dc.Close()
	} else {
		got, err = io.ReadAll(dc)
		if err != nil {
			t.Fatalf("%s: read data: %v", line, err)
		}
		dc.Close()
	}
	c.Expect(226)
	return got
}

func TestFileOperations(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s := ftpstest.NewServer(t, ftpstest.Options{})
			cfg := s.ClientTLS()
			cfg.MaxVersion = v
			c := login(t, s, cfg)
			home := s.Home(user)
			content := bytes.Repeat([]byte("0123456789abcdef"), 100000) // 1.6 MB

			transfer(t, c, "STOR big.bin", content)
			if got, _ := os.ReadFile(filepath.Join(home, "big.bin")); !bytes.Equal(got, content) {
				t.Fatalf("stored %d bytes, want %d", len(got), len(content))
			}
			if got := c.Cmd(213, "SIZE big.bin"); got != fmt.Sprint(len(content)) {
				t.Errorf("SIZE = %s", got)
			}
			c.Cmd(213, "MDTM big.bin")
			got := transfer(t, c, "RETR big.bin", nil)
			if sha256.Sum256(got) != sha256.Sum256(content) {
				t.Fatal("RETR content differs")
			}
			c.Cmd(350, "REST 1000")
			if got := transfer(t, c, "RETR big.bin", nil); !bytes.Equal(got, content[1000:]) {
				t.Fatal("REST+RETR content differs")
			}
			mlsd := string(transfer(t, c, "MLSD", nil))
			if !strings.Contains(mlsd, "type=file;size=1600000;") || !strings.Contains(mlsd, " big.bin\r\n") {
				t.Errorf("MLSD = %q", mlsd)
			}
			list := string(transfer(t, c, "LIST -la", nil))
			if !strings.Contains(list, "1600000") || !strings.HasPrefix(list, "-rw") {
				t.Errorf("LIST = %q", list)
			}
			if nl := string(transfer(t, c, "NLST", nil)); nl != "big.bin\r\n" {
				t.Errorf("NLST = %q", nl)
			}

			// Resume an upload: REST+STOR writes in place; APPE appends.
			os.WriteFile(filepath.Join(home, "part.bin"), content[:500], 0o644)
			c.Cmd(350, "REST 500")
			transfer(t, c, "STOR part.bin", content[500:1000])
			transfer(t, c, "APPE part.bin", content[1000:1500])
			if got, _ := os.ReadFile(filepath.Join(home, "part.bin")); !bytes.Equal(got, content[:1500]) {
				t.Errorf("resumed upload has %d bytes, want 1500 matching", len(got))
			}

			c.Cmd(257, "MKD sub")
			c.Cmd(250, "CWD sub")
			if pwd := c.Cmd(257, "PWD"); !strings.HasPrefix(pwd, `"/sub"`) {
				t.Errorf("PWD = %s", pwd)
			}
			c.Cmd(250, "CDUP")
			c.Cmd(350, "RNFR big.bin")
			c.Cmd(250, "RNTO sub/renamed.bin")
			c.Cmd(550, "SIZE big.bin")
			c.Cmd(213, "MFMT 20200102030405 sub/renamed.bin")
			if got := c.Cmd(213, "MDTM sub/renamed.bin"); got != "20200102030405" {
				t.Errorf("MDTM after MFMT = %s", got)
			}
			mlst := c.Cmd(250, "MLST sub/renamed.bin")
			if !strings.Contains(mlst, "modify=20200102030405;") {
				t.Errorf("MLST = %q", mlst)
			}
			c.Cmd(550, "RMD sub") // not empty
			c.Cmd(250, "DELE sub/renamed.bin")
			c.Cmd(250, "RMD sub")
			c.Cmd(550, "DELE nothing")
			transfer(t, c, "STOU", []byte("u"))
			c.Cmd(221, "QUIT")
		})
	}
}

func TestPathsStayInHome(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	home := s.Home(user)
	outside := filepath.Join(filepath.Dir(s.Root), "outside.txt")
	os.WriteFile(outside, []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(home, "abs-link"))
	os.Symlink("../../outside.txt", filepath.Join(home, "rel-link"))
	os.Symlink(filepath.Dir(s.Root), filepath.Join(home, "dir-link"))
	os.WriteFile(filepath.Join(home, "in.txt"), []byte("ok"), 0o644)
	os.Symlink("in.txt", filepath.Join(home, "good-link"))

	c := login(t, s, s.ClientTLS())
	c.Pasv()
	run(t, c, []step{
		{"RETR ../../etc/passwd", 550},
		{"RETR /etc/passwd", 550},
		{"RETR ../outside.txt", 550},
		{"RETR abs-link", 550},
		{"RETR rel-link", 550},
		{"CWD dir-link", 550},
		{"SIZE rel-link", 550},
		{"STOR abs-link", 550},
		{"DELE ../outside.txt", 550},
		{"CWD ../..", 250},
		{"SIZE good-link", 213},
	})
	if pwd := c.Cmd(257, "PWD"); !strings.HasPrefix(pwd, `"/"`) {
		t.Errorf("PWD after CWD ../.. = %s", pwd)
	}
	if list := string(transfer(t, c, "LIST", nil)); strings.Contains(list, "abs-link") || !strings.Contains(list, "good-link") {
		t.Errorf("LIST shows escaping links or hides good ones: %q", list)
	}
	if b, _ := os.ReadFile(outside); string(b) != "secret" {
		t.Error("outside file changed")
	}
}

func TestPermissions(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{{Name: user, Password: pass, Perms: []string{"list", "read"}}}})
	os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("x"), 0o644)
	c := login(t, s, s.ClientTLS())
	c.Pasv()
	run(t, c, []step{
		{"STOR new.txt", 550},
		{"APPE f.txt", 550},
		{"DELE f.txt", 550},
		{"MKD d", 550},
		{"RMD d", 550},
		{"RNFR f.txt", 550},
		{"MLST /", 250},
		{"MFMT 20200102030405 f.txt", 550},
		{"SIZE f.txt", 213},
	})
	if got := string(transfer(t, c, "RETR f.txt", nil)); got != "x" {
		t.Errorf("RETR = %q", got)
	}
}

func TestDataConnectionMustResume(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s := ftpstest.NewServer(t, ftpstest.Options{})
			os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("x"), 0o644)
			cfg := s.ClientTLS()
			cfg.MaxVersion = v
			c := login(t, s, cfg)

			// Same client, but its data connection does not resume.
			noCache := s.ClientTLS()
			noCache.MaxVersion = v
			noCache.ClientSessionCache = nil
			addr := c.Pasv()
			c.Send("RETR f.txt")
			ftpstest.DialData(t, addr, noCache) // the server refuses it after the handshake
			c.Expect(150)
			msg := c.Expect(425)
			if !strings.Contains(msg, "TLS session of data connection not resumed") {
				t.Errorf("425 text = %q", msg)
			}

			// Another control session's ticket does not open this one's data.
			other := login(t, s, s.ClientTLS())
			otherCfg := other.TLS
			otherCfg.MaxVersion = v
			other.Cmd(200, "NOOP") // let the TLS 1.3 ticket arrive
			addr = c.Pasv()
			c.Send("RETR f.txt")
			ftpstest.DialData(t, addr, otherCfg)
			c.Expect(150)
			c.Expect(425)

			// The session's own client still works afterwards.
			if got := transfer(t, c, "RETR f.txt", nil); string(got) != "x" {
				t.Errorf("RETR = %q", got)
			}
		})
	}
}

func TestResumptionCompatibleAcceptsTicketlessClient(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Passive: func(c *passive.Config) { c.TLSResumption = "compatible" }})
	os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("x"), 0o644)
	cfg := s.ClientTLS()
	cfg.MaxVersion = tls.VersionTLS12
	cfg.SessionTicketsDisabled = true // like curl on OpenSSL
	c := login(t, s, cfg)
	if got := transfer(t, c, "RETR f.txt", nil); string(got) != "x" {
		t.Errorf("RETR = %q", got)
	}
}

func TestDataFromAnotherIPRefused(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Passive: func(c *passive.Config) { c.AcceptTimeout = 2 * time.Second }})
	os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("x"), 0o644)
	c := login(t, s, s.ClientTLS())
	addr := c.Pasv()
	c.Send("RETR f.txt")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	thief, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	defer thief.Close()
	c.Expect(150)
	thief.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := thief.Read(make([]byte, 1)); err == nil {
		t.Errorf("thief read %d bytes", n)
	}
	c.Expect(425) // the rightful client never came
	if !s.Log.Contains("127.0.0.2") {
		t.Error("the refused peer is not logged")
	}
}

func TestPassivePortExhaustion(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Passive: func(c *passive.Config) {
		// A one-port range; find a free port first.
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		c.Ports = fmt.Sprint(p)
	}})
	os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("x"), 0o644)
	a := login(t, s, s.ClientTLS())
	b := login(t, s, s.ClientTLS())
	addr := a.Pasv()
	b.Cmd(425, "PASV")
	b.Cmd(425, "EPSV")
	b.Cmd(200, "NOOP") // still serving
	a.Send("RETR f.txt")
	dc, err := ftpstest.DialData(t, addr, a.TLS)
	if err != nil {
		t.Fatal(err)
	}
	a.Expect(150)
	io.ReadAll(dc)
	a.Expect(226)
	if got := transfer(t, b, "RETR f.txt", nil); string(got) != "x" { // the port is free again
		t.Errorf("RETR = %q", got)
	}
}

func TestAbortedOverwriteKeepsOldFile(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	path := filepath.Join(s.Home(user), "doc.txt")
	os.WriteFile(path, []byte("old version"), 0o644)
	c := login(t, s, s.ClientTLS())

	// 1. ABOR in the middle of the upload.
	addr := c.Pasv()
	c.Send("STOR doc.txt")
	dc, err := ftpstest.DialData(t, addr, c.TLS)
	if err != nil {
		t.Fatal(err)
	}
	c.Expect(150)
	dc.Write([]byte("new but incomplete"))
	time.Sleep(100 * time.Millisecond)
	c.Send("ABOR")
	c.Expect(426)
	c.Expect(226)
	assertFile(t, path, "old version")

	// 2. The client dies: TCP closes without TLS close_notify.
	addr = c.Pasv()
	c.Send("STOR doc.txt")
	dc, err = ftpstest.DialData(t, addr, c.TLS)
	if err != nil {
		t.Fatal(err)
	}
	c.Expect(150)
	dc.Write([]byte("half"))
	dc.(*tls.Conn).NetConn().Close()
	c.Expect(426)
	assertFile(t, path, "old version")

	// 3. A complete upload replaces it.
	transfer(t, c, "STOR doc.txt", []byte("new version"))
	assertFile(t, path, "new version")
	entries, _ := os.ReadDir(s.Home(user))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	if got, err := os.ReadFile(path); err != nil || string(got) != want {
		t.Fatalf("%s = %q, %v; want %q", path, got, err, want)
	}
}

func TestAbortDownload(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	os.WriteFile(filepath.Join(s.Home(user), "big"), bytes.Repeat([]byte("x"), 64<<20), 0o644)
	c := login(t, s, s.ClientTLS())
	addr := c.Pasv()
	c.Send("RETR big")
	dc, err := ftpstest.DialData(t, addr, c.TLS)
	if err != nil {
		t.Fatal(err)
	}
	c.Expect(150)
	dc.Read(make([]byte, 1000)) // the transfer is running; stop reading
	c.Send("ABOR")
	c.Expect(426)
	c.Expect(226)
	c.Cmd(200, "NOOP")
}

func TestConnectionLimits(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.MaxConnectionsPerIP = 2 }})
	s.Dial(t)
	s.Dial(t)
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(buf), "421 ") {
		t.Errorf("third connection got %q", buf)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.LoginTimeout = 300 * time.Millisecond }})
	c := s.Dial(t)
	c.Expect(421)
}

func TestShutdownTellsIdleSessions(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := login(t, s, s.ClientTLS())
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(t.Context()) }()
	c.Expect(421)
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

func TestRenameOverExistingNeedsWrite(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{{Name: user, Password: pass, Perms: []string{"list", "read", "rename"}}}})
	home := s.Home(user)
	os.WriteFile(filepath.Join(home, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(home, "b"), []byte("b"), 0o644)
	c := login(t, s, s.ClientTLS())
	run(t, c, []step{{"RNFR a", 350}, {"RNTO b", 550}, {"RNFR a", 350}, {"RNTO c", 250}})
	assertFile(t, filepath.Join(home, "b"), "b")
	mlst := c.Cmd(250, "MLST /")
	_, after, _ := strings.Cut(mlst, "perm=")
	if perm, _, _ := strings.Cut(after, ";"); perm != "el" {
		t.Errorf("MLST / perm = %q, want \"el\" (no rename or delete of the home): %q", perm, mlst)
	}
}

func TestImplicitFTPS(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s := ftpstest.NewServer(t, ftpstest.Options{Implicit: true})
			os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("implicit"), 0o644)
			cfg := s.ClientTLS()
			cfg.MaxVersion = v
			c := s.DialImplicit(t, cfg)
			run(t, c, []step{{"AUTH TLS", 503}, {"USER alice", 331}, {"PASS alice-secret", 230}})
			// PROT P is the default here: a transfer works without PBSZ/PROT.
			if got := transfer(t, c, "RETR f.txt", nil); string(got) != "implicit" {
				t.Errorf("RETR = %q", got)
			}
			c.Cmd(221, "QUIT")

			// A plain-text client on the implicit port gets nothing.
			raw, err := net.Dial("tcp", s.ImplicitAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.Write([]byte("USER alice\r\n"))
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, _ := io.ReadAll(raw); bytes.Contains(b, []byte("220")) {
				t.Errorf("plain client on the implicit port got %q", b)
			}
		})
	}
}

// TestSpecialFilesDoNotBlock: a FIFO in a home (made by a shell user) must
// not hang the session: opening one for reading or writing would block
// until a peer appears.
func TestSpecialFilesDoNotBlock(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	if err := syscall.Mkfifo(filepath.Join(s.Home(user), "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	c := login(t, s, s.ClientTLS())
	c.Pasv()
	run(t, c, []step{{"RETR pipe", 550}, {"STOR pipe", 550}, {"APPE pipe", 550}, {"CWD pipe", 550}, {"MLSD pipe", 501}})
	c.Cmd(350, "REST 1")
	c.Cmd(550, "STOR pipe")
	if list := string(transfer(t, c, "LIST", nil)); !strings.Contains(list, "pipe") {
		t.Errorf("LIST = %q", list)
	}
	c.Cmd(221, "QUIT")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
