package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// lftpClient runs lftp (GnuTLS, like FileZilla) against one test server.
type lftpClient struct {
	t        *testing.T
	bin      string
	s        *ftpstest.Server
	dir      string // working directory (and HOME) for local files
	priority string // ssl:priority, "" for GnuTLS's default
	implicit bool   // ftps:// to the implicit listener
}

func newLftp(t *testing.T, s *ftpstest.Server, priority string) *lftpClient {
	return &lftpClient{t: t, bin: needTool(t, "lftp"), s: s, dir: t.TempDir(), priority: priority}
}

// run runs the lftp commands after the settings that force FTPS with a
// verified certificate and protected data, and the open. cmd:fail-exit
// makes a failing command end lftp with a non-zero status.
func (c *lftpClient) run(cmds ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	script := []string{
		"set cmd:fail-exit yes",
		"set ftp:ssl-force true",
		"set ftp:ssl-protect-data true",
		"set ftp:ssl-protect-list true",
		"set ssl:ca-file " + c.s.CAFile,
		"set ssl:verify-certificate yes",
		"set ssl:check-hostname yes",
		"set net:max-retries 1",
		"set net:timeout 10",
		"set net:reconnect-interval-base 1",
		"set ftp:passive-mode true",
		"set xfer:clobber on",
		"set xfer:log no",
	}
	if c.priority != "" {
		script = append(script, fmt.Sprintf("set ssl:priority %q", c.priority))
	}
	if c.implicit {
		script = append(script, fmt.Sprintf("open -u %s,%s ftps://%s", user, pass, c.s.ImplicitAddr))
	} else {
		script = append(script, fmt.Sprintf("open -u %s,%s ftp://127.0.0.1:%d", user, pass, c.s.Port()))
	}
	script = append(script, cmds...)
	return runTool(c.t, c.dir, nil, c.bin, "-d", "-c", strings.Join(script, "; "))
}

func (c *lftpClient) ok(cmds ...string) string {
	c.t.Helper()
	out, _, err := c.run(cmds...)
	if err != nil {
		c.t.Fatalf("lftp %s: %v", strings.Join(cmds, "; "), err)
	}
	return out
}

// lftpVersions are the GnuTLS priorities that make lftp speak TLS 1.3
// (its default) and TLS 1.2, with the version the server then logs.
func lftpVersions() []struct{ name, priority, version string } {
	return []struct{ name, priority, version string }{
		{"default", "", "TLS 1.3"},
		{"TLS1.2", "NORMAL:-VERS-TLS1.3", "TLS 1.2"},
	}
}

// TestLftp: lftp resumes the control session on every data connection
// (GnuTLS, like FileZilla), so the default "required" mode serves it at
// TLS 1.3 and at TLS 1.2.
func TestLftp(t *testing.T) {
	t.Parallel()
	for _, tc := range lftpVersions() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{})
			home := s.Home(user)
			c := newLftp(t, s, tc.priority)
			dl := testutil.Payload(2<<20+99, 30)
			testutil.WriteFile(t, home, "dl.bin", dl)
			testutil.WriteFile(t, home, "keep.txt", []byte("keep\n"))

			// Listings: cls (MLSD when FEAT has MLST) and ls (LIST).
			out, _, err := c.run("cls -1", "ls")
			if err != nil {
				t.Fatalf("listing: %v", err)
			}
			if !strings.Contains(out, "dl.bin\n") || !strings.Contains(out, "keep.txt\n") || !strings.Contains(out, fmt.Sprint(len(dl))) {
				t.Errorf("listing output lacks the files or the size:\n%s", out)
			}

			// Download, and resume a partial download (REST+RETR).
			c.ok("get dl.bin -o got.bin")
			testutil.AssertContent(t, filepath.Join(c.dir, "got.bin"), dl)
			testutil.WriteFile(t, c.dir, "part.bin", dl[:1<<20])
			c.ok("get -c dl.bin -o part.bin")
			testutil.AssertContent(t, filepath.Join(c.dir, "part.bin"), dl)

			// Upload a new file and overwrite it.
			up := testutil.Payload(1<<20+11, 31)
			testutil.WriteFile(t, c.dir, "up.bin", up[:5000])
			c.ok("put up.bin")
			testutil.AssertContent(t, filepath.Join(home, "up.bin"), up[:5000])
			testutil.WriteFile(t, c.dir, "up.bin", up)
			c.ok("put up.bin")
			testutil.AssertContent(t, filepath.Join(home, "up.bin"), up)

			// Resume an interrupted upload: put -c, and reput.
			testutil.WriteFile(t, home, "resume.bin", up[:400000])
			testutil.WriteFile(t, c.dir, "resume.bin", up)
			c.ok("put -c resume.bin")
			testutil.AssertContent(t, filepath.Join(home, "resume.bin"), up)
			testutil.WriteFile(t, home, "reput.bin", up[:12345])
			c.ok("reput resume.bin -o reput.bin")
			testutil.AssertContent(t, filepath.Join(home, "reput.bin"), up)

			// Rename, delete, make and remove a directory, upload into it.
			testutil.WriteFile(t, c.dir, "keep.txt", []byte("keep\n"))
			c.ok("mv up.bin renamed.bin", "mkdir newdir", "put keep.txt -o newdir/k.txt")
			testutil.AssertMissing(t, filepath.Join(home, "up.bin"))
			testutil.AssertContent(t, filepath.Join(home, "renamed.bin"), up)
			if fi, err := os.Stat(filepath.Join(home, "newdir")); err != nil || !fi.IsDir() {
				t.Fatalf("mkdir made no directory: %v", err)
			}
			if _, _, err := c.run("rmdir newdir"); err == nil {
				t.Error("rmdir of a non-empty directory succeeded")
			}
			c.ok("rm renamed.bin newdir/k.txt", "rmdir newdir")
			testutil.AssertMissing(t, filepath.Join(home, "renamed.bin"))
			testutil.AssertMissing(t, filepath.Join(home, "newdir"))
			if _, _, err := c.run("rm renamed.bin"); err == nil {
				t.Error("rm of a missing file succeeded")
			}

			assertControlTLS(t, s, tc.version)
			assertCommands(t, s, "MLSD", "LIST", "RETR", "REST", "STOR", "RNFR", "RNTO", "DELE", "MKD", "RMD")
			if n := s.Log.Count(logRefusedTLS); n != 0 {
				t.Errorf("the server refused %d lftp data connections for not resuming", n)
			}
			if n := s.Log.Count(`msg="upload ended without TLS close_notify`); n != 0 {
				t.Errorf("%d lftp uploads ended without close_notify", n)
			}
		})
	}
}

// TestLftpImplicit: lftp's ftps:// is implicit FTPS (TLS from the first
// byte); listing, upload and download work, and data connections resume.
func TestLftpImplicit(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Implicit: true})
	c := newLftp(t, s, "")
	c.implicit = true
	data := testutil.Payload(200<<10, 9)
	testutil.WriteFile(t, c.dir, "up.bin", data)
	out := c.ok("put up.bin", "cls -1", "get up.bin -o down.bin")
	if !strings.Contains(out, "up.bin") {
		t.Errorf("listing lacks up.bin: %q", out)
	}
	testutil.AssertContent(t, filepath.Join(s.Home(user), "up.bin"), data)
	testutil.AssertContent(t, filepath.Join(c.dir, "down.bin"), data)
	if !s.Log.Contains("implicit_tls=true") || s.Log.Contains("not resumed") {
		t.Errorf("expected an implicit session with resumed data connections:\n%s", s.Log.String())
	}
}
