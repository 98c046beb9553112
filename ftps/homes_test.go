package ftps_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/test/ftpstest"
)

// openDescriptors counts this process's file descriptors open on dir (the
// in-process server's roots), read from /proc/self/fd.
func openDescriptors(t *testing.T, dir string) int {
	t.Helper()
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == dir {
			n++
		}
	}
	return n
}

// wantDescriptors waits (a session closes its storage after its QUIT
// reply) until dir has want descriptors open, at most 10 s.
func wantDescriptors(t *testing.T, dir string, want int, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := openDescriptors(t, dir)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d descriptors open on %s, want %d", when, got, dir, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSharedHome: the sessions of one user share one descriptor of their
// home (its os.Root), closed with the last of them. A reload that gives the
// user another home gives new sessions the new one, while older sessions
// keep theirs until they end; a home moved away and made anew is opened
// anew for new sessions.
func TestSharedHome(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	u := ftpstest.DefaultUser
	home := s.Home(u.Name)
	write := func(dir, name string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(home, "old.txt")
	wantDescriptors(t, home, 0, "before any login")

	a := s.Login(t, s.ClientTLS())
	b := s.Login(t, s.ClientTLS())
	wantDescriptors(t, home, 1, "two sessions of one user")
	b.Cmd(213, "SIZE old.txt")
	b.Cmd(221, "QUIT")
	wantDescriptors(t, home, 1, "one of the two gone")
	a.Cmd(213, "SIZE old.txt")
	a.Cmd(221, "QUIT")
	wantDescriptors(t, home, 0, "both gone")

	// A reload moves the home.
	before := s.Login(t, s.ClientTLS())
	moved := filepath.Join(s.Root, "moved")
	write(moved, "new.txt")
	p, err := s.Auth().PrepareReload(auth.Config{FailureDelay: time.Millisecond},
		[]auth.UserConfig{{Name: u.Name, PasswordHash: ftpstest.CheapHash(u.Password), Home: moved, Permissions: []string{"all"}}})
	if err != nil {
		t.Fatal(err)
	}
	p.Apply()
	after := s.Login(t, s.ClientTLS())
	after2 := s.Login(t, s.ClientTLS())
	after.Cmd(213, "SIZE new.txt")
	after2.Cmd(550, "SIZE old.txt")
	before.Cmd(213, "SIZE old.txt")
	before.Cmd(550, "SIZE new.txt")
	wantDescriptors(t, home, 1, "the session from before the reload")
	wantDescriptors(t, moved, 1, "two sessions after the reload")
	before.Cmd(221, "QUIT")
	wantDescriptors(t, home, 0, "the session from before the reload gone")
	wantDescriptors(t, moved, 1, "the sessions after the reload")

	// The home is moved aside and made anew under the same name.
	aside := filepath.Join(s.Root, "aside")
	if err := os.Rename(moved, aside); err != nil {
		t.Fatal(err)
	}
	write(moved, "fresh.txt")
	fresh := s.Login(t, s.ClientTLS())
	fresh.Cmd(213, "SIZE fresh.txt")
	after.Cmd(213, "SIZE new.txt") // still the directory it logged in to
	wantDescriptors(t, aside, 1, "the older sessions, home moved aside")
	wantDescriptors(t, moved, 1, "the session in the new directory")

	// A home that is gone fails the login, as before.
	if err := os.Rename(moved, filepath.Join(s.Root, "gone")); err != nil {
		t.Fatal(err)
	}
	c := s.DialTLS(t)
	c.Cmd(331, "USER "+u.Name)
	if msg := c.Cmd(530, "PASS "+u.Password); !strings.Contains(msg, "Home directory not available") {
		t.Errorf("login into a missing home: %q", msg)
	}
	after.Cmd(213, "SIZE new.txt")
}
