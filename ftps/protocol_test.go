package ftps_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

const user, pass = "alice", "alice-secret"

// versions are the TLS versions the transfer tests run at.
var versions = []uint16{tls.VersionTLS12, tls.VersionTLS13}

// step is one command and the reply code it must get.
type step struct {
	line string
	code int
}

func run(t *testing.T, c *ftpstest.Conn, steps []step) {
	t.Helper()
	for _, st := range steps {
		c.Send(st.line)
		if code, msg := c.Read(); code != st.code {
			t.Errorf("%q: got %d %q, want %d", st.line, code, msg, st.code)
		}
	}
}

// TestCommandSequences sends command sequences on a fresh connection and
// checks every reply code: before TLS, after AUTH TLS before login, the
// limit on login attempts, and a plaintext login where the config allows
// it.
func TestCommandSequences(t *testing.T) {
	plaintextLogin := ftpstest.Options{Server: func(c *ftps.Config) { c.AllowPlaintextLogin = true }}
	for _, tc := range []struct {
		name  string
		opts  ftpstest.Options
		tls   bool // AUTH TLS first
		steps []step
	}{
		{name: "before TLS", steps: []step{
			{"USER alice", 530},
			{"PASS alice-secret", 530},
			{"PBSZ 0", 503},
			{"PROT P", 503},
			{"FEAT", 211},
			{"NOOP", 200},
			{"LIST", 530},
			{"RETR x", 530},
			{"PASV", 530},
			{"XYZZY", 500},
			{"AUTH KERBEROS", 504},
			{"AUTH", 501},
			{"HELP", 214},
			{"QUIT", 221},
		}},
		{name: "after TLS before login", tls: true, steps: []step{
			{"AUTH TLS", 503},
			{"PROT P", 503}, // PBSZ first
			{"PBSZ x", 501},
			{"PBSZ 0", 200},
			{"PROT X", 504},
			{"PROT C", 534},
			{"PROT S", 536},
			{"PROT P", 200},
			{"CCC", 534},
			{"PASV", 530},
			{"CWD /", 530},
			{"PASS x", 503},
			{"USER alice", 331},
			{"PASS wrong", 530},
			{"USER alice", 331},
			{"PASS alice-secret", 230},
			{"USER bob", 530},
			{"PWD", 257},
			{"SYST", 215},
			{"TYPE I", 200},
			{"TYPE A", 200},
			{"TYPE E", 504},
			{"MODE S", 200},
			{"MODE B", 504},
			{"STRU F", 200},
			{"STRU R", 504},
			{"OPTS UTF8 ON", 200},
			{"OPTS MLST type;size;", 200},
			{"OPTS BOGUS", 501},
			{"ALLO 100", 202},
			{"REST x", 501},
			{"REST -1", 501},
			{"RNTO x", 503},
			{"STAT", 211},
			{"PORT 127,0,0,1,4,1", 502},
			{"EPSV 9", 501},
			{"MFMT 2026 x", 501},
			{"ABOR", 225},
			{"QUIT", 221},
		}},
		{name: "login attempts limited", tls: true, steps: []step{
			{"USER alice", 331}, {"PASS a", 530}, {"USER alice", 331}, {"PASS b", 530}, {"USER alice", 331}, {"PASS c", 421},
		}},
		{name: "plaintext login allowed by config", opts: plaintextLogin, steps: []step{
			{"USER alice", 331}, {"PASS alice-secret", 230}, {"PASV", 227}, {"LIST", 521},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ftpstest.NewServer(t, tc.opts)
			c := s.Dial(t)
			if tc.tls {
				c.AuthTLS(s.ClientTLS())
				if got := c.ControlState().NegotiatedProtocol; got != "" && got != "ftp" {
					t.Errorf("ALPN = %q", got)
				}
			}
			run(t, c, tc.steps)
		})
	}
}

func TestLineTooLong(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	c.Send("NOOP " + strings.Repeat("x", 10<<10))
	c.Expect(500)
	assertClosed(t, c)
}

func TestPipelinedAfterAuthIsRefused(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Dial(t)
	c.Send("AUTH TLS\r\nUSER alice")
	c.Expect(503)
	assertClosed(t, c)
}

func assertClosed(t *testing.T, c *ftpstest.Conn) {
	t.Helper()
	for range 3 {
		if _, _, err := c.TryRead(); err != nil {
			return
		}
	}
	t.Fatal("connection still open")
}

func TestFileOperations(t *testing.T) {
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s := ftpstest.NewServer(t, ftpstest.Options{})
			cfg := s.ClientTLS()
			cfg.MaxVersion = v
			c := s.Login(t, cfg)
			home := s.Home(user)
			content := bytes.Repeat([]byte("0123456789abcdef"), 100000) // 1.6 MB

			c.Xfer("STOR big.bin", content)
			if got, _ := os.ReadFile(filepath.Join(home, "big.bin")); !bytes.Equal(got, content) {
				t.Fatalf("stored %d bytes, want %d", len(got), len(content))
			}
			if got := c.Cmd(213, "SIZE big.bin"); got != fmt.Sprint(len(content)) {
				t.Errorf("SIZE = %s", got)
			}
			c.Cmd(213, "MDTM big.bin")
			c.AssertRetr("big.bin", content)
			c.Cmd(350, "REST 1000")
			c.AssertRetr("big.bin", content[1000:])
			mlsd := string(c.Xfer("MLSD", nil))
			if !strings.Contains(mlsd, "type=file;size=1600000;") || !strings.Contains(mlsd, " big.bin\r\n") {
				t.Errorf("MLSD = %q", mlsd)
			}
			list := string(c.Xfer("LIST -la", nil))
			if !strings.Contains(list, "1600000") || !strings.HasPrefix(list, "-rw") {
				t.Errorf("LIST = %q", list)
			}
			if nl := string(c.Xfer("NLST", nil)); nl != "big.bin\r\n" {
				t.Errorf("NLST = %q", nl)
			}

			// Resume an upload: REST+STOR writes in place; APPE appends.
			os.WriteFile(filepath.Join(home, "part.bin"), content[:500], 0o644)
			c.Cmd(350, "REST 500")
			c.Xfer("STOR part.bin", content[500:1000])
			c.Xfer("APPE part.bin", content[1000:1500])
			if got, _ := os.ReadFile(filepath.Join(home, "part.bin")); !bytes.Equal(got, content[:1500]) {
				t.Errorf("resumed upload has %d bytes, want 1500 matching", len(got))
			}

			c.Cmd(257, "MKD sub")
			c.Cmd(250, "CWD sub")
			if pwd := c.Cmd(257, "PWD"); !strings.HasPrefix(pwd, `"/sub"`) {
				t.Errorf("PWD = %s", pwd)
			}
			c.Cmd(250, "CDUP")
			c.Cmd(350, "RNFR big.bin")
			c.Cmd(250, "RNTO sub/renamed.bin")
			c.Cmd(550, "SIZE big.bin")
			c.Cmd(213, "MFMT 20200102030405 sub/renamed.bin")
			if got := c.Cmd(213, "MDTM sub/renamed.bin"); got != "20200102030405" {
				t.Errorf("MDTM after MFMT = %s", got)
			}
			mlst := c.Cmd(250, "MLST sub/renamed.bin")
			if !strings.Contains(mlst, "modify=20200102030405;") {
				t.Errorf("MLST = %q", mlst)
			}
			c.Cmd(550, "RMD sub") // not empty
			c.Cmd(250, "DELE sub/renamed.bin")
			c.Cmd(250, "RMD sub")
			c.Cmd(550, "DELE nothing")
			c.Xfer("STOU", []byte("u"))
			c.Cmd(221, "QUIT")
		})
	}
}

func TestPermissions(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{{Name: user, Password: pass, Perms: []string{"list", "read"}}}})
	os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("x"), 0o644)
	c := s.Login(t, s.ClientTLS())
	c.Pasv()
	run(t, c, []step{
		{"STOR new.txt", 550},
		{"APPE f.txt", 550},
		{"DELE f.txt", 550},
		{"MKD d", 550},
		{"RMD d", 550},
		{"RNFR f.txt", 550},
		{"MLST /", 250},
		{"MFMT 20200102030405 f.txt", 550},
		{"SIZE f.txt", 213},
	})
	if got := string(c.Xfer("RETR f.txt", nil)); got != "x" {
		t.Errorf("RETR = %q", got)
	}
}

// TestDataConnectionNotResumed: data connections that do not resume their
// own control session are refused with the 425 FileZilla users know, for
// listings, downloads and uploads; a refused STOR does not create or
// truncate its target; and the control connection goes on working.
func TestDataConnectionNotResumed(t *testing.T) {
	t.Parallel()
	type variant struct {
		name    string
		version uint16
		// ticketless: the control client, like curl on OpenSSL, offers
		// no session tickets at all.
		ticketless bool
		// data returns the TLS config of the misbehaving data client.
		data func(t *testing.T, s *ftpstest.Server) *tls.Config
	}
	noCache := func(v uint16) func(*testing.T, *ftpstest.Server) *tls.Config {
		return func(_ *testing.T, s *ftpstest.Server) *tls.Config {
			cfg := s.ClientTLS()
			cfg.ClientSessionCache = nil
			cfg.MinVersion, cfg.MaxVersion = v, v
			return cfg
		}
	}
	otherSession := func(v uint16) func(*testing.T, *ftpstest.Server) *tls.Config {
		return func(t *testing.T, s *ftpstest.Server) *tls.Config {
			cfg := s.ClientTLS()
			cfg.MinVersion, cfg.MaxVersion = v, v
			other := s.Login(t, cfg)
			other.Cmd(200, "NOOP") // the TLS 1.3 ticket has arrived
			return cfg
		}
	}
	ticketless := func(_ *testing.T, s *ftpstest.Server) *tls.Config {
		cfg := s.ClientTLS()
		cfg.SessionTicketsDisabled = true
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		return cfg
	}
	variants := []variant{
		{"no-session-cache/TLS1.2", tls.VersionTLS12, false, noCache(tls.VersionTLS12)},
		{"no-session-cache/TLS1.3", tls.VersionTLS13, false, noCache(tls.VersionTLS13)},
		{"ticketless-like-curl/TLS1.2", tls.VersionTLS12, true, ticketless},
		{"other-sessions-ticket/TLS1.2", tls.VersionTLS12, false, otherSession(tls.VersionTLS12)},
		{"other-sessions-ticket/TLS1.3", tls.VersionTLS13, false, otherSession(tls.VersionTLS13)},
	}
	for _, vt := range variants {
		t.Run(vt.name, func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{})
			home := s.Home(user)
			secret := testutil.Payload(100000, 40)
			testutil.WriteFile(t, home, "secret.bin", secret)
			testutil.WriteFile(t, home, "old.txt", []byte("old content"))
			own := s.ClientTLS()
			own.MinVersion, own.MaxVersion = vt.version, vt.version
			own.SessionTicketsDisabled = vt.ticketless
			c := s.Login(t, own)
			for _, cmd := range []string{"MLSD", "LIST", "RETR secret.bin", "STOR old.txt", "STOR new.txt", "APPE old.txt"} {
				// A fresh bad client each time: one that was refused
				// before may hold a ticket from this session's data
				// port, which TestRefusedDataClientCannotComeBack covers.
				bad := vt.data(t, s)
				addr := c.Pasv()
				c.Send(cmd)
				dc, err := ftpstest.DialData(t, addr, bad)
				c.Expect(150)
				if err == nil {
					if tc := dc.(*tls.Conn); tc.ConnectionState().DidResume {
						t.Errorf("%s: a data client without this session's ticket resumed it", cmd)
					}
					if strings.HasPrefix(cmd, "STOR") || strings.HasPrefix(cmd, "APPE") {
						dc.Write([]byte("overwritten!"))
					}
					got, _ := io.ReadAll(dc)
					if len(got) != 0 {
						t.Errorf("%s: %d bytes leaked over a refused data connection", cmd, len(got))
					}
				}
				msg := c.Expect(425)
				if want := "Unable to build data connection: TLS session of data connection not resumed"; !strings.Contains(msg, want) {
					t.Errorf("%s: 425 %q, want %q", cmd, msg, want)
				}
			}
			testutil.AssertContent(t, filepath.Join(home, "old.txt"), []byte("old content"))
			testutil.AssertMissing(t, filepath.Join(home, "new.txt"))
			if n := s.Log.Count(`msg="data connection refused: TLS session not resumed" .* tls_resumption=required`); n != 6 {
				t.Errorf("%d refusals logged, want 6", n)
			}
			if vt.ticketless {
				// Such a client can never transfer in required mode.
				c.Cmd(221, "QUIT")
				return
			}
			// The session's own, resuming data connection still works.
			c.Cmd(200, "NOOP")
			c.AssertRetr("secret.bin", secret) // after the refusals
			c.Xfer("STOR old.txt", []byte("new content"))
			testutil.AssertContent(t, filepath.Join(home, "old.txt"), []byte("new content"))
		})
	}
}

func TestResumptionCompatibleAcceptsTicketlessClient(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Passive: func(c *passive.Config) { c.TLSResumption = "compatible" }})
	os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("x"), 0o644)
	cfg := s.ClientTLS()
	cfg.MaxVersion = tls.VersionTLS12
	cfg.SessionTicketsDisabled = true // like curl on OpenSSL
	c := s.Login(t, cfg)
	if got := c.Xfer("RETR f.txt", nil); string(got) != "x" {
		t.Errorf("RETR = %q", got)
	}
}

func TestAbortDownload(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	os.WriteFile(filepath.Join(s.Home(user), "big"), bytes.Repeat([]byte("x"), 64<<20), 0o644)
	c := s.Login(t, s.ClientTLS())
	addr := c.Pasv()
	c.Send("RETR big")
	dc := c.OpenData(addr)
	dc.Read(make([]byte, 1000)) // the transfer is running; stop reading
	c.Abort()
	c.Cmd(200, "NOOP")
}

func TestConnectionLimits(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.MaxConnectionsPerIP = 2 }})
	s.Dial(t)
	s.Dial(t)
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(buf), "421 ") {
		t.Errorf("third connection got %q", buf)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.LoginTimeout = 300 * time.Millisecond }})
	c := s.Dial(t)
	c.Expect(421)
}

func TestShutdownTellsIdleSessions(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.Login(t, s.ClientTLS())
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(t.Context()) }()
	c.Expect(421)
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// TestShutdownCutsStalledTransfer: Shutdown with a short deadline while a
// RETR is stalled (the client stopped reading) waits for the transfer up
// to the deadline, then cuts the session and its data connection, returns
// the context's error, and leaves no goroutine of the server behind; the
// log shows the transfer and the session ending.
func TestShutdownCutsStalledTransfer(t *testing.T) {
	// Not parallel: the goroutine count below is of the whole test binary.
	baseline := serverGoroutines()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	testutil.WriteFile(t, s.Home(user), "big", bytes.Repeat([]byte("x"), 64<<20))
	c := s.Login(t, s.ClientTLS())
	addr := c.Pasv()
	c.Send("RETR big")
	dc := c.OpenData(addr)
	if _, err := io.ReadFull(dc, make([]byte, 1000)); err != nil {
		t.Fatalf("read the start of the transfer: %v", err)
	}
	// The client reads no more: the server's writes fill the socket
	// buffers and block.

	const grace = 500 * time.Millisecond
	start := time.Now() // before the deadline is set, so took cannot be short of it
	ctx, cancel := context.WithTimeout(t.Context(), grace)
	defer cancel()
	err := s.Shutdown(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	if took < grace || took > grace+5*time.Second {
		t.Errorf("Shutdown took %v, want the deadline (%v) and little more", took, grace)
	}

	// The control connection is closed (a 421 may come first) and the
	// data connection ends early.
	for range 2 {
		if _, _, err := c.TryRead(); err != nil {
			break
		}
	}
	if _, _, err := c.TryRead(); err == nil {
		t.Error("the control connection is still open after the forced shutdown")
	}
	dc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.Copy(io.Discard, dc); err == nil && n >= 64<<20-1000 {
		t.Errorf("the data connection delivered the whole file (%d bytes) after the forced shutdown", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("the data connection is still open after the forced shutdown")
	}

	testutil.WaitFor(t, 10*time.Second, "the server's goroutines to end", func() bool { return serverGoroutines() <= baseline })
	s.Log.Wait(t, `msg=transfer .* op="RETR /big" code=(426|451)`, 1, 5*time.Second)
	s.Log.Wait(t, `msg="session closed" .* user=alice`, 1, 5*time.Second)
}

// serverGoroutines counts the goroutines running code of package ftps.
func serverGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "\ngithub.com/ftpsd/ftpsd/ftps.") {
			count++
		}
	}
	return count
}

func TestRenameOverExistingNeedsWrite(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{{Name: user, Password: pass, Perms: []string{"list", "read", "rename"}}}})
	home := s.Home(user)
	os.WriteFile(filepath.Join(home, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(home, "b"), []byte("b"), 0o644)
	c := s.Login(t, s.ClientTLS())
	run(t, c, []step{{"RNFR a", 350}, {"RNTO b", 550}, {"RNFR a", 350}, {"RNTO c", 250}})
	testutil.AssertContent(t, filepath.Join(home, "b"), []byte("b"))
	mlst := c.Cmd(250, "MLST /")
	_, after, _ := strings.Cut(mlst, "perm=")
	if perm, _, _ := strings.Cut(after, ";"); perm != "el" {
		t.Errorf("MLST / perm = %q, want \"el\" (no rename or delete of the home): %q", perm, mlst)
	}
}

func TestImplicitFTPS(t *testing.T) {
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s := ftpstest.NewServer(t, ftpstest.Options{Implicit: true})
			os.WriteFile(filepath.Join(s.Home(user), "f.txt"), []byte("implicit"), 0o644)
			cfg := s.ClientTLS()
			cfg.MaxVersion = v
			c := s.DialImplicit(t, cfg)
			run(t, c, []step{{"AUTH TLS", 503}, {"USER alice", 331}, {"PASS alice-secret", 230}})
			// PROT P is the default here: a transfer works without PBSZ/PROT.
			if got := c.Xfer("RETR f.txt", nil); string(got) != "implicit" {
				t.Errorf("RETR = %q", got)
			}
			c.Cmd(221, "QUIT")

			// A plain-text client on the implicit port gets nothing.
			raw, err := net.Dial("tcp", s.ImplicitAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.Write([]byte("USER alice\r\n"))
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, _ := io.ReadAll(raw); bytes.Contains(b, []byte("220")) {
				t.Errorf("plain client on the implicit port got %q", b)
			}
		})
	}
}

// TestSpecialFilesDoNotBlock: a FIFO in a home (made by a shell user) must
// not hang the session: opening one for reading or writing would block
// until a peer appears.
func TestSpecialFilesDoNotBlock(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	if err := syscall.Mkfifo(filepath.Join(s.Home(user), "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	c := s.Login(t, s.ClientTLS())
	c.Pasv()
	run(t, c, []step{{"RETR pipe", 550}, {"STOR pipe", 550}, {"APPE pipe", 550}, {"CWD pipe", 550}, {"MLSD pipe", 501}})
	c.Cmd(350, "REST 1")
	c.Cmd(550, "STOR pipe")
	if list := string(c.Xfer("LIST", nil)); !strings.Contains(list, "pipe") {
		t.Errorf("LIST = %q", list)
	}
	c.Cmd(221, "QUIT")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestDataConnectionFromAnotherIP: a connection to a session's passive
// port from another address (127.0.0.2) is dropped without a byte or a
// TLS handshake, the rightful client connecting afterwards still gets its
// transfer, and other sessions are served meanwhile. When only the
// foreign peer comes, the transfer ends with a 425 at the accept timeout.
func TestDataConnectionFromAnotherIP(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Passive: func(c *passive.Config) { c.AcceptTimeout = 2 * time.Second }})
	data := testutil.Payload(1<<20, 41)
	testutil.WriteFile(t, s.Home(user), "f.bin", data)
	c := s.Login(t, s.ClientTLS())
	bystander := s.Login(t, s.ClientTLS())

	addr := c.Pasv()
	c.Send("RETR f.bin")
	c.Expect(150)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	for i := range 3 {
		thief, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatalf("dial from 127.0.0.2: %v", err)
		}
		thief.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Client(thief, s.ClientTLS())
		if err := tc.Handshake(); err == nil {
			t.Errorf("thief %d completed a TLS handshake", i)
			if n, _ := io.Copy(io.Discard, tc); n > 0 {
				t.Errorf("thief %d read %d bytes", i, n)
			}
		}
		thief.Close()
		bystander.Cmd(200, "NOOP")
	}
	s.Log.Wait(t, `msg="data connection from a foreign address dropped" .*peer=127\.0\.0\.2:`, 3, 5*time.Second)

	dc, err := ftpstest.DialData(t, addr, c.TLS)
	if err != nil {
		t.Fatalf("rightful data connection: %v", err)
	}
	if !dc.(*tls.Conn).ConnectionState().DidResume {
		t.Error("rightful data connection did not resume")
	}
	got, err := io.ReadAll(dc)
	if err != nil || testutil.Sum(got) != testutil.Sum(data) {
		t.Errorf("RETR: %d bytes, %v; want the file", len(got), err)
	}
	dc.Close()
	c.Expect(226)
	bystander.AssertRetr("f.bin", data)

	// Only the thief comes: it reads nothing, and the rightful client,
	// which never came, gets a 425 once the accept timeout passes.
	addr = c.Pasv()
	c.Send("RETR f.bin")
	thief, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial from 127.0.0.2: %v", err)
	}
	defer thief.Close()
	c.Expect(150)
	thief.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := thief.Read(make([]byte, 1)); err == nil {
		t.Errorf("thief read %d bytes", n)
	}
	c.Expect(425)
	c.Cmd(200, "NOOP")
}

// TestAbortedOverwriteKeepsOldFile: an upload over an existing file that
// does not complete leaves the old version, whether the client sends ABOR
// in the middle, or dies so that its TCP connection ends without a TLS
// close_notify (FIN, or RST). No temporary file is left behind, and the
// session keeps working.
func TestAbortedOverwriteKeepsOldFile(t *testing.T) {
	t.Parallel()
	type ending int
	const (
		abor ending = iota
		finNoCloseNotify
		rst
	)
	endings := []struct {
		name string
		how  ending
	}{{"ABOR", abor}, {"FIN-without-close_notify", finNoCloseNotify}, {"RST", rst}}
	for _, v := range versions {
		for _, e := range endings {
			t.Run(tls.VersionName(v)+"/"+e.name, func(t *testing.T) {
				t.Parallel()
				s := ftpstest.NewServer(t, ftpstest.Options{})
				home := s.Home(user)
				old := testutil.Payload(300000, 50)
				path := testutil.WriteFile(t, home, "doc.bin", old)
				cfg := s.ClientTLS()
				cfg.MinVersion, cfg.MaxVersion = v, v
				c := s.Login(t, cfg)

				addr := c.Pasv()
				c.Send("STOR doc.bin")
				tc := c.OpenData(addr)
				newData := testutil.Payload(8<<20, 51)
				switch e.how {
				case abor:
					// Keep writing (bounded in time) until the server
					// cuts the data connection; ABOR once some data
					// is through.
					done := make(chan error, 1)
					go func() {
						stop := time.Now().Add(15 * time.Second)
						for off := 0; time.Now().Before(stop); off = (off + 64<<10) % len(newData) {
							if _, err := tc.Write(newData[off : off+64<<10]); err != nil {
								done <- nil
								return
							}
						}
						done <- errors.New("the server never cut the data connection after ABOR")
					}()
					s.Log.Wait(t, `msg=command .* cmd=STOR`, 1, 5*time.Second)
					time.Sleep(50 * time.Millisecond)
					c.Abort()
					if err := <-done; err != nil {
						t.Fatal(err)
					}
				case finNoCloseNotify, rst:
					if _, err := tc.Write(newData[:100000]); err != nil {
						t.Fatal(err)
					}
					raw := tc.NetConn().(*net.TCPConn)
					if e.how == rst {
						raw.SetLinger(0)
					} else {
						// Drain what the server sent (a TLS 1.3
						// ticket): closing with unread data would
						// send an RST instead of a FIN.
						raw.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
						io.Copy(io.Discard, raw)
					}
					raw.Close() // no close_notify
					code, msg := c.Read()
					if code != 426 {
						t.Errorf("upload cut without close_notify: %d %q, want 426", code, msg)
					}
				}
				testutil.AssertContent(t, path, old)
				testutil.AssertDirHolds(t, home, "doc.bin")

				// The session goes on, and a complete upload replaces
				// the file.
				c.Cmd(200, "NOOP")
				c.Xfer("STOR doc.bin", newData[:200000])
				testutil.AssertContent(t, path, newData[:200000])
				testutil.AssertDirHolds(t, home, "doc.bin")
			})
		}
	}
}
