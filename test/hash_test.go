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

// TestHashVerifiesUpload is the verified transfer HASH is for: the Go
// client (github.com/jlaffaye/ftp) uploads a file, then HASH (sent raw:
// the library has no HASH method) must give, for each algorithm, what the
// coreutils programs compute on the local copy.
func TestHashVerifiesUpload(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	dir := t.TempDir()
	data := testutil.Payload(3<<20+11, 7)
	local := testutil.WriteFile(t, dir, "local.bin", data)

	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gc := dialGo(t, s, s.ClientTLS())
	if err := gc.MakeDir("up"); err != nil {
		t.Fatal(err)
	}
	if err := gc.Stor("up/loaded file.bin", f); err != nil {
		t.Fatalf("STOR: %v", err)
	}
	testutil.AssertContent(t, filepath.Join(s.Home(user), "up", "loaded file.bin"), data)

	c := s.Login(t, s.ClientTLS())
	for _, tt := range []struct{ alg, prog string }{
		{"SHA-256", "sha256sum"},
		{"SHA-512", "sha512sum"},
		{"SHA-1", "sha1sum"},
		{"MD5", "md5sum"},
	} {
		prog := needTool(t, tt.prog)
		out, _, err := runTool(t, dir, nil, prog, "local.bin")
		if err != nil {
			t.Fatalf("%s: %v", tt.prog, err)
		}
		sum, _, _ := strings.Cut(out, " ")
		c.Cmd(200, "OPTS HASH "+tt.alg)
		want := fmt.Sprintf("%s 0-%d %s /up/loaded file.bin", tt.alg, len(data)-1, sum)
		if got := c.Cmd(213, "HASH /up/loaded file.bin"); got != want {
			t.Errorf("HASH with %s:\n got %q\nwant %q (%s)", tt.alg, got, want, tt.prog)
		}
	}
	assertCommands(t, s, "STOR", "HASH")
}

// TestHashCurl: curl, which has no HASH command of its own, can ask for
// one with -Q (the README's example); its upload verifies against
// sha256sum on the local file.
func TestHashCurl(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := newCurl(t, s)
	c.local("f.bin", testutil.Payload(1<<20+3, 9))
	c.ok("-T", "f.bin", c.url("/f.bin"))
	out, _, err := runTool(t, c.dir, nil, needTool(t, "sha256sum"), "f.bin")
	if err != nil {
		t.Fatal(err)
	}
	sum, _, _ := strings.Cut(out, " ")
	_, verbose, err := c.run("-Q", "OPTS HASH SHA-256", "-Q", "HASH /f.bin", "--list-only", c.url("/"))
	if err != nil {
		t.Fatalf("curl -Q HASH: %v", err)
	}
	want := fmt.Sprintf("< 213 SHA-256 0-%d %s /f.bin", 1<<20+2, sum)
	if !strings.Contains(verbose, want) {
		t.Errorf("curl's dialogue lacks %q:\n%s", want, verbose)
	}
}
