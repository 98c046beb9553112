package test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestS3Home drives an S3 home with github.com/jlaffaye/ftp: upload,
// list, resumed download, rename, delete, directories, and the refusals.
func TestS3Home(t *testing.T) {
	s, gw := newS3Server(t)
	c := dialGo(t, s, s.ClientTLS())

	data := make([]byte, 12<<20+777) // more than a part: a multipart upload
	rand.Read(data)
	if err := c.Stor("big.bin", bytes.NewReader(data)); err != nil {
		t.Fatalf("STOR: %v", err)
	}
	if err := c.Stor("small.txt", strings.NewReader("hello")); err != nil {
		t.Fatalf("STOR small: %v", err)
	}
	// The objects are where the home says, and nowhere else.
	if b, err := os.ReadFile(filepath.Join(gw.Dir, gw.Bucket, "alice", "small.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("object alice/small.txt = %q, %v", b, err)
	}
	if got := retrAll(t, c, "big.bin", 0); !bytes.Equal(got, data) {
		t.Fatalf("RETR: %d bytes, differ from the %d sent", len(got), len(data))
	}
	if got := retrAll(t, c, "big.bin", 5<<20+3); !bytes.Equal(got, data[5<<20+3:]) {
		t.Fatal("REST+RETR: the resumed download differs")
	}
	if n, err := c.FileSize("big.bin"); err != nil || n != int64(len(data)) {
		t.Errorf("SIZE = %d, %v", n, err)
	}

	if err := c.MakeDir("dir"); err != nil {
		t.Fatalf("MKD: %v", err)
	}
	if err := c.Rename("small.txt", "dir/moved.txt"); err != nil {
		t.Fatalf("RNFR/RNTO: %v", err)
	}
	entries, err := c.List("/")
	if err != nil {
		t.Fatalf("MLSD: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	if got := strings.Join(names, " "); got != "big.bin dir" {
		t.Errorf("listing = %q; want %q", got, "big.bin dir")
	}
	if n, err := c.NameList("/dir"); err != nil || !slices.Equal(n, []string{"moved.txt"}) && !slices.Equal(n, []string{"/dir/moved.txt"}) {
		t.Errorf("NLST /dir = %v, %v", n, err)
	}

	// What objects cannot do: a 5xx that says why, and nothing changes.
	var pe *textproto.Error
	if err := c.Append("big.bin", strings.NewReader("more")); !errors.As(err, &pe) || pe.Code != 502 || !strings.Contains(pe.Msg, "append") {
		t.Errorf("APPE = %v; want a 502 that says why", err)
	}
	if !s.Log.Contains(`code=502 reason="Object storage cannot append to a file (APPE); upload it whole."`) {
		t.Error("the refused APPE is not in the log at the default level")
	}
	if err := c.Rename("dir", "dir2"); !errors.As(err, &pe) || pe.Code != 502 {
		t.Errorf("RNTO of a directory = %v; want 502", err)
	}
	raw := s.Login(t, s.ClientTLS())
	// MFMT: refused by default (mfmt = "ignore" is for rclone, TestRclone).
	// A directory (a prefix) has no time: MDTM says so, MLSD leaves it out.
	for _, tc := range []struct {
		line string
		code int
		want string
	}{
		{"MFMT 20200101000000 big.bin", 502, "Object storage sets modification times itself (MFMT)."},
		{"MDTM dir", 550, "No modification time for this entry."},
		{"MLST dir", 250, "type=dir;perm=elcmdp; /dir"},
		// Into a missing directory: refused as on disk (a key there would
		// make the directory appear).
		{"MKD nosuch/sub", 550, "No such file or directory."},
		{"RNFR big.bin", 350, "Ready for RNTO."},
		{"RNTO nosuch/x.bin", 550, "No such file or directory."},
		{"HASH big.bin", 213, fmt.Sprintf("SHA-256 0-%d %x big.bin", len(data)-1, sha256.Sum256(data))},
	} {
		raw.Send(tc.line)
		if code, msg := raw.Read(); code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s = %d %q; want %d %q", tc.line, code, msg, tc.code, tc.want)
		}
	}
	if err := c.RemoveDir("dir"); !errors.As(err, &pe) || pe.Code != 550 {
		t.Errorf("RMD of a non-empty directory = %v; want 550", err)
	}
	if got := retrAll(t, c, "big.bin", 0); !bytes.Equal(got, data) {
		t.Fatal("a refused APPE changed the object")
	}
	// The jail: the server's paths cannot leave the home.
	if err := os.WriteFile(filepath.Join(gw.Dir, gw.Bucket, "outside.txt"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retr("../outside.txt"); err == nil {
		t.Error("RETR ../outside.txt succeeded")
	}

	if err := c.Delete("dir/moved.txt"); err != nil {
		t.Fatalf("DELE: %v", err)
	}
	if err := c.RemoveDir("dir"); err != nil {
		t.Fatalf("RMD: %v", err)
	}
	if err := c.Delete("big.bin"); err != nil {
		t.Fatalf("DELE: %v", err)
	}
	if entries, err := c.List("/"); err != nil || len(entries) != 0 {
		t.Errorf("listing after the deletes = %v, %v", entries, err)
	}
}

// TestS3Unreachable: with the S3 server down, a command on an S3 home is
// answered 451 and logged, and the session goes on.
func TestS3Unreachable(t *testing.T) {
	s, gw := newS3Server(t)
	c := dialGo(t, s, s.ClientTLS())
	if err := c.Stor("a.txt", strings.NewReader("a")); err != nil {
		t.Fatalf("STOR: %v", err)
	}
	gw.Stop()
	var pe *textproto.Error
	if _, err := c.FileSize("a.txt"); !errors.As(err, &pe) || pe.Code != 451 {
		t.Errorf("SIZE with S3 down = %v; want 451", err)
	}
	// The home's listing too, before any data connection.
	if _, err := c.List("/"); !errors.As(err, &pe) || pe.Code != 451 {
		t.Errorf("MLSD with S3 down = %v; want 451", err)
	}
	if !strings.Contains(s.Log.String(), "object storage error") {
		t.Errorf("no log line for the S3 failure:\n%s", s.Log.String())
	}
	if _, err := c.CurrentDir(); err != nil {
		t.Errorf("PWD after the failure: %v", err)
	}
}

// TestS3TwoNodes: two servers on one bucket serve the same files.
func TestS3TwoNodes(t *testing.T) {
	gw := testutil.StartVersityGW(t, "bucket")
	a, b := newS3ServerOn(t, gw), newS3ServerOn(t, gw)
	ca, cb := dialGo(t, a, a.ClientTLS()), dialGo(t, b, b.ClientTLS())
	data := bytes.Repeat([]byte("two nodes "), 1<<20)
	if err := ca.Stor("shared.bin", bytes.NewReader(data)); err != nil {
		t.Fatalf("STOR through node a: %v", err)
	}
	if got := retrAll(t, cb, "shared.bin", 0); !bytes.Equal(got, data) {
		t.Fatalf("RETR through node b: %d bytes, differ", len(got))
	}
	if err := cb.Delete("shared.bin"); err != nil {
		t.Fatalf("DELE through node b: %v", err)
	}
	if _, err := ca.FileSize("shared.bin"); err == nil {
		t.Error("node a still sees the file node b deleted")
	}
}
