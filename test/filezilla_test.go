package test

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// fzModTime is the modification time of the files FileZilla lists; MDTM
// and MLSD must report it exactly.
var fzModTime = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// fzFiles are the files each FileZilla connection downloads.
var fzFiles = map[string][]byte{
	"one.bin":   testutil.Payload(2<<20+17, 1),
	"two.bin":   testutil.Payload(1<<20+3, 2),
	"three.bin": testutil.Payload(1<<20+333, 3),
}

// filezilla is one FileZilla control connection: FileZilla 3.x (GnuTLS)
// offers ALPN "ftp" and "x-filezilla-ftp" on the control connection, and
// starts every data handshake from the control connection's own session
// parameters, without ALPN. Each control connection therefore has its own
// session cache: a ticket of one connection is never offered on another's
// data port.
type filezilla struct {
	*ftpstest.Conn
	data *tls.Config // for data connections: same cache, no ALPN
}

func fzTLS(s *ftpstest.Server, version uint16) (control, data *tls.Config) {
	control = &tls.Config{
		RootCAs:            s.CAPool,
		ServerName:         "localhost",
		NextProtos:         []string{"ftp", "x-filezilla-ftp"},
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		MinVersion:         version,
		MaxVersion:         version,
	}
	data = control.Clone() // shares ClientSessionCache
	data.NextProtos = nil
	return control, data
}

// fzLogon is FileZilla's logon (logon.cpp): AUTH TLS, USER, PASS, FEAT,
// OPTS UTF8 ON (FEAT lists UTF8, not CLNT), PBSZ 0, PROT P.
func fzLogon(t *testing.T, s *ftpstest.Server, version uint16) *filezilla {
	t.Helper()
	control, data := fzTLS(s, version)
	c := s.Dial(t)
	c.AuthTLS(control)
	st := c.ControlState()
	if st.Version != version {
		t.Fatalf("control TLS version %s, want %s", tls.VersionName(st.Version), tls.VersionName(version))
	}
	if st.NegotiatedProtocol != "ftp" {
		t.Fatalf("control ALPN %q, want \"ftp\" (never x-filezilla-ftp: its contract is not implemented)", st.NegotiatedProtocol)
	}
	c.Cmd(331, "USER "+user)
	c.Cmd(230, "PASS "+pass)
	feat := c.Cmd(211, "FEAT")
	for _, want := range []string{"UTF8", "MLST", "SIZE", "MDTM", "REST STREAM", "PBSZ", "PROT", "EPSV"} {
		if !strings.Contains(feat, "\n "+want) {
			t.Errorf("FEAT lacks %q:\n%s", want, feat)
		}
	}
	if strings.Contains(feat, "\n CLNT") {
		t.Errorf("FEAT lists CLNT, which is not implemented")
	}
	c.Cmd(200, "OPTS UTF8 ON")
	c.Cmd(200, "PBSZ 0")
	c.Cmd(200, "PROT P")
	return &filezilla{Conn: c, data: data}
}

// mlsdEntry is one parsed MLSD line.
type mlsdEntry struct {
	facts map[string]string
	name  string
}

func parseMLSD(t *testing.T, listing string) map[string]mlsdEntry {
	t.Helper()
	if listing != "" && !strings.HasSuffix(listing, "\r\n") {
		t.Errorf("MLSD does not end in CRLF: %q", listing)
	}
	out := make(map[string]mlsdEntry)
	for _, line := range strings.Split(strings.TrimSuffix(listing, "\r\n"), "\r\n") {
		if line == "" {
			continue
		}
		factText, name, ok := strings.Cut(line, " ")
		if !ok || name == "" {
			t.Errorf("bad MLSD line %q", line)
			continue
		}
		e := mlsdEntry{facts: make(map[string]string), name: name}
		for _, f := range strings.Split(strings.TrimSuffix(factText, ";"), ";") {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Errorf("bad fact %q in MLSD line %q", f, line)
			}
			e.facts[strings.ToLower(k)] = v
		}
		out[name] = e
	}
	return out
}

// fzBrowse is FileZilla's first directory listing (list.cpp, cwd.cpp):
// PWD, TYPE I, PASV, MLSD. It checks the listing against the home, whose
// facts b tells.
func (c *filezilla) browse(t *testing.T, b backend) {
	t.Helper()
	if pwd := c.Cmd(257, "PWD"); !strings.HasPrefix(pwd, `"/"`) {
		t.Errorf("PWD = %q, want \"/\"", pwd)
	}
	c.Cmd(200, "TYPE I")
	entries := parseMLSD(t, string(c.XferWith(c.data, "MLSD", nil)))

	var names []string
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"one.bin", "sub", "three.bin", "two.bin", "ünïcödé.txt"}; !slices.Equal(names, want) {
		t.Errorf("MLSD names %q, want %q", names, want)
	}
	uniques := make(map[string]bool)
	for name, e := range entries {
		want := map[string]string{"type": "file", "modify": fzModTime.Format("20060102150405")}
		if data, ok := fzFiles[name]; ok {
			want["size"] = strconv.Itoa(len(data))
			want["perm"] = b.filePerm
		}
		if name == "sub" {
			want = map[string]string{"type": "dir", "perm": b.dirPerm}
			if _, ok := e.facts["size"]; ok {
				t.Errorf("MLSD dir %q has a size fact", name)
			}
		}
		for k, v := range want {
			if e.facts[k] != v {
				t.Errorf("MLSD %q: %s=%q, want %q (line facts %v)", name, k, e.facts[k], v, e.facts)
			}
		}
		if u := e.facts["unique"]; !b.unique {
			if u != "" {
				t.Errorf("MLSD %q: unique=%q on a storage without one", name, u)
			}
		} else if u == "" || uniques[u] {
			t.Errorf("MLSD %q: unique=%q missing or repeated", name, u)
		} else {
			uniques[u] = true
		}
	}
}

// download is FileZilla's transfer of one file (filetransfer.cpp): SIZE,
// MDTM, PASV, RETR.
func (c *filezilla) download(t *testing.T, name string) {
	t.Helper()
	want := fzFiles[name]
	if got := c.Cmd(213, "SIZE "+name); got != strconv.Itoa(len(want)) {
		t.Errorf("SIZE %s = %s, want %d", name, got, len(want))
	}
	if got := c.Cmd(213, "MDTM "+name); got != fzModTime.Format("20060102150405") {
		t.Errorf("MDTM %s = %s, want %s", name, got, fzModTime.Format("20060102150405"))
	}
	got := c.XferWith(c.data, "RETR "+name, nil)
	if testutil.Sum(got) != testutil.Sum(want) {
		t.Errorf("RETR %s: %d bytes sha256 %s, want %d bytes sha256 %s", name, len(got), testutil.Sum(got)[:16], len(want), testutil.Sum(want)[:16])
	}
}

// TestFileZillaSequence replays what FileZilla 3.x sends with its default
// settings (FIELD-NOTES §2.1), on each backend: a browsing connection, then
// two transfer connections from the same IP in parallel, each its own
// logged-in TLS session whose data connections must resume it, then the
// browsing connection's changes to the remote side. The user has
// max_sessions = 3: what FileZilla's defaults need, and enough.
func TestFileZillaSequence(t *testing.T) {
	t.Parallel()
	three := 3
	fz := ftpstest.DefaultUser
	fz.Config = func(u *auth.UserConfig) { u.MaxSessions = &three }
	eachBackend(t, func(t *testing.T, b backend) {
		eachVersionOn(t, b, ftpstest.Options{Users: []ftpstest.User{fz}}, func(t *testing.T, v uint16, h *home) {
			s, home := h.s, h.dir
			for name, data := range fzFiles {
				testutil.WriteFile(t, home, name, data)
			}
			testutil.WriteFile(t, home, "ünïcödé.txt", []byte("utf-8 name\n"))
			if err := os.Mkdir(filepath.Join(home, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"one.bin", "two.bin", "three.bin", "ünïcödé.txt", "sub"} {
				if err := os.Chtimes(filepath.Join(home, n), fzModTime, fzModTime); err != nil {
					t.Fatal(err)
				}
			}

			// The browsing connection: logon, first listing, a download.
			browser := fzLogon(t, s, v)
			browser.browse(t, b)
			browser.download(t, "one.bin")

			// FileZilla's default of two parallel transfers: two more
			// control connections, each with its own logon and session.
			t.Run("parallel", func(t *testing.T) {
				for i, name := range []string{"two.bin", "three.bin"} {
					t.Run(fmt.Sprintf("transfer-%d", i+1), func(t *testing.T) {
						t.Parallel()
						c := fzLogon(t, s, v)
						c.browse(t, b)
						c.download(t, name)
						c.download(t, "one.bin")
						c.Cmd(221, "QUIT")
					})
				}
			})

			// The browsing connection is still usable afterwards; what it
			// changes leaves the home as it was (modification times too).
			browser.edit(t, h)
			browser.browse(t, b)
			browser.Cmd(221, "QUIT")

			if n := strings.Count(s.Log.String(), "TLS session not resumed"); n != 0 {
				t.Errorf("server refused %d data connections for not resuming", n)
			}
		})
	})
}

// edit is what a FileZilla user does next on the home h (filetransfer.cpp,
// rename.cpp, delete.cpp, mkd.cpp, rmd.cpp): a resumed download
// (REST+RETR), an upload and its overwrite, a resumed upload (REST+STOR: a
// 502 on S3), a rename, deletes, a directory made, renamed (a 502 on S3)
// and removed once empty, and two cancelled overwrites of one.bin, which
// must keep it. It leaves the home as it found it.
func (c *filezilla) edit(t *testing.T, h *home) {
	t.Helper()
	home := h.dir
	one := fzFiles["one.bin"]
	c.Cmd(350, "REST 1000000")
	if got := c.XferWith(c.data, "RETR one.bin", nil); testutil.Sum(got) != testutil.Sum(one[1000000:]) {
		t.Errorf("REST 1000000, RETR one.bin: %d bytes, differ from the file's last %d", len(got), len(one)-1000000)
	}

	up := testutil.Payload(1<<20+5, 4)
	c.XferWith(c.data, "STOR up.bin", up[:1000])
	testutil.AssertContent(t, filepath.Join(home, "up.bin"), up[:1000])
	c.XferWith(c.data, "STOR up.bin", up)
	testutil.AssertContent(t, filepath.Join(home, "up.bin"), up)

	testutil.WriteFile(t, home, "part.bin", up[:300000])
	c.Cmd(213, "SIZE part.bin")
	c.Cmd(350, "REST 300000")
	if h.resumeUploads {
		c.XferWith(c.data, "STOR part.bin", up[300000:])
		testutil.AssertContent(t, filepath.Join(home, "part.bin"), up)
	} else {
		// Refused before the 150: no data connection, the client reads why.
		c.Pasv()
		if msg := c.Cmd(502, "STOR part.bin"); !strings.Contains(msg, "REST+STOR") {
			t.Errorf("REST+STOR on S3: 502 %q does not say why", msg)
		}
		testutil.AssertContent(t, filepath.Join(home, "part.bin"), up[:300000])
	}

	c.Cmd(350, "RNFR up.bin")
	c.Cmd(250, "RNTO renamed.bin")
	testutil.AssertMissing(t, filepath.Join(home, "up.bin"))
	testutil.AssertContent(t, filepath.Join(home, "renamed.bin"), up)
	c.Cmd(250, "DELE renamed.bin")
	c.Cmd(250, "DELE part.bin")
	c.Cmd(550, "DELE renamed.bin")

	c.Cmd(257, "MKD newdir")
	c.Cmd(350, "RNFR newdir")
	dir := "newdir"
	if h.renameDirs {
		c.Cmd(250, "RNTO moved")
		dir = "moved"
	} else {
		c.Cmd(502, "RNTO moved")
	}
	c.XferWith(c.data, "STOR "+dir+"/f.txt", []byte("in a directory\n"))
	c.Cmd(550, "RMD "+dir)
	c.Cmd(250, "DELE "+dir+"/f.txt")
	c.Cmd(250, "RMD "+dir)

	// Cancelled overwrites: more than an S3 part is sent, then the
	// transfer ends without close_notify, or with ABOR.
	for _, end := range []struct {
		name string
		end  func(tc *tls.Conn)
	}{
		{"ABOR", func(*tls.Conn) { c.Abort() }},
		{"no close_notify", func(tc *tls.Conn) {
			if err := tc.NetConn().(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			c.Expect(426)
		}},
	} {
		addr := c.Pasv()
		c.Send("STOR one.bin")
		tc := c.dial(t, addr)
		c.Expect(150)
		if _, err := tc.Write(testutil.Payload(9<<20, 5)); err != nil {
			t.Fatalf("%s: %v", end.name, err)
		}
		for deadline := time.Now().Add(10 * time.Second); !h.uploading(t); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the upload stored nothing on the side in 10s", end.name)
			}
		}
		end.end(tc)
		tc.Close()
		testutil.AssertContent(t, filepath.Join(home, "one.bin"), one)
		h.assertClean(t, "one.bin", "sub", "three.bin", "two.bin", "ünïcödé.txt")
	}
}

// dial opens a data connection to addr as FileZilla does and fails the
// test unless it resumed the control session.
func (c *filezilla) dial(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	dc, err := ftpstest.DialData(t, addr, c.data)
	if err != nil {
		t.Fatalf("data connection: %v", err)
	}
	tc := dc.(*tls.Conn)
	if !tc.ConnectionState().DidResume {
		t.Error("the data connection did not resume the control TLS session")
	}
	return tc
}

// TestFileZillaALPN: whatever order FileZilla lists its protocols in, the
// server selects "ftp" (a hello whose ALPN list had no overlap would be
// rejected outright by Go, and x-filezilla-ftp would oblige the server to
// a contract it does not implement).
func TestFileZillaALPN(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	for _, protos := range [][]string{
		{"ftp", "x-filezilla-ftp"},
		{"x-filezilla-ftp", "ftp"},
		{"ftp"},
	} {
		cfg := s.ClientTLS()
		cfg.NextProtos = protos
		c := s.Dial(t)
		c.AuthTLS(cfg)
		if got := c.ControlState().NegotiatedProtocol; got != "ftp" {
			t.Errorf("offered %q: negotiated %q, want \"ftp\"", protos, got)
		}
		c.Cmd(221, "QUIT")
	}
}

var pasvAddrRE = regexp.MustCompile(`^127\.0\.0\.1:\d+$`)

// TestFileZillaPasvAddress: FileZilla uses PASV (not EPSV) over IPv4, so
// the 227 address is what it connects to; with no public_address it must
// be the control connection's local address.
func TestFileZillaPasvAddress(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := fzLogon(t, s, tls.VersionTLS13)
	if addr := c.Pasv(); !pasvAddrRE.MatchString(addr) {
		t.Errorf("PASV address %q, want 127.0.0.1:port", addr)
	}
	c.Cmd(221, "QUIT")
}
