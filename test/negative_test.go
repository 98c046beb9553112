package test

import (
	"bytes"
	"crypto/tls"
	"errors"
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
		if n := logLines(s, `msg=login `); n != 0 {
			t.Errorf("%d logins before TLS", n)
		}
		// Three "wrong" passwords in clear were not checked, so they
		// did not use up the session's attempts.
		c.AuthTLS(s.ClientTLS())
		c.Cmd(331, "USER "+user)
		c.Cmd(230, "PASS "+pass)
		if n := logLines(s, `msg=login .* tls=true`); n != 1 {
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

// TestDataConnectionNotResumed: data connections that do not resume their
// own control session are refused with the 425 FileZilla users know, for
// listings, downloads and uploads; a refused STOR does not create or
// truncate its target; and the control connection goes on working.
func TestDataConnectionNotResumed(t *testing.T) {
	t.Parallel()
	type variant struct {
		name    string
		version uint16
		// ticketless: the control client, like curl on OpenSSL, offers
		// no session tickets at all.
		ticketless bool
		// data returns the TLS config of the misbehaving data client.
		data func(t *testing.T, s *ftpstest.Server) *tls.Config
	}
	noCache := func(v uint16) func(*testing.T, *ftpstest.Server) *tls.Config {
		return func(_ *testing.T, s *ftpstest.Server) *tls.Config {
			cfg := s.ClientTLS()
			cfg.ClientSessionCache = nil
			cfg.MinVersion, cfg.MaxVersion = v, v
			return cfg
		}
	}
	otherSession := func(v uint16) func(*testing.T, *ftpstest.Server) *tls.Config {
		return func(t *testing.T, s *ftpstest.Server) *tls.Config {
			cfg := s.ClientTLS()
			cfg.MinVersion, cfg.MaxVersion = v, v
			other := s.Dial(t)
			other.Login(cfg, user, pass)
			other.Cmd(200, "NOOP") // the TLS 1.3 ticket has arrived
			return cfg
		}
	}
	ticketless := func(_ *testing.T, s *ftpstest.Server) *tls.Config {
		cfg := s.ClientTLS()
		cfg.SessionTicketsDisabled = true
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		return cfg
	}
	variants := []variant{
		{"no-session-cache/TLS1.2", tls.VersionTLS12, false, noCache(tls.VersionTLS12)},
		{"no-session-cache/TLS1.3", tls.VersionTLS13, false, noCache(tls.VersionTLS13)},
		{"ticketless-like-curl/TLS1.2", tls.VersionTLS12, true, ticketless},
		{"other-sessions-ticket/TLS1.2", tls.VersionTLS12, false, otherSession(tls.VersionTLS12)},
		{"other-sessions-ticket/TLS1.3", tls.VersionTLS13, false, otherSession(tls.VersionTLS13)},
	}
	for _, vt := range variants {
		t.Run(vt.name, func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{})
			home := s.Home(user)
			secret := payload(100000, 40)
			writeFile(t, home, "secret.bin", secret)
			writeFile(t, home, "old.txt", []byte("old content"))
			own := s.ClientTLS()
			own.MinVersion, own.MaxVersion = vt.version, vt.version
			own.SessionTicketsDisabled = vt.ticketless
			c := s.Dial(t)
			c.Login(own, user, pass)
			for _, cmd := range []string{"MLSD", "LIST", "RETR secret.bin", "STOR old.txt", "STOR new.txt", "APPE old.txt"} {
				// A fresh bad client each time: one that was refused
				// before may hold a ticket from this session's data
				// port, which TestRefusedDataClientCannotComeBack covers.
				bad := vt.data(t, s)
				addr := c.Pasv()
				c.Send(cmd)
				dc, err := ftpstest.DialData(t, addr, bad)
				c.Expect(150)
				if err == nil {
					if tc := dc.(*tls.Conn); tc.ConnectionState().DidResume {
						t.Errorf("%s: a data client without this session's ticket resumed it", cmd)
					}
					if strings.HasPrefix(cmd, "STOR") || strings.HasPrefix(cmd, "APPE") {
						dc.Write([]byte("overwritten!"))
					}
					got, _ := io.ReadAll(dc)
					if len(got) != 0 {
						t.Errorf("%s: %d bytes leaked over a refused data connection", cmd, len(got))
					}
				}
				msg := c.Expect(425)
				if want := "Unable to build data connection: TLS session of data connection not resumed"; !strings.Contains(msg, want) {
					t.Errorf("%s: 425 %q, want %q", cmd, msg, want)
				}
			}
			assertContent(t, filepath.Join(home, "old.txt"), []byte("old content"))
			assertMissing(t, filepath.Join(home, "new.txt"))
			if n := logLines(s, logRefusedTLS+"required"); n != 6 {
				t.Errorf("%d refusals logged, want 6", n)
			}
			if vt.ticketless {
				// Such a client can never transfer in required mode.
				c.Cmd(221, "QUIT")
				return
			}
			// The session's own, resuming data connection still works.
			c.Cmd(200, "NOOP")
			if got := xfer(t, c, nil, "RETR secret.bin", nil); sum(got) != sum(secret) {
				t.Error("RETR after the refusals returned other content")
			}
			xfer(t, c, nil, "STOR old.txt", []byte("new content"))
			assertContent(t, filepath.Join(home, "old.txt"), []byte("new content"))
		})
	}
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
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{})
			secret := payload(50000, 42)
			writeFile(t, s.Home(user), "secret.bin", secret)
			own := s.ClientTLS()
			own.MinVersion, own.MaxVersion = v, v
			c := s.Dial(t)
			c.Login(own, user, pass)

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
}

// TestDataConnectionFromAnotherIP: a connection to a session's passive
// port from another address (127.0.0.2) is dropped without a byte or a
// TLS handshake, the rightful client connecting afterwards still gets its
// transfer, and other sessions are served meanwhile.
func TestDataConnectionFromAnotherIP(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	data := payload(1<<20, 41)
	writeFile(t, s.Home(user), "f.bin", data)
	c := s.Dial(t)
	c.Login(s.ClientTLS(), user, pass)
	bystander := s.Dial(t)
	bystander.Login(s.ClientTLS(), user, pass)

	addr := c.Pasv()
	c.Send("RETR f.bin")
	c.Expect(150)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	for i := range 3 {
		thief, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatalf("dial from 127.0.0.2: %v", err)
		}
		thief.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Client(thief, s.ClientTLS())
		if err := tc.Handshake(); err == nil {
			t.Errorf("thief %d completed a TLS handshake", i)
			if n, _ := io.Copy(io.Discard, tc); n > 0 {
				t.Errorf("thief %d read %d bytes", i, n)
			}
		}
		thief.Close()
		bystander.Cmd(200, "NOOP")
	}
	waitLog(t, s, `msg="data connection from a foreign address dropped" .*peer=127\.0\.0\.2:`, 3)

	dc, err := ftpstest.DialData(t, addr, c.TLS)
	if err != nil {
		t.Fatalf("rightful data connection: %v", err)
	}
	if !dc.(*tls.Conn).ConnectionState().DidResume {
		t.Error("rightful data connection did not resume")
	}
	got, err := io.ReadAll(dc)
	if err != nil || sum(got) != sum(data) {
		t.Errorf("RETR: %d bytes, %v; want the file", len(got), err)
	}
	dc.Close()
	c.Expect(226)
	if got := xfer(t, bystander, nil, "RETR f.bin", nil); sum(got) != sum(data) {
		t.Error("the bystander's RETR returned other content")
	}
}

// waitLog waits (bounded) until the server log has at least n lines
// matching expr.
func waitLog(t *testing.T, s *ftpstest.Server, expr string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for logLines(s, expr) < n {
		if time.Now().After(deadline) {
			t.Fatalf("server log has %d lines matching %q after 5s, want %d", logLines(s, expr), expr, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	outside := writeFile(t, outsideDir, "outside.txt", secret)
	writeFile(t, home, "inside.txt", []byte("inside\n"))
	for link, target := range map[string]string{
		"abs-link":     outside,
		"rel-link":     "../../outside.txt",
		"dir-link":     outsideDir,
		"passwd-link":  "/etc/passwd",
		"nested/up":    "../../../outside.txt",
		"nested/.keep": "",
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

	// "/../x" is "/x" inside the home: allowed, and it stays inside.
	if err := c.Stor("/../../clamped.txt", strings.NewReader("clamped")); err != nil {
		t.Errorf("STOR /../../clamped.txt: %v", err)
	}
	assertContent(t, filepath.Join(home, "clamped.txt"), []byte("clamped"))
	if err := c.Rename("inside.txt", "../../escaped.txt"); err != nil {
		t.Errorf("RNTO ../../escaped.txt: %v", err)
	}
	assertContent(t, filepath.Join(home, "escaped.txt"), []byte("inside\n"))
	if entries, err := c.List("/"); err != nil {
		t.Errorf("MLSD /: %v", err)
	} else {
		for _, e := range entries {
			if e.Name == "abs-link" || e.Name == "rel-link" || e.Name == "dir-link" || e.Name == "passwd-link" {
				t.Errorf("listing shows %q, a link out of the home", e.Name)
			}
		}
	}

	assertContent(t, outside, secret)
	for _, name := range []string{"escaped.txt", "x", "new", "clamped.txt"} {
		assertMissing(t, filepath.Join(outsideDir, name))
	}
	if strings.Contains(s.Log.String(), string(secret[:10])) {
		t.Error("the server log holds the outside file's content")
	}
}

// TestAbortedOverwriteKeepsOldFile: an upload over an existing file that
// does not complete leaves the old version, whether the client sends ABOR
// in the middle, or dies so that its TCP connection ends without a TLS
// close_notify (FIN, or RST). No temporary file is left behind, and the
// session keeps working.
func TestAbortedOverwriteKeepsOldFile(t *testing.T) {
	t.Parallel()
	type ending int
	const (
		abor ending = iota
		finNoCloseNotify
		rst
	)
	endings := []struct {
		name string
		how  ending
	}{{"ABOR", abor}, {"FIN-without-close_notify", finNoCloseNotify}, {"RST", rst}}
	for _, v := range versions {
		for _, e := range endings {
			t.Run(tls.VersionName(v)+"/"+e.name, func(t *testing.T) {
				t.Parallel()
				s := ftpstest.NewServer(t, ftpstest.Options{})
				home := s.Home(user)
				old := payload(300000, 50)
				path := writeFile(t, home, "doc.bin", old)
				cfg := s.ClientTLS()
				cfg.MinVersion, cfg.MaxVersion = v, v
				c := s.Dial(t)
				c.Login(cfg, user, pass)

				addr := c.Pasv()
				c.Send("STOR doc.bin")
				dc, err := ftpstest.DialData(t, addr, c.TLS)
				if err != nil {
					t.Fatal(err)
				}
				c.Expect(150)
				tc := dc.(*tls.Conn)
				if !tc.ConnectionState().DidResume {
					t.Fatal("data connection did not resume")
				}
				newData := payload(8<<20, 51)
				switch e.how {
				case abor:
					// Keep writing (bounded in time) until the server
					// cuts the data connection; ABOR once some data
					// is through.
					done := make(chan error, 1)
					go func() {
						stop := time.Now().Add(15 * time.Second)
						for off := 0; time.Now().Before(stop); off = (off + 64<<10) % len(newData) {
							if _, err := tc.Write(newData[off : off+64<<10]); err != nil {
								done <- nil
								return
							}
						}
						done <- errors.New("the server never cut the data connection after ABOR")
					}()
					waitLog(t, s, `msg=command .* cmd=STOR`, 1)
					time.Sleep(50 * time.Millisecond)
					c.Send("ABOR")
					c.Expect(426)
					c.Expect(226)
					if err := <-done; err != nil {
						t.Fatal(err)
					}
				case finNoCloseNotify, rst:
					if _, err := tc.Write(newData[:100000]); err != nil {
						t.Fatal(err)
					}
					raw := tc.NetConn().(*net.TCPConn)
					if e.how == rst {
						raw.SetLinger(0)
					} else {
						// Drain what the server sent (a TLS 1.3
						// ticket): closing with unread data would
						// send an RST instead of a FIN.
						raw.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
						io.Copy(io.Discard, raw)
					}
					raw.Close() // no close_notify
					code, msg := c.Read()
					if code != 426 {
						t.Errorf("upload cut without close_notify: %d %q, want 426", code, msg)
					}
				}
				assertContent(t, path, old)
				assertNoTempFiles(t, home)

				// The session goes on, and a complete upload replaces
				// the file.
				c.Cmd(200, "NOOP")
				xfer(t, c, nil, "STOR doc.bin", newData[:200000])
				assertContent(t, path, newData[:200000])
				assertNoTempFiles(t, home)
			})
		}
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "doc.bin" {
			t.Errorf("left in the home: %s", e.Name())
		}
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
	data := payload(1<<20, 60)
	writeFile(t, s.Home(user), "f.bin", data)

	holder := s.Dial(t)
	holder.Login(s.ClientTLS(), user, pass)
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
	if logLines(s, `msg="passive ports exhausted"`) == 0 {
		t.Error("exhaustion is not logged")
	}

	// The holder's transfer goes through on the port it holds.
	holder.Send("RETR f.bin")
	dc, err := ftpstest.DialData(t, addr, holder.TLS)
	if err != nil {
		t.Fatal(err)
	}
	holder.Expect(150)
	got, _ := io.ReadAll(dc)
	dc.Close()
	holder.Expect(226)
	if sum(got) != sum(data) {
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
	writeFile(t, s.Home(user), "full/f.txt", []byte("x"))
	c := s.Dial(t)
	c.Login(s.ClientTLS(), user, pass)
	msg := c.Cmd(550, "RMD full")
	assertContent(t, filepath.Join(s.Home(user), "full", "f.txt"), []byte("x"))
	t.Run("reply-text", func(t *testing.T) {
		if !strings.Contains(strings.ToLower(msg), "not empty") {
			t.Errorf("RMD of a non-empty directory: 550 %q, want it to say the directory is not empty", msg)
		}
	})
}
