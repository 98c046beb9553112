package ftps_test

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// hugeSparse makes a file HASH cannot finish before the commands that
// follow it arrive: 64 GiB of zeros (tens of seconds of SHA-256), a hole
// on disk that costs no space. The tests stop their HASH early.
func hugeSparse(t *testing.T, dir, name string) int64 {
	t.Helper()
	const size = 64 << 30
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return size
}

// TestHashAlgorithms: every algorithm, selected with OPTS HASH, gives the
// standard library's digest of the bytes on disk, the byte range hashed
// (both ends included) and the path as the client wrote it.
func TestHashAlgorithms(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	home := s.Home(user)
	files := map[string][]byte{
		"one.bin":        testutil.Payload(1<<20+17, 1), // more than one read buffer
		"dir/two words":  []byte("hello, world\n"),
		"empty":          nil,
		"dir/sub/x.json": []byte(`{"a":1}`),
	}
	for name, data := range files {
		testutil.WriteFile(t, home, name, data)
	}
	algs := []struct {
		name string
		new  func() hash.Hash
	}{
		{"SHA-256", sha256.New},
		{"SHA-512", sha512.New},
		{"SHA-1", sha1.New},
		{"MD5", md5.New},
		{"CRC32", func() hash.Hash { return crc32.NewIEEE() }},
	}
	c := s.Login(t, s.ClientTLS())
	c.Cmd(250, "CWD /dir")
	// arg is what the client sends; file is the file it names.
	paths := []struct{ arg, file string }{
		{"/one.bin", "one.bin"},
		{"two words", "dir/two words"},
		{"../empty", "empty"},
		{"sub/x.json", "dir/sub/x.json"},
	}
	for _, a := range algs {
		if got := c.Cmd(200, "OPTS HASH "+strings.ToLower(a.name)); got != a.name {
			t.Errorf("OPTS HASH %s: %q", a.name, got)
		}
		for _, p := range paths {
			h := a.new()
			h.Write(files[p.file])
			end := max(len(files[p.file])-1, 0)
			want := fmt.Sprintf("%s 0-%d %s %s", a.name, end, hex.EncodeToString(h.Sum(nil)), p.arg)
			if got := c.Cmd(213, "HASH "+p.arg); got != want {
				t.Errorf("HASH %s with %s:\n got %q\nwant %q", p.arg, a.name, got, want)
			}
		}
	}
}

// TestHashSelection: FEAT lists every algorithm and marks the session's
// choice; OPTS HASH reports and changes it, refusing unknown names with
// the draft's 501 and leaving the choice as it was. The choice is per
// session.
func TestHashSelection(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	featLine := func(c *ftpstest.Conn) string {
		for _, l := range strings.Split(c.Cmd(211, "FEAT"), "\n") {
			if strings.HasPrefix(l, " HASH ") {
				return l
			}
		}
		t.Fatal("FEAT has no HASH line")
		return ""
	}
	if got, want := featLine(c), " HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32;"; got != want {
		t.Errorf("FEAT before login: %q, want %q", got, want)
	}
	c.Cmd(530, "HASH x")
	c.Login(s.ClientTLS(), user, pass)
	tests := []struct {
		line string
		code int
		text string
	}{
		{"OPTS HASH", 200, "SHA-256"},
		{"OPTS HASH sha-512", 200, "SHA-512"},
		{"OPTS HASH", 200, "SHA-512"},
		{"OPTS HASH CRC-37", 501, ""},
		{"OPTS HASH SHA256", 501, ""},
		{"OPTS HASH SHA-512 x", 501, ""},
		{"OPTS HASH", 200, "SHA-512"},
		{"OPTS HASH  MD5 ", 200, "MD5"},
		{"OPTS HASH Crc32", 200, "CRC32"},
	}
	for _, tt := range tests {
		c.Send(tt.line)
		code, text := c.Read()
		if code != tt.code || (tt.text != "" && text != tt.text) {
			t.Errorf("%q: %d %q, want %d %q", tt.line, code, text, tt.code, tt.text)
		}
	}
	if got, want := featLine(c), " HASH SHA-256;SHA-512;SHA-1;MD5;CRC32*;"; got != want {
		t.Errorf("FEAT after OPTS HASH CRC32: %q, want %q", got, want)
	}
	other := s.Login(t, s.ClientTLS())
	other.Cmd(200, "OPTS HASH")
	if got := other.Cmd(200, "OPTS HASH"); got != "SHA-256" {
		t.Errorf("another session's selection: %q, want the default SHA-256", got)
	}
	if !strings.Contains(c.Cmd(214, "HELP"), "HASH") {
		t.Error("HELP does not list HASH")
	}
}

// TestHashRefusals: what HASH answers when it cannot hash.
func TestHashRefusals(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{
		{Name: user, Password: pass},
		{Name: "lister", Password: "lister-secret", Perms: []string{"list"}},
	}})
	home := s.Home(user)
	testutil.WriteFile(t, home, "d/f", []byte("x"))
	outside := testutil.WriteFile(t, t.TempDir(), "secret", []byte("secret"))
	if err := os.Symlink(outside, filepath.Join(home, "link-out")); err != nil {
		t.Fatal(err)
	}
	c := s.Login(t, s.ClientTLS())
	run(t, c, []step{
		{"HASH", 501},
		{"HASH d", 553}, // a directory: the draft's 553, as ProFTPD answers
		{"HASH /", 553}, // the home
		{"HASH nope", 550},
		{"HASH ../../../../etc/passwd", 550}, // cleaned to /etc/passwd in the home
		{"HASH link-out", 550},               // the os.Root refuses the escape
		{"HASH " + strings.Repeat("a/", 2100), 553},
		{"RANG 0 9", 500}, // not implemented: partial hashes are refused as unknown
		{"HASH d/f", 213},
	})

	testutil.WriteFile(t, s.Home("lister"), "f", []byte("x"))
	l := s.Dial(t)
	l.Login(s.ClientTLS(), "lister", "lister-secret")
	run(t, l, []step{{"HASH f", 550}, {"OPTS HASH MD5", 200}, {"HASH f", 550}})
	s.Log.Wait(t, `msg="permission denied" .*need=read op=HASH`, 2, 5*time.Second)
}

// TestHashAbort: a HASH runs like a transfer: STAT shows it, NOOP is
// answered meanwhile, a second HASH (one at a time) and other commands get
// 503, and ABOR stops it long before the end of the file: 426 for the
// HASH, then 226 for the ABOR. The session goes on.
func TestHashAbort(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	size := hugeSparse(t, s.Home(user), "huge")
	testutil.WriteFile(t, s.Home(user), "small", []byte("small"))
	c := s.Login(t, s.ClientTLS())
	c.Send("HASH huge")
	if got := c.Cmd(211, "STAT"); !strings.Contains(got, "Transfer in progress: HASH /huge") {
		t.Errorf("STAT during HASH:\n%s", got)
	}
	run(t, c, []step{{"NOOP", 200}, {"HASH small", 503}, {"PWD", 503}})
	c.Send("ABOR")
	if code, text := c.Read(); code != 426 {
		t.Fatalf("HASH after ABOR: %d %q, want 426", code, text)
	}
	c.Expect(226)
	if n := hashedBytes(t, s, 5*time.Second); n >= size {
		t.Errorf("the aborted HASH read %d bytes, the whole file", n)
	}
	c.Cmd(213, "HASH small")
}

// TestHashDisconnect: a client that goes away during a HASH ends the
// session: the HASH is cancelled, and no goroutine of the server is left.
func TestHashDisconnect(t *testing.T) {
	// Not parallel: the goroutine count is of the whole test binary.
	baseline := serverGoroutines()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	size := hugeSparse(t, s.Home(user), "huge")
	c := s.Login(t, s.ClientTLS())
	c.Send("HASH huge")
	c.Cmd(200, "NOOP") // the HASH has started
	c.Close()
	if n := hashedBytes(t, s, 10*time.Second); n >= size {
		t.Errorf("the HASH read %d bytes after the disconnect, the whole file", n)
	}
	s.Log.Wait(t, `msg="session closed"`, 1, 5*time.Second)
	testutil.WaitFor(t, 10*time.Second, "the server's goroutines to end", func() bool { return serverGoroutines() <= baseline+serverIdleGoroutines })
}

// TestHashQuit: QUIT during a HASH cancels it (426) rather than waiting
// for the end of the file, then says goodbye.
func TestHashQuit(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	size := hugeSparse(t, s.Home(user), "huge")
	c := s.Login(t, s.ClientTLS())
	c.Send("HASH huge")
	c.Send("QUIT")
	c.Expect(426)
	c.Expect(221)
	if n := hashedBytes(t, s, 5*time.Second); n >= size {
		t.Errorf("the HASH read %d bytes after QUIT, the whole file", n)
	}
}

// TestHashShutdown: a server shutdown cancels a running HASH at once (426,
// then 421) instead of letting it run until shutdown_timeout.
func TestHashShutdown(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	size := hugeSparse(t, s.Home(user), "huge")
	c := s.Login(t, s.ClientTLS())
	c.Send("HASH huge")
	c.Cmd(200, "NOOP") // the HASH has started
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil: the HASH was not cancelled", err)
	}
	c.Expect(426)
	c.Expect(421)
	if n := hashedBytes(t, s, 5*time.Second); n >= size {
		t.Errorf("the HASH read %d bytes, the whole file", n)
	}
}

// serverIdleGoroutines is what a running ftpstest server holds without
// sessions: its accept loop.
const serverIdleGoroutines = 1

// TestHashDuringTransfer: HASH while a RETR runs is refused like any
// command but ABOR, STAT, NOOP and QUIT.
func TestHashDuringTransfer(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	testutil.WriteFile(t, s.Home(user), "big", testutil.Payload(8<<20, 2))
	c := s.Login(t, s.ClientTLS())
	addr := c.Pasv()
	c.Send("RETR big")
	dc := c.OpenData(addr) // reads the 150
	defer dc.Close()
	c.Cmd(503, "HASH big")
	c.Send("ABOR")
	if code, _ := c.Read(); code != 426 && code != 226 {
		t.Fatalf("RETR after ABOR: %d, want 426 (or 226 if it had ended)", code)
	}
	if code, _ := c.Read(); code != 226 {
		t.Fatalf("ABOR: %d, want 226", code)
	}
	c.Cmd(213, "HASH big")
}

// TestHashServerLimit: beyond server.max_hashes running at once, HASH
// answers 450 (transient); a slot is free again once a HASH has ended.
func TestHashServerLimit(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.MaxHashes = 1 }})
	hugeSparse(t, s.Home(user), "huge")
	testutil.WriteFile(t, s.Home(user), "small", []byte("small"))
	a := s.Login(t, s.ClientTLS())
	b := s.Login(t, s.ClientTLS())
	a.Send("HASH huge")
	a.Cmd(200, "NOOP") // its slot is taken before NOOP is read
	b.Cmd(450, "HASH small")
	a.Abort()
	b.Cmd(213, "HASH small")
	a.Cmd(213, "HASH small")
}

// hashedBytes waits for the log line of the aborted HASH of /huge and
// returns the bytes it had read.
func hashedBytes(t *testing.T, s *ftpstest.Server, timeout time.Duration) int64 {
	t.Helper()
	expr := `msg=transfer .*op="HASH /huge" code=426 bytes=(\d+)`
	s.Log.Wait(t, expr, 1, timeout)
	m := regexp.MustCompile(expr).FindStringSubmatch(s.Log.String())
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatalf("bytes in log line %q: %v", m[0], err)
	}
	return n
}
