package test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestLoginBeforeTLSRefused: a client that sends its password before AUTH
// TLS is refused with 530, the password is not checked (no login, no
// failure counted), and the same connection can still upgrade and log in.
// Real clients that do not ask for TLS are refused the same way.
func TestLoginBeforeTLSRefused(t *testing.T) {
	t.Parallel()
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		s := ftpstest.NewServer(t, ftpstest.Options{})
		c := s.Dial(t)
		for _, line := range []string{"USER " + user, "PASS " + pass, "USER " + user, "PASS wrong", "USER " + user, "PASS wrong"} {
			c.Send(line)
			if code, msg := c.Read(); code != 530 {
				t.Errorf("%s before AUTH TLS: %d %q, want 530", strings.Fields(line)[0], code, msg)
			}
		}
		if n := s.Log.Count(`msg=login `); n != 0 {
			t.Errorf("%d logins before TLS", n)
		}
		// Three "wrong" passwords in clear were not checked, so they
		// did not use up the session's attempts.
		c.AuthTLS(s.ClientTLS())
		c.Cmd(331, "USER "+user)
		c.Cmd(230, "PASS "+pass)
		if n := s.Log.Count(`msg=login .* tls=true`); n != 1 {
			t.Errorf("%d TLS logins logged, want 1", n)
		}
	})
	t.Run("go-client-plain", func(t *testing.T) {
		t.Parallel()
		s := ftpstest.NewServer(t, ftpstest.Options{})
		var dialogue bytes.Buffer // what the client read from the server
		c, err := ftp.Dial(s.Addr, ftp.DialWithTimeout(5*time.Second), ftp.DialWithContext(t.Context()), ftp.DialWithDebugOutput(&dialogue))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Quit()
		if err := c.Login(user, pass); err == nil || !strings.Contains(dialogue.String(), "\n530 ") {
			t.Errorf("plain FTP login: %v, want it refused with a 530; the client read:\n%s", err, dialogue.String())
		}
		if strings.Contains(dialogue.String(), "\n230 ") {
			t.Error("the client logged in without TLS")
		}
	})
	t.Run("curl-plain", func(t *testing.T) {
		t.Parallel()
		s := ftpstest.NewServer(t, ftpstest.Options{})
		bin := needTool(t, "curl")
		_, stderr, err := runTool(t, t.TempDir(), nil, bin, "--silent", "--show-error", "--verbose", "--max-time", "30",
			"--user", user+":"+pass, fmt.Sprintf("ftp://127.0.0.1:%d/", s.Port()))
		if err == nil || !strings.Contains(stderr, "< 530") {
			t.Errorf("curl without TLS: %v, want it refused with a 530", err)
		}
		if strings.Contains(stderr, "< 230") {
			t.Error("curl logged in without TLS")
		}
	})
}

// TestRefusedDataClientCannotComeBack: a client on the same IP that races
// a session's legitimate client to its passive port is refused (it has no
// ticket of that session), and it must stay refused on the session's next
// passive port. The data port runs a full TLS handshake before refusing,
// so whatever ticket it issues there must not carry the session's tag;
// otherwise one refused attempt harvests a ticket that opens every later
// data connection of the session.
func TestRefusedDataClientCannotComeBack(t *testing.T) {
	t.Parallel()
	eachVersion(t, func(t *testing.T, v uint16, s *ftpstest.Server) {
		secret := testutil.Payload(50000, 42)
		testutil.WriteFile(t, s.Home(user), "secret.bin", secret)
		own := s.ClientTLS()
		own.MinVersion, own.MaxVersion = v, v
		c := s.Login(t, own)

		thief := s.ClientTLS() // same IP, its own session cache, no session
		thief.MinVersion, thief.MaxVersion = v, v
		for attempt := range 3 {
			addr := c.Pasv()
			c.Send("RETR secret.bin")
			dc, err := ftpstest.DialData(t, addr, thief)
			c.Expect(150)
			var got []byte
			if err == nil {
				if dc.(*tls.Conn).ConnectionState().DidResume {
					t.Errorf("attempt %d: the thief resumed the session", attempt)
				}
				got, _ = io.ReadAll(dc) // also takes in any TLS 1.3 ticket
				dc.Close()
			}
			if len(got) > 0 {
				t.Errorf("attempt %d: the thief received %d bytes of the file", attempt, len(got))
			}
			if code, msg := c.Read(); code != 425 {
				t.Fatalf("attempt %d: %d %q, want 425 (the thief's data connection was accepted)", attempt, code, msg)
			}
		}
	})
}

// TestPathsCannotLeaveHome drives a real client (jlaffaye/ftp) at files
// outside the home: parent paths, absolute paths, and symlinks leading out
// are refused with 550, nothing outside changes, and no reply names a
// real path or carries the file.
func TestPathsCannotLeaveHome(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	home := s.Home(user)
	outsideDir := filepath.Dir(s.Root) // the server's temp dir, beside the homes
	secret := []byte("TOP-SECRET-OUTSIDE-HOME\n")
	outside := testutil.WriteFile(t, outsideDir, "outside.txt", secret)
	testutil.WriteFile(t, home, "inside.txt", []byte("inside\n"))
	for link, target := range map[string]string{
		"abs-link":     outside,
		"rel-link":     "../../outside.txt",
		"dir-link":     outsideDir,
		"passwd-link":  "/etc/passwd",
		"nested/up":    "../../../outside.txt",
		"nested/.keep": "",
		"good-link":    "nested/.keep", // stays inside: allowed
	} {
		p := filepath.Join(home, filepath.FromSlash(link))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if target == "" {
			os.WriteFile(p, nil, 0o644)
			continue
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	c := dialGo(t, s, s.ClientTLS())

	want550 := func(what string, err error) {
		t.Helper()
		// 553 (file name not allowed) is as good a refusal for a
		// STOR target.
		if err == nil || !strings.Contains(err.Error(), "550") && !strings.Contains(err.Error(), "553") {
			t.Errorf("%s: %v, want a 550", what, err)
			return
		}
		for _, leak := range []string{s.Root, outsideDir, "root:", string(secret[:10])} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: the reply %q leaks %q", what, err, leak)
			}
		}
	}
	retr := func(name string) error {
		r, err := c.Retr(name)
		if err != nil {
			return err
		}
		got, _ := io.ReadAll(r)
		r.Close()
		return fmt.Errorf("RETR %s delivered %d bytes: %q", name, len(got), got)
	}
	for _, name := range []string{
		"../../etc/passwd", "/etc/passwd", "/../../../../etc/passwd", "..\\..\\etc\\passwd",
		"../outside.txt", "/../outside.txt", "abs-link", "rel-link", "passwd-link", "nested/up",
		"dir-link/outside.txt",
	} {
		want550("RETR "+name, retr(name))
	}
	for _, name := range []string{"abs-link", "rel-link", "passwd-link", "dir-link/outside.txt"} {
		_, err := c.FileSize(name)
		want550("SIZE "+name, err)
		_, err = c.GetTime(name)
		want550("MDTM "+name, err)
	}
	want550("CWD dir-link", c.ChangeDir("dir-link"))
	_, err := c.List("dir-link")
	want550("MLSD dir-link", err)
	want550("STOR abs-link", c.Stor("abs-link", strings.NewReader("overwrite")))
	want550("STOR dir-link/x", c.Stor("dir-link/x", strings.NewReader("x")))
	want550("APPE rel-link", c.Append("rel-link", strings.NewReader("more")))
	want550("RNTO abs-link/x", c.Rename("inside.txt", "dir-link/escaped.txt"))
	want550("DELE ../outside.txt", c.Delete("../outside.txt"))
	want550("MKD dir-link/new", c.MakeDir("dir-link/new"))
	want550("RMD dir-link/..", c.RemoveDir("dir-link/.."))

	// A link that stays inside the home works.
	if n, err := c.FileSize("good-link"); err != nil || n != 0 {
		t.Errorf("SIZE good-link: %d, %v; want 0", n, err)
	}
	// ".." above the home stops at its root.
	if err := c.ChangeDir("../.."); err != nil {
		t.Errorf("CWD ../..: %v", err)
	}
	if wd, err := c.CurrentDir(); err != nil || wd != "/" {
		t.Errorf("PWD after CWD ../.. = %q, %v; want \"/\"", wd, err)
	}

	// "/../x" is "/x" inside the home: allowed, and it stays inside.
	if err := c.Stor("/../../clamped.txt", strings.NewReader("clamped")); err != nil {
		t.Errorf("STOR /../../clamped.txt: %v", err)
	}
	testutil.AssertContent(t, filepath.Join(home, "clamped.txt"), []byte("clamped"))
	if err := c.Rename("inside.txt", "../../escaped.txt"); err != nil {
		t.Errorf("RNTO ../../escaped.txt: %v", err)
	}
	testutil.AssertContent(t, filepath.Join(home, "escaped.txt"), []byte("inside\n"))
	if entries, err := c.List("/"); err != nil {
		t.Errorf("MLSD /: %v", err)
	} else {
		listed := false
		for _, e := range entries {
			if e.Name == "abs-link" || e.Name == "rel-link" || e.Name == "dir-link" || e.Name == "passwd-link" {
				t.Errorf("listing shows %q, a link out of the home", e.Name)
			}
			listed = listed || e.Name == "good-link"
		}
		if !listed {
			t.Error("listing hides good-link, a link inside the home")
		}
	}

	testutil.AssertContent(t, outside, secret)
	for _, name := range []string{"escaped.txt", "x", "new", "clamped.txt"} {
		testutil.AssertMissing(t, filepath.Join(outsideDir, name))
	}
	if strings.Contains(s.Log.String(), string(secret[:10])) {
		t.Error("the server log holds the outside file's content")
	}
}

// TestPassivePortExhaustion: with a one-port range, a second session's
// transfer gets 425 from a real client (jlaffaye/ftp tries EPSV, then
// PASV), the server keeps answering, and the port serves the second
// session once the first transfer is over.
func TestPassivePortExhaustion(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := ftpstest.NewServer(t, ftpstest.Options{Passive: func(c *passive.Config) { c.Ports = fmt.Sprint(port) }})
	data := testutil.Payload(1<<20, 60)
	testutil.WriteFile(t, s.Home(user), "f.bin", data)

	holder := s.Login(t, s.ClientTLS())
	addr := holder.Pasv() // takes the only port
	if !strings.HasSuffix(addr, fmt.Sprintf(":%d", port)) {
		t.Fatalf("PASV gave %s, want port %d", addr, port)
	}

	other := dialGo(t, s, s.ClientTLS())
	for i := range 3 {
		if _, err := other.List("/"); err == nil || !strings.Contains(err.Error(), "425") {
			t.Errorf("List %d with no free port: %v, want a 425", i, err)
		}
		r, err := other.Retr("f.bin")
		if err == nil {
			r.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "425") {
			t.Errorf("Retr %d with no free port: %v, want a 425", i, err)
		}
		if err := other.NoOp(); err != nil {
			t.Fatalf("NOOP while exhausted: %v", err)
		}
	}
	if s.Log.Count(`msg="passive ports exhausted"`) == 0 {
		t.Error("exhaustion is not logged")
	}
	// Both ways of asking were answered 425, and the session went on.
	assertCommands(t, s, "EPSV", "PASV", "NOOP")
	if n := s.Log.Count(logReply425); n < 6 {
		t.Errorf("%d replies 425 logged, want at least 6 (List and Retr, three times)", n)
	}

	// The holder's transfer goes through on the port it holds.
	holder.Send("RETR f.bin")
	dc := holder.OpenData(addr)
	got, _ := io.ReadAll(dc)
	dc.Close()
	holder.Expect(226)
	if testutil.Sum(got) != testutil.Sum(data) {
		t.Error("holder's RETR returned other content")
	}

	// Now the port is free again for the other session.
	r, err := other.Retr("f.bin")
	if err != nil {
		t.Fatalf("Retr after the port was freed: %v", err)
	}
	got, err = io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("Retr after the port was freed: %d bytes, %v", len(got), err)
	}
}

// TestRemoveNonEmptyDirectory: RMD of a directory that still has files is
// refused with 550 and says why, and removes nothing.
func TestRemoveNonEmptyDirectory(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	testutil.WriteFile(t, s.Home(user), "full/f.txt", []byte("x"))
	c := s.Login(t, s.ClientTLS())
	msg := c.Cmd(550, "RMD full")
	testutil.AssertContent(t, filepath.Join(s.Home(user), "full", "f.txt"), []byte("x"))
	t.Run("reply-text", func(t *testing.T) {
		if !strings.Contains(strings.ToLower(msg), "not empty") {
			t.Errorf("RMD of a non-empty directory: 550 %q, want it to say the directory is not empty", msg)
		}
	})
}
