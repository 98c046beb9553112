package ftps_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// activeOn is a server option that turns active mode on.
func activeOn(c *ftps.Config) { c.ActiveMode = true }

// TestActiveModeOff: by default PORT and EPRT get a 502 whose text tells
// a FileZilla user (which falls back to active mode) what to do.
func TestActiveModeOff(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Login(t, s.ClientTLS())
	a := c.ListenActive("")
	const want = "Active mode (PORT/EPRT) is disabled on this server; use passive mode (PASV/EPSV)."
	for _, line := range []string{a.PORT(), a.EPRT(), "PORT", "EPRT |9|x|", "EPRT |2|::1|5000|"} {
		c.Send(line)
		if code, msg := c.Read(); code != 502 || msg != want {
			t.Errorf("%q: got %d %q, want 502 %q", line, code, msg, want)
		}
	}
	c.Cmd(425, "LIST") // the refused PORT set up nothing
	a.AssertNoConnection(200 * time.Millisecond)
}

// TestActiveTransfers: STOR, RETR and LIST through PORT and EPRT, over
// IPv4 and IPv6, at both TLS versions; every data connection resumes the
// control session (XferActive checks it).
func TestActiveTransfers(t *testing.T) {
	t.Parallel()
	for _, fam := range []struct{ name, listen, mode string }{
		{"PORT", "127.0.0.1:0", "PORT"},
		{"EPRT-IPv4", "127.0.0.1:0", "EPRT"},
		{"EPRT-IPv6", "[::1]:0", "EPRT"},
	} {
		for _, v := range versions {
			t.Run(fam.name+"/"+tls.VersionName(v), func(t *testing.T) {
				t.Parallel()
				if strings.HasPrefix(fam.listen, "[") {
					needIPv6(t)
				}
				s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) {
					c.ActiveMode = true
					c.Listen = fam.listen
				}})
				cfg := s.ClientTLS()
				cfg.MinVersion, cfg.MaxVersion = v, v
				c := s.Login(t, cfg)
				home := s.Home(user)
				data := testutil.Payload(1<<20+13, 60)

				c.XferActive(fam.mode, "STOR up.bin", data)
				testutil.AssertContent(t, filepath.Join(home, "up.bin"), data)
				if got := c.XferActive(fam.mode, "RETR up.bin", nil); !bytes.Equal(got, data) {
					t.Errorf("RETR: got %d bytes, want the %d uploaded", len(got), len(data))
				}
				if list := string(c.XferActive(fam.mode, "LIST", nil)); !strings.Contains(list, "up.bin") ||
					!strings.Contains(list, fmt.Sprint(len(data))) {
					t.Errorf("LIST = %q", list)
				}
				if fam.listen != "127.0.0.1:0" {
					return // PASV is IPv4 only
				}
				// PASV replaces a pending PORT, and PORT a pending PASV.
				c.Cmd(200, c.ListenActive("").EPRT())
				if got := c.Xfer("RETR up.bin", nil); !bytes.Equal(got, data) {
					t.Error("RETR over PASV after EPRT moved other bytes")
				}
				c.Pasv()
				if got := c.XferActive(fam.mode, "RETR up.bin", nil); !bytes.Equal(got, data) {
					t.Error("RETR over PORT after PASV moved other bytes")
				}
			})
		}
	}
}

func needIPv6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
}

// TestActiveBounceRefused: PORT/EPRT to another IP than the client's, or
// to a port below 1024, is refused with vsftpd's 500, and the server never
// connects there (RFC 2577).
func TestActiveBounceRefused(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Server: activeOn})
	testutil.WriteFile(t, s.Home(user), "f.txt", []byte("secret"))
	c := s.Login(t, s.ClientTLS())

	other := c.ListenActive("127.0.0.2") // the control peer is 127.0.0.1
	for _, line := range []string{other.PORT(), other.EPRT()} {
		if msg := c.Cmd(500, line); !strings.Contains(msg, "client's own address") {
			t.Errorf("%q: reply %q does not say why", line, msg)
		}
		c.Cmd(425, "RETR f.txt") // no data channel was set up
	}
	other.AssertNoConnection(300 * time.Millisecond)

	for _, line := range []string{
		"PORT 127,0,0,1,0,21",
		"PORT 127,0,0,1,3,255", // 1023
		"PORT 127,0,0,1,0,0",
		"EPRT |1|127.0.0.1|21|",
		"EPRT |1|127.0.0.1|1023|",
	} {
		if msg := c.Cmd(500, line); !strings.Contains(msg, "below 1024") {
			t.Errorf("%q: reply %q does not say why", line, msg)
		}
	}
	c.Cmd(425, "RETR f.txt")
	if n := s.Log.Count(`msg="active data address refused`); n != 7 {
		t.Errorf("%d refusals logged, want 7", n)
	}
}

// TestActiveSyntax: strict parsing; 501 for a malformed argument, 522 for
// a network protocol the control connection does not use (RFC 2428), 503
// after EPSV ALL.
func TestActiveSyntax(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Server: activeOn})
	c := s.Login(t, s.ClientTLS())
	run(t, c, []step{
		{"PORT", 501},
		{"PORT 127,0,0,1,4", 501},
		{"PORT 127,0,0,1,4,1,1", 501},
		{"PORT 127,0,0,1,4,256", 501},
		{"PORT 127,0,0,256,4,1", 501},
		{"PORT 127,0,0,-1,4,1", 501},
		{"PORT +127,0,0,1,4,1", 501},
		{"PORT 127,0,0,1,4,", 501},
		{"PORT 127, 0,0,1,4,1", 501},
		{"PORT a,b,c,d,e,f", 501},
		{"PORT 0x7f,0,0,1,4,1", 501},
		{"PORT 0127,0,0,1,4,1", 501},
		{"PORT 127.0.0.1,4,1", 501},
		{"EPRT", 501},
		{"EPRT |1|127.0.0.1|5000", 501},
		{"EPRT |1|127.0.0.1|5000|x", 501},
		{"EPRT |1|127.0.0.1||", 501},
		{"EPRT |1|127.0.0.1|0|", 501},
		{"EPRT |1|127.0.0.1|70000|", 501},
		{"EPRT |1|127.0.0.1|-5000|", 501},
		{"EPRT |1|127.0.0.1|50a0|", 501},
		{"EPRT |1|::1|5000|", 501},
		{"EPRT |1|localhost|5000|", 501},
		{"EPRT |1|127.0.0.01|5000|", 501},
		{"EPRT |2|127.0.0.1|5000|", 501},
		{"EPRT |x|127.0.0.1|5000|", 501},
		{"EPRT  1 127.0.0.1 5000 ", 501},
		{"EPRT 1|127.0.0.1|5000|", 501},
		{"EPRT |3|127.0.0.1|5000|", 522},
		{"EPRT |2|::1|5000|", 522},
		{"LIST", 425},
		{"EPSV ALL", 200},
		{"PORT 127,0,0,1,19,136", 503},
		{"EPRT |1|127.0.0.1|5000|", 503},
	})
	// A different delimiter is allowed (RFC 2428).
	c2 := s.Login(t, s.ClientTLS())
	c2.Cmd(200, "EPRT !1!127.0.0.1!5000!")
	c2.Cmd(200, "PORT 127,0,0,1,19,136")
}

// TestActiveNotResumed: an active data connection that does not resume
// the control session is refused like a passive one (425), and no byte of
// the file crosses it.
func TestActiveNotResumed(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{Server: activeOn})
			testutil.WriteFile(t, s.Home(user), "f.txt", []byte("secret data"))
			cfg := s.ClientTLS()
			cfg.MinVersion, cfg.MaxVersion = v, v
			c := s.Login(t, cfg)

			fresh := s.ClientTLS() // an empty session cache: a full handshake
			fresh.MinVersion, fresh.MaxVersion = v, v
			a := c.ListenActive("")
			c.Cmd(200, a.PORT())
			c.Send("RETR f.txt")
			c.Expect(150)
			dc, err := a.Accept(10*time.Second, fresh)
			if dc == nil {
				t.Fatalf("no active data connection: %v", err)
			}
			if err == nil {
				if n, _ := dc.Read(make([]byte, 64)); n > 0 {
					t.Errorf("the refused data connection carried %d bytes", n)
				}
			}
			if msg := c.Expect(425); !strings.Contains(msg, "not resumed") {
				t.Errorf("425 %q does not name the cause", msg)
			}
			s.Log.Wait(t, `msg="data connection refused: TLS session not resumed" .*active=127\.0\.0\.1:.* tls_resumption=required`, 1, 5*time.Second)
			// The session goes on: a resuming client still gets the file.
			if got := c.XferActive("PORT", "RETR f.txt", nil); string(got) != "secret data" {
				t.Errorf("RETR = %q", got)
			}
		})
	}
}

// TestActiveConnectFails: a client port nobody listens on ends the
// transfer with 425 "Can't open data connection.", and an upload leaves
// no file behind.
func TestActiveConnectFails(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Server: activeOn})
	c := s.Login(t, s.ClientTLS())
	a := c.ListenActive("")
	port := a.PORT()
	a.Close()
	c.Cmd(200, port)
	c.Cmd(150, "STOR never.bin")
	if msg := c.Expect(425); msg != "Can't open data connection." {
		t.Errorf("425 %q", msg)
	}
	if _, err := os.Stat(filepath.Join(s.Home(user), "never.bin")); err == nil {
		t.Error("a failed active STOR left a file")
	}
	// ABOR drops a pending PORT.
	c2 := s.Login(t, s.ClientTLS())
	c2.Cmd(200, c2.ListenActive("").PORT())
	c2.Cmd(225, "ABOR")
	c2.Cmd(425, "LIST")
}

// TestActiveAbortDuringHandshake: ABOR while the server waits for the TLS
// handshake on an active data connection (the client accepted nothing:
// the kernel completed the TCP connect) ends the transfer at once with 426
// then 226, well before the handshake timeout.
func TestActiveAbortDuringHandshake(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Server: activeOn})
	testutil.WriteFile(t, s.Home(user), "f.txt", []byte("data"))
	c := s.Login(t, s.ClientTLS())
	a := c.ListenActive("") // never accepted: the connection waits in the backlog
	c.Cmd(200, a.PORT())
	c.Cmd(150, "RETR f.txt")
	s.Log.Wait(t, `msg=command .* cmd=RETR`, 1, 5*time.Second)
	start := time.Now()
	c.Abort()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("ABOR took %v", d)
	}
	c.Cmd(200, "NOOP")
}

// TestActiveModeReload: active_mode changes with a reload for the sessions
// that start after it; a running session keeps the setting it began with,
// like every [server] setting.
func TestActiveModeReload(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	before := s.Login(t, s.ClientTLS())
	if err := s.FTPS().Reload(ftps.Config{Listen: "127.0.0.1:0", ActiveMode: true}); err != nil {
		t.Fatal(err)
	}
	after := s.Login(t, s.ClientTLS())
	after.Cmd(200, after.ListenActive("").PORT())
	before.Cmd(502, before.ListenActive("").PORT())

	if err := s.FTPS().Reload(ftps.Config{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	off := s.Login(t, s.ClientTLS())
	off.Cmd(502, off.ListenActive("").EPRT())
	after.Cmd(200, after.ListenActive("").EPRT())
}
