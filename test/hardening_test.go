package test

// Regression tests for the findings of the attack review (issue 6) that
// live in the control layer: truncated uploads, pre-login slot
// exhaustion, listing injection, Telnet IAC IAC, STOU races and temporary
// files left behind by a directory swapped for a symlink.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestTruncatedUploadNotReportedComplete: an in-place upload (STOR of a new
// file, APPE, REST+STOR) whose data stream ends with a TCP FIN but no TLS
// close_notify, which an attacker who injects a FIN can cause, is answered
// 426 with the number of bytes kept, never 226. The bytes that arrived are
// kept so that the client can resume, and a resumed upload completes the
// file.
func TestTruncatedUploadNotReportedComplete(t *testing.T) {
	t.Parallel()
	full := testutil.Payload(600000, 60)
	const cut = 250000 // what arrives before the forged FIN
	type variant struct {
		name string
		// before is the file on disk before the upload (nil: none).
		before []byte
		// cmds is the upload: "REST n" (if any) then the store command.
		cmds []string
		// sent is what the client sends before the FIN.
		sent []byte
		// kept is the file after the truncated upload.
		kept []byte
		// resume completes the upload after the 426.
		resume func(c *ftpstest.Conn)
	}
	variants := []variant{
		{
			name: "STOR-new-file", cmds: []string{"STOR f.bin"}, sent: full[:cut], kept: full[:cut],
			resume: func(c *ftpstest.Conn) {
				c.Cmd(350, fmt.Sprintf("REST %d", cut))
				c.Xfer("STOR f.bin", full[cut:])
			},
		},
		{
			name: "APPE", before: full[:100000], cmds: []string{"APPE f.bin"},
			sent: full[100000:cut], kept: full[:cut],
			resume: func(c *ftpstest.Conn) { c.Xfer("APPE f.bin", full[cut:]) },
		},
		{
			name: "REST+STOR", before: append(full[:100000:100000], testutil.Payload(400000, 61)...),
			cmds: []string{"REST 100000", "STOR f.bin"}, sent: full[100000:cut], kept: full[:cut],
			resume: func(c *ftpstest.Conn) {
				c.Cmd(350, fmt.Sprintf("REST %d", cut))
				c.Xfer("STOR f.bin", full[cut:])
			},
		},
	}
	for _, v := range versions {
		for _, vt := range variants {
			t.Run(tls.VersionName(v)+"/"+vt.name, func(t *testing.T) {
				t.Parallel()
				s := ftpstest.NewServer(t, ftpstest.Options{})
				path := filepath.Join(s.Home(user), "f.bin")
				if vt.before != nil {
					testutil.WriteFile(t, s.Home(user), "f.bin", vt.before)
				}
				cfg := s.ClientTLS()
				cfg.MinVersion, cfg.MaxVersion = v, v
				c := s.Login(t, cfg)
				addr := c.Pasv()
				for _, cmd := range vt.cmds[:len(vt.cmds)-1] {
					c.Cmd(350, cmd)
				}
				c.Send(vt.cmds[len(vt.cmds)-1])
				tc := c.OpenData(addr)
				if _, err := tc.Write(vt.sent); err != nil {
					t.Fatal(err)
				}
				// The forged end: a FIN on the raw socket, no close_notify.
				if err := tc.NetConn().(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				code, msg := c.Read()
				if code != 426 {
					t.Fatalf("upload ended without close_notify: %d %q, want 426", code, msg)
				}
				for _, want := range []string{"close_notify", fmt.Sprintf("%d bytes received and kept", len(vt.sent)),
					fmt.Sprintf("file size %d", cut)} {
					if !strings.Contains(msg, want) {
						t.Errorf("426 %q does not say %q", msg, want)
					}
				}
				if n := s.Log.Count(`level=WARN msg="upload ended without TLS close_notify: possibly truncated, bytes kept" .* bytes=` + strconv.Itoa(len(vt.sent))); n != 1 {
					t.Errorf("%d warnings logged for the truncated upload, want 1", n)
				}
				testutil.AssertContent(t, path, vt.kept)

				// The client resumes from what was kept.
				c.Cmd(213, "SIZE f.bin")
				vt.resume(c)
				testutil.AssertContent(t, path, full)
			})
		}
	}
}

// dialFrom opens a control connection from a given loopback source
// address, reads the greeting and returns the connection and its reader.
func dialFrom(t *testing.T, s *ftpstest.Server, src string) (net.Conn, *bufio.Reader, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if !strings.HasPrefix(line, "220 ") {
		c.Close()
		return nil, nil, fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	return c, r, nil
}

// TestPreloginConnectionsCannotLockOut: ten source addresses each holding
// ten idle connections that never log in (the whole max_connections at
// the defaults) must not lock a real client out. Only
// max_prelogin_connections of them stay open; each newcomer evicts the
// oldest connection of the address holding the most; logged-in sessions
// are never evicted; a fresh client logs in while the attacker keeps
// reconnecting.
func TestPreloginConnectionsCannotLockOut(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	var defaults ftps.Config
	if err := defaults.Validate(); err != nil {
		t.Fatal(err)
	}
	preCap := defaults.MaxPreloginConnections // what the server under test uses too

	// Sessions logged in before the flood.
	var before []*ftpstest.Conn
	for range 3 {
		c := s.Login(t, s.ClientTLS())
		before = append(before, c)
	}

	type held struct {
		c net.Conn
		r *bufio.Reader
	}
	var attack []held
	for i := range defaults.MaxConnections {
		src := fmt.Sprintf("127.0.0.%d", 10+i%10)
		c, r, err := dialFrom(t, s, src)
		if err != nil {
			t.Fatalf("attacker connection %d from %s: %v", i, src, err)
		}
		attack = append(attack, held{c, r})
	}
	// Count the attacker's connections still open: an evicted one reads
	// its 421 and then EOF.
	open := 0
	for _, h := range attack {
		h.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		line, err := h.r.ReadString('\n')
		var ne net.Error
		switch {
		case err == nil && strings.HasPrefix(line, "421 "):
		case line == "" && errors.Is(err, io.EOF):
			// Evicted while its session held the reply writer (closeNow
			// never waits for it): closed without the 421.
		case errors.As(err, &ne) && ne.Timeout():
			open++
		default:
			t.Errorf("attacker connection: %q, %v; want a 421 or silence", line, err)
		}
	}
	if open > preCap {
		t.Errorf("%d pre-login connections open, want at most max_prelogin_connections = %d", open, preCap)
	}
	if n := s.Log.Count(`msg="pre-login connection evicted`); n < defaults.MaxConnections-preCap {
		t.Errorf("%d evictions logged, want at least %d", n, defaults.MaxConnections-preCap)
	}

	// The attacker keeps reconnecting (bounded in time and count) while a
	// fresh client logs in.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			src := fmt.Sprintf("127.0.0.%d", 10+i)
			for n := 0; n < 200; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if c, _, err := dialFrom(t, s, src); err == nil {
					defer c.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	testutil.WriteFile(t, s.Home(user), "present.txt", []byte("x"))
	for range 3 {
		c := s.Login(t, s.ClientTLS())
		if got := c.Xfer("LIST", nil); !bytes.Contains(got, []byte("present.txt")) {
			t.Errorf("LIST during the flood: %q, want present.txt", got)
		}
		c.Cmd(221, "QUIT")
	}
	close(stop)
	wg.Wait()
	for _, c := range before {
		c.Cmd(200, "NOOP")
	}
}

// TestAuthTLSTimeout: a connection that has not started TLS within
// auth_tls_timeout is closed with a 421, long before login_timeout; one
// that did start TLS is not affected by it.
func TestAuthTLSTimeout(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) {
		c.AuthTLSTimeout = 1500 * time.Millisecond
		c.LoginTimeout = time.Minute
	}})
	idle := s.Dial(t)
	tlsd := s.DialTLS(t)
	start := time.Now()
	code, msg := idle.Read()
	if code != 421 || !strings.Contains(msg, "AUTH TLS") {
		t.Errorf("idle plain connection: %d %q, want 421 about AUTH TLS", code, msg)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("closed after %v", d)
	}
	if _, _, err := idle.TryRead(); err == nil {
		t.Error("the connection stayed open after the 421")
	}
	// The TLS connection is past the deadline and still serves.
	time.Sleep(200 * time.Millisecond)
	tlsd.Cmd(331, "USER "+user)
	tlsd.Cmd(230, "PASS "+pass)
	if n := s.Log.Count(`msg="session timed out before AUTH TLS"`); n != 1 {
		t.Errorf("%d time-outs logged, want 1", n)
	}
}

// TestListingNeverCarriesControlBytes: names made on disk by another
// program with CR, LF, ESC and other control characters are written with
// '?' in their place in LIST, NLST, MLSD, MLST and STAT, so no phantom
// entry and no terminal escape reaches the client; temporary upload files
// are not listed.
func TestListingNeverCarriesControlBytes(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	home := s.Home(user)
	names := map[string]string{ // on disk -> as listed
		"evil\r\nphantom.txt":      "evil??phantom.txt",
		"lf\nonly.txt":             "lf?only.txt",
		"esc\x1b[31mred":           "esc?[31mred",
		"tab\tbell\a.txt":          "tab?bell?.txt",
		"c1-\u009b-csi":            "c1-??-csi",
		"plain.txt":                "plain.txt",
		".ftpsd-ABCDEFGHIJKL.part": "",
	}
	for name := range names {
		testutil.WriteFile(t, home, name, []byte("x"))
	}
	c := s.Login(t, s.ClientTLS())
	want := 0
	for _, shown := range names {
		if shown != "" {
			want++
		}
	}
	for _, cmd := range []string{"LIST", "NLST", "MLSD"} {
		got := string(c.Xfer(cmd, nil))
		lines := strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n")
		if len(lines) != want {
			t.Errorf("%s: %d lines, want %d:\n%q", cmd, len(lines), want, got)
		}
		checkPrintable(t, cmd, strings.ReplaceAll(got, "\r\n", ""))
		for disk, shown := range names {
			if shown == "" && strings.Contains(got, ".part") {
				t.Errorf("%s lists the temporary file %q", cmd, disk)
			} else if shown != "" && !strings.Contains(got, shown) {
				t.Errorf("%s: %q is not listed as %q:\n%q", cmd, disk, shown, got)
			}
		}
	}
	c.Send("STAT /")
	code, msg := c.Read()
	if code != 213 {
		t.Fatalf("STAT /: %d %q", code, msg)
	}
	checkPrintable(t, "STAT", strings.ReplaceAll(msg, "\n", ""))
	if !strings.Contains(msg, "evil??phantom.txt") {
		t.Errorf("STAT does not show the CR LF name as evil??phantom.txt:\n%s", msg)
	}
	// A name with ESC given by the client comes back sanitised, too.
	c.Send("MLST esc\x1b[31mred")
	code, msg = c.Read()
	if code != 250 || !strings.Contains(msg, "esc?[31mred") {
		t.Errorf("MLST: %d %q", code, msg)
	}
	checkPrintable(t, "MLST", strings.ReplaceAll(msg, "\n", ""))

	// lftp (GnuTLS, like FileZilla) sees exactly the real entries.
	lf := newLftp(t, s, "")
	out := lf.ok("cls -1")
	got := strings.Fields(out)
	if len(got) != want {
		t.Errorf("lftp lists %d entries, want %d: %q", len(got), want, out)
	}
}

func checkPrintable(t *testing.T, what, s string) {
	t.Helper()
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			t.Errorf("%s carries control byte %#x in %q", what, c, s)
			return
		}
	}
	if strings.Contains(s, "\u009b") {
		t.Errorf("%s carries a C1 control in %q", what, s)
	}
}

// TestTelnetIACIACIsOneByte: RFC 854 escapes a 0xFF data byte as IAC IAC;
// DELE of a name holding 0xFF deletes that file and not the one named
// without it.
func TestTelnetIACIACIsOneByte(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	home := s.Home(user)
	testutil.WriteFile(t, home, "a\xffb", []byte("with 0xFF"))
	testutil.WriteFile(t, home, "ab", []byte("without"))
	c := s.Login(t, s.ClientTLS())
	c.Cmd(213, "SIZE a\xff\xffb")
	c.Cmd(250, "DELE a\xff\xffb")
	testutil.AssertMissing(t, filepath.Join(home, "a\xffb"))
	testutil.AssertContent(t, filepath.Join(home, "ab"), []byte("without"))
	// Telnet commands (IAC IP, IAC DM) around a command are still dropped.
	c.Cmd(200, "\xff\xf4\xff\xf2NOOP")
}

// TestSTOUNamesAreNeverShared: two concurrent STOUs of the same name are
// announced different names (the name is chosen and created atomically
// before the 150), and both uploads land; an abandoned STOU leaves no empty
// file behind.
func TestSTOUNamesAreNeverShared(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	home := s.Home(user)
	a, b := s.Dial(t), s.Dial(t)
	a.Login(s.ClientTLS(), user, pass)
	b.Login(s.ClientTLS(), user, pass)
	fileRE := regexp.MustCompile(`FILE: (\S+)`)
	start := func(c *ftpstest.Conn) (addr, name string) {
		addr = c.Pasv()
		msg := c.Cmd(150, "STOU race.txt")
		m := fileRE.FindStringSubmatch(msg)
		if m == nil {
			t.Fatalf("150 %q names no file", msg)
		}
		return addr, m[1]
	}
	addrA, nameA := start(a) // A's data connection is not open yet
	addrB, nameB := start(b)
	if nameA == nameB {
		t.Fatalf("both STOUs were announced %q", nameA)
	}
	for _, up := range []struct {
		c    *ftpstest.Conn
		addr string
		data string
	}{{b, addrB, "from B"}, {a, addrA, "from A"}} {
		dc, err := ftpstest.DialData(t, up.addr, up.c.TLS)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(dc, up.data)
		dc.Close()
		up.c.Expect(226)
	}
	testutil.AssertContent(t, filepath.Join(home, nameA), []byte("from A"))
	testutil.AssertContent(t, filepath.Join(home, nameB), []byte("from B"))

	// ABOR before the data connection: the announced file goes away.
	a.Pasv()
	msg := a.Cmd(150, "STOU gone.txt")
	a.Abort()
	if !strings.Contains(msg, "gone.txt") {
		t.Errorf("150 %q", msg)
	}
	testutil.AssertMissing(t, filepath.Join(home, "gone.txt"))
}

// TestOverwriteWithDirectorySwappedForSymlink: while an overwrite runs, the
// directory that holds the target is renamed and a symlink to a place
// outside the home is put under its old name (by another program on the
// host). Whether the upload completes or is aborted, no temporary file is
// left anywhere and nothing is written outside the home.
func TestOverwriteWithDirectorySwappedForSymlink(t *testing.T) {
	t.Parallel()
	for _, complete := range []bool{true, false} {
		t.Run(map[bool]string{true: "complete", false: "abort"}[complete], func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{})
			home := s.Home(user)
			outside := t.TempDir()
			old := testutil.Payload(1000, 70)
			testutil.WriteFile(t, home, "dir/doc.bin", old)
			c := s.Login(t, s.ClientTLS())
			addr := c.Pasv()
			c.Send("STOR dir/doc.bin")
			dc := c.OpenData(addr)
			newData := testutil.Payload(300000, 71)
			if _, err := dc.Write(newData[:100000]); err != nil {
				t.Fatal(err)
			}
			waitTempFile(t, filepath.Join(home, "dir"))
			if err := os.Rename(filepath.Join(home, "dir"), filepath.Join(home, "moved")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(home, "dir")); err != nil {
				t.Fatal(err)
			}
			if complete {
				dc.Write(newData[100000:])
				dc.Close()
				c.Expect(226)
				// The upload lands in the directory it was started in.
				testutil.AssertContent(t, filepath.Join(home, "moved", "doc.bin"), newData)
			} else {
				c.Abort()
				testutil.AssertContent(t, filepath.Join(home, "moved", "doc.bin"), old)
			}
			filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
				if err == nil && strings.HasSuffix(d.Name(), ".part") {
					t.Errorf("temporary file left: %s", p)
				}
				return nil
			})
			testutil.AssertDirHolds(t, outside) // nothing written outside the home
			c.Cmd(200, "NOOP")
		})
	}
}

// waitTempFile waits (bounded) until an upload's temporary file exists in
// dir: the data connection has been accepted and the file opened.
func waitTempFile(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".part") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no temporary file appeared in %s", dir)
}
