package test

import (
	"bytes"
	"crypto/tls"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// dialGo connects github.com/jlaffaye/ftp in explicit FTPS mode and logs
// in. cfg decides whether its data connections can resume: the library
// reuses cfg for them, so they resume only with a ClientSessionCache and
// an explicit ServerName (the cache key; the data port differs).
func dialGo(t *testing.T, s *ftpstest.Server, cfg *tls.Config, opts ...ftp.DialOption) *ftp.ServerConn {
	t.Helper()
	opts = append([]ftp.DialOption{
		ftp.DialWithExplicitTLS(cfg),
		ftp.DialWithTimeout(5 * time.Second),
		ftp.DialWithShutTimeout(20 * time.Second),
		ftp.DialWithContext(t.Context()),
	}, opts...)
	c, err := ftp.Dial(s.Addr, opts...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login(user, pass); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

func retrAll(t *testing.T, c *ftp.ServerConn, name string, offset uint64) []byte {
	t.Helper()
	r, err := c.RetrFrom(name, offset)
	if err != nil {
		t.Fatalf("RETR %s: %v", name, err)
	}
	got, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("RETR %s: %v", name, err)
	}
	return got
}

// TestGoClient runs every operation of github.com/jlaffaye/ftp (the
// library under rclone and many Go programs) at both TLS versions, through
// EPSV (its default) and PASV.
func TestGoClient(t *testing.T) {
	t.Parallel()
	type pasvMode struct {
		name string
		opt  ftp.DialOption
	}
	for _, v := range versions {
		for _, pm := range []pasvMode{{"EPSV", ftp.DialWithDisabledEPSV(false)}, {"PASV", ftp.DialWithDisabledEPSV(true)}} {
			t.Run(tls.VersionName(v)+"/"+pm.name, func(t *testing.T) {
				t.Parallel()
				s := ftpstest.NewServer(t, ftpstest.Options{})
				home := s.Home(user)
				cfg := s.ClientTLS()
				cfg.MinVersion, cfg.MaxVersion = v, v
				c := dialGo(t, s, cfg, pm.opt)

				big := testutil.Payload(3<<20+5, 10)
				small := testutil.Payload(4096, 11)

				// Upload a new file, then overwrite it.
				if err := c.Stor("up.bin", bytes.NewReader(small)); err != nil {
					t.Fatalf("STOR new: %v", err)
				}
				testutil.AssertContent(t, filepath.Join(home, "up.bin"), small)
				if err := c.Stor("up.bin", bytes.NewReader(big)); err != nil {
					t.Fatalf("STOR overwrite: %v", err)
				}
				testutil.AssertContent(t, filepath.Join(home, "up.bin"), big)
				if err := c.Stor("empty.bin", bytes.NewReader(nil)); err != nil {
					t.Fatalf("STOR empty: %v", err)
				}
				testutil.AssertContent(t, filepath.Join(home, "empty.bin"), nil)

				// Download, whole and from an offset.
				if got := retrAll(t, c, "up.bin", 0); testutil.Sum(got) != testutil.Sum(big) {
					t.Errorf("RETR: %d bytes sha256 %s, want %d bytes sha256 %s", len(got), testutil.Sum(got)[:16], len(big), testutil.Sum(big)[:16])
				}
				if got := retrAll(t, c, "up.bin", 1<<20); testutil.Sum(got) != testutil.Sum(big[1<<20:]) {
					t.Errorf("REST+RETR: %d bytes, want the last %d", len(got), len(big)-1<<20)
				}

				// Directories and the listing (MLSD, since FEAT has MLST).
				if err := c.MakeDir("dir"); err != nil {
					t.Fatalf("MKD: %v", err)
				}
				if fi, err := os.Stat(filepath.Join(home, "dir")); err != nil || !fi.IsDir() {
					t.Fatalf("MKD made no directory: %v", err)
				}
				mtime := time.Date(2024, 12, 31, 23, 59, 58, 0, time.UTC)
				os.Chtimes(filepath.Join(home, "up.bin"), mtime, mtime)
				entries, err := c.List("/")
				if err != nil {
					t.Fatalf("LIST/MLSD: %v", err)
				}
				got := make(map[string]*ftp.Entry)
				for _, e := range entries {
					got[e.Name] = e
				}
				if e := got["up.bin"]; e == nil || e.Type != ftp.EntryTypeFile || e.Size != uint64(len(big)) || !e.Time.Equal(mtime) {
					t.Errorf("listing entry up.bin = %+v, want a file of %d bytes modified %s", e, len(big), mtime)
				}
				if e := got["dir"]; e == nil || e.Type != ftp.EntryTypeFolder {
					t.Errorf("listing entry dir = %+v, want a folder", e)
				}
				if len(got) != 3 {
					t.Errorf("listing has %d entries, want 3 (up.bin, empty.bin, dir): %v", len(got), slices.Sorted(maps.Keys(got)))
				}
				names, err := c.NameList("/")
				if err != nil {
					t.Fatalf("NLST: %v", err)
				}
				slices.Sort(names)
				if !slices.Equal(names, []string{"dir", "empty.bin", "up.bin"}) {
					t.Errorf("NLST = %q", names)
				}

				// SIZE and MDTM.
				if n, err := c.FileSize("up.bin"); err != nil || n != int64(len(big)) {
					t.Errorf("SIZE = %d, %v; want %d", n, err, len(big))
				}
				if mt, err := c.GetTime("up.bin"); err != nil || !mt.Equal(mtime) {
					t.Errorf("MDTM = %s, %v; want %s", mt, err, mtime)
				}

				// Resume an interrupted upload (REST+STOR), then APPE.
				testutil.WriteFile(t, home, "dir/part.bin", big[:1<<20])
				if err := c.StorFrom("dir/part.bin", bytes.NewReader(big[1<<20:]), 1<<20); err != nil {
					t.Fatalf("REST+STOR: %v", err)
				}
				testutil.AssertContent(t, filepath.Join(home, "dir", "part.bin"), big)
				if err := c.Append("dir/part.bin", bytes.NewReader(small)); err != nil {
					t.Fatalf("APPE: %v", err)
				}
				testutil.AssertContent(t, filepath.Join(home, "dir", "part.bin"), append(slices.Clip(big), small...))
				if err := c.Append("dir/new-by-appe.bin", bytes.NewReader(small)); err != nil {
					t.Fatalf("APPE new: %v", err)
				}
				testutil.AssertContent(t, filepath.Join(home, "dir", "new-by-appe.bin"), small)

				// Navigation, rename, delete, remove.
				if err := c.ChangeDir("dir"); err != nil {
					t.Fatalf("CWD: %v", err)
				}
				if wd, err := c.CurrentDir(); err != nil || wd != "/dir" {
					t.Errorf("PWD = %q, %v", wd, err)
				}
				if err := c.Rename("/up.bin", "moved.bin"); err != nil {
					t.Fatalf("RNFR/RNTO: %v", err)
				}
				testutil.AssertMissing(t, filepath.Join(home, "up.bin"))
				testutil.AssertContent(t, filepath.Join(home, "dir", "moved.bin"), big)
				if err := c.ChangeDirToParent(); err != nil {
					t.Fatalf("CDUP: %v", err)
				}
				if err := c.RemoveDir("dir"); err == nil || !strings.Contains(err.Error(), "550") {
					t.Errorf("RMD of a non-empty dir: %v, want a 550", err)
				}
				for _, f := range []string{"dir/moved.bin", "dir/part.bin", "dir/new-by-appe.bin", "empty.bin"} {
					if err := c.Delete(f); err != nil {
						t.Fatalf("DELE %s: %v", f, err)
					}
				}
				if err := c.Delete("dir/moved.bin"); err == nil || !strings.Contains(err.Error(), "550") {
					t.Errorf("DELE of a missing file: %v, want a 550", err)
				}
				if err := c.RemoveDir("dir"); err != nil {
					t.Fatalf("RMD: %v", err)
				}
				testutil.AssertDirHolds(t, home) // empty at the end
				if err := c.Quit(); err != nil {
					t.Errorf("QUIT: %v", err)
				}
				if s.Log.Contains("TLS session not resumed") {
					t.Error("the server refused a data connection for not resuming")
				}
				assertCommands(t, s, pm.name, "MLSD", "NLST", "RETR", "REST", "STOR", "APPE", "SIZE", "MDTM", "RNFR", "RNTO", "DELE", "MKD", "RMD", "CWD", "CDUP", "PWD")
			})
		}
	}
}

// TestGoClientWithoutSessionCache: jlaffaye/ftp with a tls.Config that has
// no ClientSessionCache cannot resume on its data connections (a common
// client bug, jlaffaye/ftp#342), so in the default "required" mode every
// transfer gets 425, and the control connection stays usable.
func TestGoClientWithoutSessionCache(t *testing.T) {
	t.Parallel()
	eachVersion(t, func(t *testing.T, v uint16, s *ftpstest.Server) {
		testutil.WriteFile(t, s.Home(user), "f.txt", []byte("content"))
		cfg := &tls.Config{RootCAs: s.CAPool, ServerName: "localhost", MinVersion: v, MaxVersion: v}
		c := dialGo(t, s, cfg)

		_, err := c.List("/")
		if err == nil || !strings.Contains(err.Error(), "425") {
			t.Errorf("List without session cache: err = %v, want a 425", err)
		}
		r, err := c.Retr("f.txt")
		if err != nil {
			t.Fatalf("RETR: %v", err)
		}
		got, _ := io.ReadAll(r)
		if len(got) != 0 {
			t.Errorf("RETR leaked %q over an unresumed data connection", got)
		}
		err = r.Close()
		if err == nil || !strings.Contains(err.Error(), "425") || !strings.Contains(err.Error(), "TLS session of data connection not resumed") {
			t.Errorf("Retr without session cache: close err = %v, want 425 TLS session of data connection not resumed", err)
		}
		if err := c.NoOp(); err != nil {
			t.Errorf("NOOP after the refused transfers: %v", err)
		}
		if !s.Log.Contains("data connection refused: TLS session not resumed") {
			t.Error("the refusal is not logged")
		}
	})
}
