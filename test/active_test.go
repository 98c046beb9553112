package test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// Active mode (PORT/EPRT) with real clients. The server connects to the
// client and stays the TLS server; the client must resume its control
// session on the connection it accepted, as in passive mode.

func activeServer(t *testing.T) *ftpstest.Server {
	t.Helper()
	return ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.ActiveMode = true }})
}

// assertActiveOnly checks that client's session ran at TLS version and
// used active mode only, and that the server refused none of its data
// connections for want of resumption.
func assertActiveOnly(t *testing.T, s *ftpstest.Server, client, version string) {
	t.Helper()
	assertControlTLS(t, s, version)
	if s.Log.Contains("TLS session not resumed") {
		t.Errorf("the server refused an active %s data connection at %s", client, version)
	}
	if s.Log.Contains("cmd=PASV") || s.Log.Contains("cmd=EPSV") {
		t.Errorf("%s used passive mode", client)
	}
}

// curlActiveBroken reports a curl that never starts TLS on an active data
// connection: 7.87.0 to 7.88.x lost the TLS filter there (curl issue
// #10666, fixed in 8.0.0). Debian 12 ships 7.88.1.
func curlActiveBroken(t *testing.T, bin string) bool {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("curl --version: %v", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(string(out), "curl %d.%d.", &major, &minor); err != nil {
		t.Fatalf("curl --version %q: %v", out, err)
	}
	return major == 7 && minor >= 87
}

// TestCurlActive: curl -P (OpenSSL), with EPRT (its first choice) and with
// PORT. From 8.0 on, curl resumes the control session on active data
// connections at TLS 1.3 and cannot at TLS 1.2 (no tickets, see
// TestCurlTLS12), so the default "required" serves the one and refuses
// the other. curl 7.87-7.88 accepts the server's connection but never
// starts TLS on it: the server's data handshake times out, the command
// gets 425, and nothing crosses in clear.
func TestCurlActive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		data []string
		verb string
		vers []string
	}{
		{"EPRT/TLS1.3", []string{"-P", "127.0.0.1"}, "EPRT", []string{"--tlsv1.3"}},
		{"PORT/TLS1.3", []string{"-P", "127.0.0.1", "--disable-eprt"}, "PORT", []string{"--tlsv1.3"}},
		{"EPRT/TLS1.2", []string{"-P", "127.0.0.1"}, "EPRT", []string{"--tlsv1.2", "--tls-max", "1.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{
				Server:  func(c *ftps.Config) { c.ActiveMode = true },
				Passive: func(c *passive.Config) { c.HandshakeTimeout = 2 * time.Second },
			})
			c := newCurl(t, s, tc.vers...)
			c.data = tc.data
			home := s.Home(user)
			dl := testutil.Payload(1<<20+5, 70)
			testutil.WriteFile(t, home, "dl.bin", dl)

			if curlActiveBroken(t, c.bin) || tc.name == "EPRT/TLS1.2" {
				stdout, _, err := c.run("-o", "-", c.url("dl.bin"))
				if err == nil {
					t.Error("curl got an active download it cannot secure")
				}
				if stdout != "" {
					t.Errorf("a refused data connection delivered %d bytes", len(stdout))
				}
				if curlActiveBroken(t, c.bin) {
					t.Logf("curl 7.87-7.88 starts no TLS on active data connections (curl #10666): checked the refusal only")
					s.Log.Wait(t, `msg="data TLS handshake failed" .*active=127\.0\.0\.1:`, 1, 5*time.Second)
				} else {
					s.Log.Wait(t, logRefusedTLS+"required", 1, 5*time.Second)
				}
				// 425, or 426 when curl, seeing its data connection
				// closed, quits before the reply is written.
				s.Log.Wait(t, `msg=transfer .* op="RETR /dl.bin" code=42[56] bytes=0 `, 1, 5*time.Second)
				assertCommands(t, s, tc.verb, "RETR")
				return
			}

			if list := c.ok(c.url("/")); !strings.Contains(list, "dl.bin") || !strings.Contains(list, fmt.Sprint(len(dl))) {
				t.Errorf("LIST = %q", list)
			}
			c.ok("-o", "dl.bin", c.url("dl.bin"))
			testutil.AssertContent(t, filepath.Join(c.dir, "dl.bin"), dl)
			up := testutil.Payload(700001, 71)
			c.ok("-T", c.local("up.bin", up), c.url("up.bin"))
			testutil.AssertContent(t, filepath.Join(home, "up.bin"), up)

			assertCommands(t, s, tc.verb, "LIST", "RETR", "STOR")
			assertActiveOnly(t, s, "curl", "TLS 1.3")
		})
	}
}

// TestLftpActive: lftp with ftp:passive-mode off (GnuTLS) resumes the
// control session on active data connections, at TLS 1.3 and 1.2.
func TestLftpActive(t *testing.T) {
	t.Parallel()
	for _, tc := range lftpVersions() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := activeServer(t)
			home := s.Home(user)
			c := newLftp(t, s, tc.priority)
			dl := testutil.Payload(1<<20+77, 72)
			testutil.WriteFile(t, home, "dl.bin", dl)
			up := testutil.Payload(500003, 73)
			testutil.WriteFile(t, c.dir, "up.bin", up)

			out := c.ok("set ftp:passive-mode off", "ls", "get dl.bin -o got.bin", "put up.bin")
			if !strings.Contains(out, "dl.bin") || !strings.Contains(out, fmt.Sprint(len(dl))) {
				t.Errorf("ls output lacks dl.bin or its size:\n%s", out)
			}
			testutil.AssertContent(t, filepath.Join(c.dir, "got.bin"), dl)
			testutil.AssertContent(t, filepath.Join(home, "up.bin"), up)

			assertCommands(t, s, "PORT", "LIST", "RETR", "STOR")
			assertActiveOnly(t, s, "lftp", tc.version)
		})
	}
}

// TestLftpActiveOff: with active mode off (the default), lftp in active
// mode gets the 502 and, as FileZilla does the other way round, switches
// to passive mode and retries: the download succeeds over PASV/EPSV.
func TestLftpActiveOff(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	dl := testutil.Payload(100000, 74)
	testutil.WriteFile(t, s.Home(user), "dl.bin", dl)
	c := newLftp(t, s, "")
	c.ok("set ftp:passive-mode off", "set net:max-retries 3", "get dl.bin -o got.bin")
	testutil.AssertContent(t, filepath.Join(c.dir, "got.bin"), dl)
	assertCommands(t, s, "PORT")
	if s.Log.Count(`msg=reply .* code=502$`) == 0 {
		t.Error("PORT was not answered 502")
	}
	if s.Log.Count(`cmd=(PASV|EPSV)( |$)`) == 0 {
		t.Error("lftp did not fall back to passive mode")
	}
}
