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
	return runTool(c.t, c.dir, nil, c.bin, c.args(cmds...)...)
}

// args is the command line of run.
func (c *lftpClient) args(cmds ...string) []string {
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
	return []string{"-d", "-c", strings.Join(script, "; ")}
}

// fails runs lftp and fails the test unless lftp fails and the server
// answered code.
func (c *lftpClient) fails(code int, cmds ...string) {
	c.t.Helper()
	failsWith(c.t, c.s, code, "lftp "+strings.Join(cmds, "; "), func() error {
		_, _, err := c.run(cmds...)
		return err
	})
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
// TLS 1.3 and at TLS 1.2, on each backend.
func TestLftp(t *testing.T) {
	t.Parallel()
	for _, tc := range lftpVersions() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b backend) {
				h := b.start(t, ftpstest.Options{})
				lftpSession(t, h, newLftp(t, h.s, tc.priority))
				assertControlTLS(t, h.s, tc.version)
			})
		})
	}
}

// lftpSession exercises every operation the issue lists with lftp, on the
// home h: what the storage cannot do (put -c and reput, which send
// REST+STOR; a directory's rename on S3) must fail with a 502 and change
// nothing.
func lftpSession(t *testing.T, h *home, c *lftpClient) {
	s, home := h.s, h.dir
	dl := testutil.Payload(2<<20+99, 30)
	testutil.WriteFile(t, home, "dl.bin", dl)
	testutil.WriteFile(t, home, "keep.txt", []byte("keep\n"))

	// Listings: cls (MLSD when FEAT has MLST), ls (LIST), and nlist (NLST).
	out, _, err := c.run("cls -1", "ls", "nlist")
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	if strings.Count(out, "dl.bin\n") != 3 || strings.Count(out, "keep.txt\n") != 3 || !strings.Contains(out, fmt.Sprint(len(dl))) {
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
	testutil.WriteFile(t, c.dir, "resume.bin", up)
	for _, tc := range []struct{ name, cmd string }{
		{"resume.bin", "put -c resume.bin"},
		{"reput.bin", "reput resume.bin -o reput.bin"},
	} {
		part := up[:400000+len(tc.name)]
		testutil.WriteFile(t, home, tc.name, part)
		if h.resumeUploads {
			c.ok(tc.cmd)
			testutil.AssertContent(t, filepath.Join(home, tc.name), up)
		} else {
			c.fails(502, tc.cmd)
			testutil.AssertContent(t, filepath.Join(home, tc.name), part)
		}
	}

	// Rename, delete, make and remove a directory (renamed where the
	// storage can), upload into it.
	testutil.WriteFile(t, c.dir, "keep.txt", []byte("keep\n"))
	c.ok("mv up.bin renamed.bin", "mkdir newdir")
	testutil.AssertMissing(t, filepath.Join(home, "up.bin"))
	testutil.AssertContent(t, filepath.Join(home, "renamed.bin"), up)
	if fi, err := os.Stat(filepath.Join(home, "newdir")); err != nil || !fi.IsDir() {
		t.Fatalf("mkdir made no directory: %v", err)
	}
	dir := "newdir"
	if h.renameDirs {
		c.ok("mv newdir moved")
		dir = "moved"
	} else {
		c.fails(502, "mv newdir moved")
	}
	testutil.AssertMissing(t, filepath.Join(home, map[string]string{"newdir": "moved", "moved": "newdir"}[dir]))
	c.ok("put keep.txt -o " + dir + "/k.txt")
	c.fails(550, "rmdir "+dir)
	testutil.AssertContent(t, filepath.Join(home, dir, "k.txt"), []byte("keep\n"))
	c.ok("rm renamed.bin "+dir+"/k.txt", "rmdir "+dir)
	testutil.AssertMissing(t, filepath.Join(home, "renamed.bin"))
	testutil.AssertMissing(t, filepath.Join(home, dir))
	c.fails(550, "rm renamed.bin")
	h.assertClean(t, "dl.bin", "keep.txt", "resume.bin", "reput.bin")

	assertCommands(t, s, "MLSD", "LIST", "NLST", "RETR", "REST", "STOR", "RNFR", "RNTO", "DELE", "MKD", "RMD")
	if n := s.Log.Count(logRefusedTLS); n != 0 {
		t.Errorf("the server refused %d lftp data connections for not resuming", n)
	}
	if n := s.Log.Count(`msg="upload ended without TLS close_notify`); n != 0 {
		t.Errorf("%d lftp uploads ended without close_notify", n)
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
