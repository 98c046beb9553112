package test

// Tests of ftpsd run as a service: real "ftpsd serve" processes (the binary
// that ftpsdproc builds, run as nobody when the tests run as root), driven
// by signals, "ftpsd reload", rewritten configuration files and real
// clients, and judged by their replies, files and logs.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpsd/ftpsd/test/acmetest"
	"github.com/ftpsd/ftpsd/test/ftpsdproc"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// Messages of the daemon that the tests wait for.
const (
	msgReloaded      = "configuration reloaded"
	msgReloadRefused = "configuration reload refused; the configuration in force is kept"
	msgReloading     = "reloading configuration"
)

// account is a [[users]] entry of a service configuration.
type account struct {
	name, pass, hash string
	home             string // relative to the config's directory; default home/<name>
	disabled         bool
	extra            []string // more lines of the entry, e.g. limits
}

// newAccount hashes pass once, so that rewriting a file leaves the entry
// unchanged.
func newAccount(name, pass string) account {
	return account{name: name, pass: pass, hash: ftpstest.CheapHash(pass)}
}

// svcConfig is a service's configuration file: the minimum to serve on
// loopback with a self-signed certificate and a JSON log, plus what a test
// adds.
type svcConfig struct {
	listen      string // default "127.0.0.1:0"; the real address is logged
	ports       string // passive.ports: a restart-only key, kept by every copy
	maxFailures int    // auth.max_failures; default 1000: tests' wrong passwords must ban nobody
	server      []string
	auth        []string
	log         []string
	users       []account
	tail        string // appended verbatim
}

// newSvcConfig picks a random passive range of 20 ports in 10000-30019,
// below Linux's default ephemeral range (32768-60999), so that outgoing
// connections rarely take them.
func newSvcConfig(users ...account) svcConfig {
	first := 10000 + mrand.IntN(20000)
	return svcConfig{ports: fmt.Sprintf("%d-%d", first, first+19), users: users}
}

// withUsers returns a copy of c with other users.
func (c svcConfig) withUsers(users ...account) svcConfig {
	c.users = users
	return c
}

// withServer returns a copy of c with more [server] lines.
func (c svcConfig) withServer(lines ...string) svcConfig {
	c.server = append(slices.Clone(c.server), lines...)
	return c
}

func (c svcConfig) String() string {
	var b strings.Builder
	lines := func(ls []string) {
		for _, l := range ls {
			b.WriteString(l + "\n")
		}
	}
	fmt.Fprintf(&b, "[server]\nlisten = %q\nstate_dir = \"state\"\n", cmp.Or(c.listen, "127.0.0.1:0"))
	lines(c.server)
	fmt.Fprintf(&b, "\n[passive]\nports = %q\n\n[tls]\nmode = \"self-signed\"\n", c.ports)
	fmt.Fprintf(&b, "\n[auth]\nfailure_delay = \"1ms\"\nmax_failures = %d\n", cmp.Or(c.maxFailures, 1000))
	lines(c.auth)
	b.WriteString("\n[log]\nformat = \"json\"\n")
	lines(c.log)
	for _, u := range c.users {
		fmt.Fprintf(&b, "\n[[users]]\nname = %q\npassword_hash = %q\nhome = %q\npermissions = [\"all\"]\n",
			u.name, u.hash, cmp.Or(u.home, "home/"+u.name))
		if u.disabled {
			b.WriteString("disabled = true\n")
		}
		lines(u.extra)
	}
	b.WriteString(c.tail)
	return b.String()
}

// service is a running "ftpsd serve" with its own directory, which holds
// the config file, the state directory and the homes.
type service struct {
	*ftpsdproc.Proc
	bin  string
	dir  string // owned by the server's user
	path string // the config file
	env  []string
	pool *x509.CertPool // trusts the server's self-signed certificate
}

// startService writes c into a new directory and starts the server on it.
func startService(t *testing.T, c svcConfig, env ...string) *service {
	t.Helper()
	s := &service{bin: ftpsdproc.Build(t), dir: t.TempDir(), env: env}
	s.path = filepath.Join(s.dir, "ftpsd.toml")
	s.write(t, c)
	if err := ftpsdproc.Own(s.dir); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	return s
}

// start starts the server (again) on the service's config.
func (s *service) start(t *testing.T) {
	t.Helper()
	p, err := ftpsdproc.Start(t, s.bin, s.path, ftpsdproc.Options{Env: s.env})
	if err != nil {
		t.Fatal(err)
	}
	s.Proc = p
	pem, err := os.ReadFile(s.caFile())
	if err != nil {
		t.Fatal(err)
	}
	s.pool = x509.NewCertPool()
	if !s.pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", s.caFile())
	}
}

// caFile is the self-signed certificate serve keeps in its state directory.
func (s *service) caFile() string {
	return filepath.Join(s.dir, "state", "tls", "self-signed.crt")
}

// write replaces the config file.
func (s *service) write(t *testing.T, c svcConfig) {
	t.Helper()
	s.writeText(t, c.String())
}

func (s *service) writeText(t *testing.T, text string) {
	t.Helper()
	if err := os.WriteFile(s.path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// home is the home directory of a user.
func (s *service) home(name string) string { return filepath.Join(s.dir, "home", name) }

// put writes a file into a user's home, owned by the server's user.
func (s *service) put(t *testing.T, name, file string, data []byte) {
	t.Helper()
	p := testutil.WriteFile(t, s.home(name), file, data)
	if err := ftpsdproc.Own(p); err != nil {
		t.Fatal(err)
	}
}

// dial opens a control connection.
func (s *service) dial(t *testing.T) *ftpstest.Conn {
	t.Helper()
	return ftpstest.Dial(t, s.Addr)
}

// login logs in (TLS, PBSZ, PROT P) and fails the test otherwise.
func (s *service) login(t *testing.T, name, pass string) *ftpstest.Conn {
	t.Helper()
	c := s.dial(t)
	c.Login(ftpstest.ClientTLS(s.pool), name, pass)
	return c
}

// tryLogin sends USER and PASS over TLS and returns the reply to PASS.
func (s *service) tryLogin(t *testing.T, name, pass string) (int, string) {
	t.Helper()
	c := s.dial(t)
	defer c.Close()
	c.AuthTLS(ftpstest.ClientTLS(s.pool))
	c.Cmd(331, "USER "+name)
	c.Send("PASS " + pass)
	return c.Read()
}

// signal sends sig to the server.
func (s *service) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.Signal(sig); err != nil {
		t.Fatalf("kill -%v %d: %v", sig, s.PID, err)
	}
}

// reload sends SIGHUP and waits until the server logs the reload applied.
func (s *service) reload(t *testing.T) logRec {
	t.Helper()
	m := s.Len()
	s.signal(t, syscall.SIGHUP)
	return s.await(t, m, msgIs(msgReloaded))
}

// ftpsd runs a command of the binary in the service's directory; see
// runFtpsd.
func (s *service) ftpsd(t *testing.T, asRoot bool, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runFtpsd(t, s.bin, s.dir, asRoot, args...)
}

// runFtpsd runs a command of the binary in dir, as the server's user (with
// asRoot, as the test's own user: root, to see the refusal), and returns
// its output and exit code.
func runFtpsd(t *testing.T, bin, dir string, asRoot bool, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := ftpsdproc.Command(ctx, bin, args...)
	if asRoot {
		cmd.SysProcAttr = nil
	}
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ftpsd %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ ftpsd %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), out.String(), errb.String())
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// logRec is one JSON log record of the server, and its line number.
type logRec struct {
	line  int
	attrs map[string]any
}

func (r logRec) str(key string) string {
	s, _ := r.attrs[key].(string)
	return s
}

// num is a numeric attribute; ok is false when it is missing or not a
// JSON number.
func (r logRec) num(key string) (float64, bool) {
	f, ok := r.attrs[key].(float64)
	return f, ok
}

func msgIs(msg string) func(logRec) bool {
	return func(r logRec) bool { return r.str("msg") == msg }
}

// msgOf matches msg logged for the user name (a session's lines carry it
// from the login on).
func msgOf(msg, name string) func(logRec) bool {
	return func(r logRec) bool { return r.str("msg") == msg && r.str("user") == name }
}

// records are the JSON records logged from line from on.
func (s *service) records(from int) []logRec {
	var recs []logRec
	for i, line := range s.Lines(from) {
		var attrs map[string]any
		if json.Unmarshal([]byte(line), &attrs) == nil {
			recs = append(recs, logRec{from + i, attrs})
		}
	}
	return recs
}

// count is the number of records from line from on that match.
func (s *service) count(from int, match func(logRec) bool) int {
	n := 0
	for _, r := range s.records(from) {
		if match(r) {
			n++
		}
	}
	return n
}

// logWait bounds every wait for a log line.
const logWait = 20 * time.Second

// await waits for a record from line from on that matches, and fails the
// test if none comes within logWait.
func (s *service) await(t *testing.T, from int, match func(logRec) bool) logRec {
	t.Helper()
	var got logRec
	i, ok := s.WaitLine(from, logWait, func(line string) bool {
		var attrs map[string]any
		if json.Unmarshal([]byte(line), &attrs) != nil {
			return false
		}
		got = logRec{attrs: attrs}
		return match(got)
	})
	if !ok {
		t.Fatalf("the server did not log the expected line within %v (exited: %t); its log from line %d:\n%s",
			logWait, s.Exited(), from, strings.Join(s.Lines(from), "\n"))
	}
	got.line = i
	return got
}

// curlRun is a curl process running in the background.
type curlRun struct {
	stderr   bytes.Buffer
	out      bytes.Buffer // standard output, when piped
	received atomic.Int64 // bytes of out so far
	done     chan error
}

// throttle is the rate of the transfers in TestServiceReloadDuringDownload.
const throttle = 256 << 10 // bytes per second

// startCurl starts curl over FTPS with TLS 1.3 (curl resumes the control
// session on data connections only there) and --limit-rate 256k. With
// pipe, its standard output is read at that rate too: curl's own limit
// does not hold once the kernel has buffered the whole download (it then
// reads all that TLS has pending in one go), while a full pipe stops it.
func startCurl(t *testing.T, s *service, pipe bool, args ...string) *curlRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	t.Cleanup(cancel)
	args = append([]string{"--ssl-reqd", "--cacert", s.caFile(), "--tlsv1.3", "--user", user + ":" + pass,
		"--limit-rate", "256k", "--silent", "--show-error", "--max-time", "50"}, args...)
	cmd := exec.CommandContext(ctx, needTool(t, "curl"), args...)
	r := &curlRun{done: make(chan error, 1)}
	cmd.Stderr = &r.stderr
	var stdout io.Reader
	if pipe {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		if stdout != nil {
			start, buf := time.Now(), make([]byte, 16<<10)
			for {
				n, err := stdout.Read(buf)
				r.out.Write(buf[:n])
				total := r.received.Add(int64(n))
				if err != nil {
					break
				}
				time.Sleep(time.Until(start.Add(time.Duration(total) * time.Second / throttle)))
			}
		}
		r.done <- cmd.Wait()
	}()
	return r
}

// TestServiceReloadDuringDownload: a SIGHUP in the middle of throttled
// curl transfers neither cuts nor corrupts them. The kernel buffers a
// whole 1.5 MiB download on loopback, so the server may be done with the
// RETR long before curl; a throttled upload keeps a transfer running in
// the server itself across the reload.
func TestServiceReloadDuringDownload(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	c := newSvcConfig(newAccount(user, pass))
	s := startService(t, c)
	down, up := testutil.Payload(1536<<10, 31), testutil.Payload(1536<<10, 32)
	s.put(t, user, "down.bin", down)
	src := testutil.WriteFile(t, t.TempDir(), "up.bin", up)
	stored := filepath.Join(s.home(user), "up.bin")

	// 1.5 MiB at 256 KiB/s each: six seconds.
	dl := startCurl(t, s, true, "--output", "-", "ftp://"+s.Addr+"/down.bin")
	ul := startCurl(t, s, false, "--upload-file", src, "ftp://"+s.Addr+"/up.bin")
	// Reload once a sixth has moved both ways: the rest needs five more
	// seconds.
	testutil.WaitFor(t, 30*time.Second, "256 KiB downloaded", func() bool { return dl.received.Load() >= 256<<10 })
	testutil.WaitFor(t, 30*time.Second, "256 KiB uploaded", func() bool { fi, err := os.Stat(stored); return err == nil && fi.Size() >= 256<<10 })
	// A real change, in a section the running sessions use.
	s.write(t, c.withUsers(newAccount(user, pass), newAccount("bob", "bob-secret")).withServer(`idle_timeout = "4m"`))
	reloaded := s.reload(t)
	for name, r := range map[string]*curlRun{"download": dl, "upload": ul} {
		select {
		case err := <-r.done:
			t.Fatalf("the %s ended (%v) before the reload was logged: the test proves nothing\n%s", name, err, r.stderr.String())
		default:
		}
	}
	if n, _ := reloaded.num("users"); n != 2 {
		t.Errorf("reload logged users=%v, want 2", reloaded.attrs["users"])
	}

	for name, r := range map[string]*curlRun{"download": dl, "upload": ul} {
		if err := <-r.done; err != nil {
			t.Fatalf("curl %s: %v\n%s", name, err, r.stderr.String())
		}
	}
	if got := dl.out.Bytes(); testutil.Sum(got) != testutil.Sum(down) {
		t.Errorf("download: %d bytes sha256 %s, want %d bytes sha256 %s", len(got), testutil.Sum(got)[:16], len(down), testutil.Sum(down)[:16])
	}
	testutil.AssertContent(t, stored, up)
	for _, op := range []string{"RETR /down.bin", "STOR /up.bin"} {
		x := s.await(t, 0, func(r logRec) bool { return r.str("msg") == "transfer" && r.str("op") == op })
		if code, _ := x.num("code"); code != 226 {
			t.Errorf("%s answered %v, want 226", op, x.attrs["code"])
		}
		if op == "STOR /up.bin" && x.line < reloaded.line {
			t.Errorf("the upload ended (line %d) before the reload (line %d)", x.line, reloaded.line)
		}
	}
}

// TestServiceReloadUsers: a reload adds, changes, removes and disables
// users in the running process; sessions of removed and disabled users
// end with a 421 at once, others go on.
func TestServiceReloadUsers(t *testing.T) {
	t.Parallel()
	alice, bob, carol, erin := newAccount(user, pass), newAccount("bob", "bob-old"), newAccount("carol", "carol-secret"), newAccount("erin", "erin-secret")
	c := newSvcConfig(alice, bob, carol, erin)
	s := startService(t, c)
	stay := s.login(t, alice.name, alice.pass)
	gone := map[string]*ftpstest.Conn{
		carol.name: s.login(t, carol.name, carol.pass),
		erin.name:  s.login(t, erin.name, erin.pass),
	}
	pid := s.PID

	bob2, dave, erin2 := newAccount("bob", "bob-new"), newAccount("dave", "dave-secret"), erin
	erin2.disabled = true
	s.write(t, c.withUsers(alice, bob2, erin2, dave)) // carol removed
	r := s.reload(t)
	if n, _ := r.num("users"); n != 3 {
		t.Errorf("users=%v, want 3 (alice, bob, dave)", r.attrs["users"])
	}
	if got := fmt.Sprint(r.attrs["users_removed_or_disabled"]); got != "[carol erin]" {
		t.Errorf("users_removed_or_disabled=%s, want [carol erin]", got)
	}
	if n, _ := r.num("sessions_closed"); n != 2 {
		t.Fatalf("sessions_closed=%v, want 2", r.attrs["sessions_closed"])
	}

	// The sessions were closed before the reload was logged: the 421 is
	// already there, then the end of the connection.
	for name, conn := range gone {
		code, msg, err := conn.TryRead()
		if err != nil || code != 421 || msg != "Your account was changed; log in again." {
			t.Errorf("%s's open session: %d %q %v, want 421 Your account was changed; log in again.", name, code, msg, err)
		}
		if code, msg, err := conn.TryRead(); err == nil {
			t.Errorf("%s's session still open after the 421: %d %q", name, code, msg)
		}
		s.await(t, 0, msgOf("session closed: user removed or disabled", name))
	}
	stay.Cmd(257, "PWD") // alice's session goes on

	s.login(t, dave.name, dave.pass).Cmd(221, "QUIT")
	if code, _ := s.tryLogin(t, bob.name, bob.pass); code != 530 {
		t.Errorf("bob with his old password: %d, want 530", code)
	}
	s.login(t, bob2.name, bob2.pass).Cmd(221, "QUIT")
	for _, u := range []account{carol, erin} {
		if code, _ := s.tryLogin(t, u.name, u.pass); code != 530 {
			t.Errorf("%s (removed or disabled) logging in: %d, want 530", u.name, code)
		}
	}

	// The same process did it all: no restart.
	b, err := os.ReadFile(filepath.Join(s.dir, "state", "ftpsd.pid"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) || s.Exited() {
		t.Errorf("pid file %q (%v), exited %t; want the pid %d still running", b, err, s.Exited(), pid)
	}
	if n := s.count(0, msgIs("listening")); n != 1 {
		t.Errorf("%d \"listening\" lines, want 1", n)
	}
}

// lineOf is the 1-based number of the first line of text containing sub.
func lineOf(text, sub string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	return 0
}

// TestServiceReloadRefusesBrokenFile: a file that fails validation is
// refused with one ERROR line naming the file and the problem; the server
// keeps serving its old users, and the corrected file is applied.
func TestServiceReloadRefusesBrokenFile(t *testing.T) {
	t.Parallel()
	alice, newbie := newAccount(user, pass), newAccount("newbie", "newbie-secret")
	c := newSvcConfig(alice)
	s := startService(t, c)
	good := c.withUsers(alice, newbie)
	notDir := filepath.Join(s.dir, "not-a-dir")
	if err := os.WriteFile(notDir, []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	newbieHomeFile := newbie
	newbieHomeFile.home = "not-a-dir"
	withTail := good
	withTail.tail = "\nthis is not toml\n"

	tests := []struct {
		name string
		conf svcConfig
		// want is what err must contain, given the file's text.
		want func(text string) string
	}{
		{"unitless duration", good.withServer("login_timeout = 60"), func(text string) string {
			return fmt.Sprintf("%s:%d: server.login_timeout: a duration needs a unit", s.path, lineOf(text, "login_timeout"))
		}},
		{"unknown key", good.withServer(`baner = "hello"`), func(string) string {
			return s.path + `: unknown key "server.baner"`
		}},
		{"home is a file", c.withUsers(alice, newbieHomeFile), func(string) string {
			return fmt.Sprintf("%s: users %q: home: %q is not a directory", s.path, newbie.name, notDir)
		}},
		{"invalid TOML", withTail, func(text string) string {
			return fmt.Sprintf("%s:%d:", s.path, lineOf(text, "this is not toml"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.conf.String()
			s.writeText(t, text)
			m := s.Len()
			s.signal(t, syscall.SIGHUP)
			r := s.await(t, m, msgIs(msgReloadRefused))
			want := tt.want(text)
			if r.str("level") != "ERROR" || r.str("file") != s.path || !strings.Contains(r.str("err"), want) {
				t.Errorf("refusal logged as %v, want level ERROR, file %s, err containing %q", r.attrs, s.path, want)
			}
			// Still serving, with the users in force.
			s.login(t, alice.name, alice.pass).Cmd(221, "QUIT")
			if code, _ := s.tryLogin(t, newbie.name, newbie.pass); code != 530 {
				t.Errorf("newbie from the refused file logged in: %d, want 530", code)
			}
			isError := func(r logRec) bool { return r.str("level") == "ERROR" }
			if n := s.count(m, isError); n != 1 {
				t.Errorf("%d ERROR lines for one refused reload, want 1:\n%s", n, strings.Join(s.Lines(m), "\n"))
			}
			if n := s.count(m, msgIs(msgReloaded)); n != 0 {
				t.Errorf("a refused file was logged as reloaded")
			}
		})
	}

	s.write(t, good)
	s.reload(t)
	s.login(t, newbie.name, newbie.pass).Cmd(221, "QUIT")
	s.login(t, alice.name, alice.pass).Cmd(221, "QUIT")
}

// TestServiceReloadKeepsRestartOnlyKeys: a new server.listen is not
// applied by a reload (a WARN says a restart is needed) while the other
// changes of the same file, in the same table too, are.
func TestServiceReloadKeepsRestartOnlyKeys(t *testing.T) {
	t.Parallel()
	alice, newbie := newAccount(user, pass), newAccount("newbie", "newbie-secret")
	c := newSvcConfig(alice)
	s := startService(t, c)
	c2 := c.withUsers(alice, newbie).withServer(`banner = "reloaded banner"`)
	c2.listen = fmt.Sprintf("127.0.0.1:%d", acmetest.FreePort(t))
	s.write(t, c2)
	m := s.Len()
	s.reload(t)

	warn := s.await(t, m, msgIs("restart needed for server.listen; the value in force is kept"))
	if warn.str("level") != "WARN" || warn.str("in_force") != "127.0.0.1:0" || warn.str("configured") != c2.listen {
		t.Errorf("restart warning %v, want WARN in_force 127.0.0.1:0 configured %s", warn.attrs, c2.listen)
	}
	restart := func(r logRec) bool { return strings.HasPrefix(r.str("msg"), "restart needed") }
	if n := s.count(m, restart); n != 1 {
		t.Errorf("%d restart warnings, want 1 (server.listen)", n)
	}

	// The old port serves the new banner and the new user.
	raw, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("old port %s: %v", s.Addr, err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	_, greeting, err := textproto.NewConn(raw).ReadResponse(220)
	raw.Close()
	if err != nil || greeting != "reloaded banner" {
		t.Errorf("greeting %q (%v), want the reloaded banner", greeting, err)
	}
	s.login(t, newbie.name, newbie.pass).Cmd(221, "QUIT")
	s.login(t, alice.name, alice.pass).Cmd(221, "QUIT")
	// Nothing listens on the configured one.
	if conn, err := net.DialTimeout("tcp", c2.listen, 2*time.Second); err == nil {
		conn.Close()
		t.Errorf("%s accepts connections: the reload applied server.listen", c2.listen)
	}
}

// TestServiceBanSurvivesReloadAndRestart: failure counts survive a
// reload, and an address banned for failed logins stays banned, even with
// the right password, after a restart on the same state directory and
// after a reload.
func TestServiceBanSurvivesReloadAndRestart(t *testing.T) {
	t.Parallel()
	alice, newbie := newAccount(user, pass), newAccount("newbie", "newbie-secret")
	c := newSvcConfig(alice)
	c.maxFailures = 2
	c.auth = []string{`failure_window = "10m"`, `ban_duration = "10m"`}
	s := startService(t, c)

	if code, msg := s.tryLogin(t, user, "wrong"); code != 530 {
		t.Fatalf("first wrong password: %d %q, want 530", code, msg)
	}
	s.write(t, c.withUsers(alice, newbie))
	s.reload(t)
	// The second failure bans only if the reload kept the first; it may
	// be answered with the ban itself.
	if code, msg := s.tryLogin(t, user, "wrong"); code != 530 && code != 421 {
		t.Fatalf("second wrong password: %d %q, want 530 or 421", code, msg)
	}
	s.await(t, 0, msgIs("login ban started"))
	banned := func(when string) {
		t.Helper()
		code, msg := s.tryLogin(t, user, pass)
		if code != 421 || msg != "Too many failed logins; try again later." {
			t.Errorf("%s: right password answered %d %q, want 421 Too many failed logins; try again later.", when, code, msg)
		}
	}
	banned("banned")

	// No reload since the ban: only the save at shutdown can carry it.
	if code := s.Stop(); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "state", "bans.json")); err != nil {
		t.Fatalf("no bans file after the shutdown: %v", err)
	}
	s.start(t)
	restored := s.await(t, 0, msgIs("restored login bans and failure counts"))
	if n, _ := restored.num("entries"); n < 1 {
		t.Errorf("restored %v entries, want at least 1", restored.attrs["entries"])
	}
	banned("after a restart")

	s.write(t, c.withUsers(alice))
	s.reload(t)
	banned("after a restart and a reload")
}

// TestServiceReloadCommand: "ftpsd reload" signals the running server
// when the file is valid, and refuses without signalling when it is not.
func TestServiceReloadCommand(t *testing.T) {
	t.Parallel()
	alice, newbie := newAccount(user, pass), newAccount("newbie", "newbie-secret")
	c := newSvcConfig(alice)
	s := startService(t, c)

	s.write(t, c.withUsers(alice, newbie))
	m := s.Len()
	out, _, code := s.ftpsd(t, false, "reload", "-config", s.path)
	if want := fmt.Sprintf("sent SIGHUP to ftpsd (pid %d)", s.PID); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("ftpsd reload: exit %d, stdout %q; want 0 and %q", code, out, want)
	}
	s.await(t, m, msgIs(msgReloaded))
	s.login(t, newbie.name, newbie.pass).Cmd(221, "QUIT")

	s.write(t, c.withUsers(alice).withServer(`baner = "typo"`))
	m = s.Len()
	out, errOut, code := s.ftpsd(t, false, "reload", "-config", s.path)
	for _, want := range []string{s.path + `: unknown key "server.baner"`, "ftpsd: not reloaded: the server keeps its configuration"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("ftpsd reload of a broken file: stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != 1 || out != "" {
		t.Errorf("ftpsd reload of a broken file: exit %d, stdout %q; want 1 and nothing", code, out)
	}
	// No signal came: a reload would be logged at once.
	if i, ok := s.WaitLine(m, time.Second, func(l string) bool { return strings.Contains(l, msgReloading) }); ok {
		t.Errorf("the server reloaded after a refused \"ftpsd reload\": %s", s.Lines(i)[0])
	}
	s.login(t, newbie.name, newbie.pass).Cmd(221, "QUIT")
}

// TestServiceRunsUnprivileged: as root the binary refuses to serve; run as
// nobody it serves as nobody, without capabilities, and uploads belong to
// nobody.
func TestServiceRunsUnprivileged(t *testing.T) {
	t.Parallel()
	if !ftpsdproc.AsOther() {
		t.Skip("the test does not run as root: it cannot start ftpsd as root or as another user")
	}
	c := newSvcConfig(newAccount(user, pass))
	s := startService(t, c)

	_, errOut, code := s.ftpsd(t, true, "serve", "-config", s.path)
	if code != 1 || !strings.HasPrefix(errOut, "ftpsd: refusing to run as root: ") {
		t.Errorf("serve as root: exit %d, stderr %q; want 1 and \"ftpsd: refusing to run as root: ...\"", code, errOut)
	}
	for _, way := range []string{"docs/deploy/ftpsd.service", "setcap cap_net_bind_service=+ep", "a port above 1023"} {
		if !strings.Contains(errOut, way) {
			t.Errorf("the refusal does not mention %q:\n%s", way, errOut)
		}
	}

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PID))
	if err != nil {
		t.Fatal(err)
	}
	nobody := strconv.Itoa(ftpsdproc.Nobody)
	want := map[string][]string{
		"Uid:":    {nobody, nobody, nobody, nobody}, // real, effective, saved, file system
		"Gid:":    {nobody, nobody, nobody, nobody},
		"CapEff:": {"0000000000000000"},
		"CapPrm:": {"0000000000000000"},
	}
	for line := range strings.Lines(string(status)) {
		f := strings.Fields(line)
		if len(f) > 0 && want[f[0]] != nil {
			if !slices.Equal(f[1:], want[f[0]]) {
				t.Errorf("/proc/%d/status: %s %v, want %v", s.PID, f[0], f[1:], want[f[0]])
			}
			delete(want, f[0])
		}
	}
	if len(want) > 0 {
		t.Errorf("/proc/%d/status lacks %v", s.PID, want)
	}

	conn := s.login(t, user, pass)
	conn.Cmd(200, "TYPE I")
	conn.Xfer("STOR up.bin", testutil.Payload(1000, 7))
	for _, p := range []string{filepath.Join(s.home(user), "up.bin"), filepath.Join(s.dir, "state", "ftpsd.pid")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != ftpsdproc.Nobody || st.Gid != ftpsdproc.Nobody {
			t.Errorf("%s is owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, ftpsdproc.Nobody, ftpsdproc.Nobody)
		}
	}
}

// xferEntry is one xferlog(5) line: the ctime(3) date, then 13 fields.
type xferEntry struct {
	when   time.Time
	fields []string // transfer-time ... completion-status
}

// The fields of an xferEntry, after the date.
const (
	xfSecs = iota
	xfHost
	xfBytes
	xfPath
	xfType
	xfAction
	xfDirection
	xfAccess
	xfUser
	xfService
	xfAuthMethod
	xfAuthID
	xfStatus
	xfFields
)

func parseXferlog(line string) (xferEntry, error) {
	// The date is ctime's fixed 24 characters ("Wed Dec  2 10:01:02 2026").
	if len(line) < 25 || line[24] != ' ' {
		return xferEntry{}, fmt.Errorf("no 24-character date: %q", line)
	}
	when, err := time.ParseInLocation(time.ANSIC, line[:24], time.Local)
	if err != nil {
		return xferEntry{}, err
	}
	f := strings.Fields(line[25:])
	if len(f) != xfFields {
		return xferEntry{}, fmt.Errorf("%d fields after the date, want %d: %q", len(f), xfFields, line)
	}
	return xferEntry{when, f}, nil
}

// TestServiceXferlog: a complete download and an aborted upload each get
// one xferlog(5) line, field by field; a listing gets none.
func TestServiceXferlog(t *testing.T) {
	t.Parallel()
	c := newSvcConfig(newAccount(user, pass))
	c.log = []string{`xferlog = "xferlog"`}
	s := startService(t, c)
	start := time.Now()
	dl := testutil.Payload(100_000, 8)
	s.put(t, user, "dl file.bin", dl)

	conn := s.login(t, user, pass)
	conn.Cmd(200, "TYPE I")
	conn.Xfer("MLSD", nil)
	conn.AssertRetr("dl file.bin", dl)

	// An upload aborted once the server has stored what was sent.
	const sent = 256 << 10
	addr := conn.Pasv()
	conn.Send("STOR up load.bin")
	dc := conn.OpenData(addr)
	if _, err := dc.Write(testutil.Payload(sent, 9)); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(s.home(user), "up load.bin")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(target); err == nil && fi.Size() == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not store the %d bytes sent within 10s", sent)
		}
	}
	conn.Abort()
	conn.Cmd(221, "QUIT")

	// Each line is written before the transfer's final reply: all there.
	b, err := os.ReadFile(filepath.Join(s.dir, "xferlog"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d xferlog lines, want 2 (RETR, STOR; not MLSD):\n%s", len(lines), b)
	}
	want := [][]string{
		// secs, host, bytes, path, type, action, direction, access, user, service, method, id, status
		{"", "127.0.0.1", strconv.Itoa(len(dl)), "/dl_file.bin", "b", "_", "o", "r", user, "ftp", "0", "*", "c"},
		{"", "127.0.0.1", strconv.Itoa(sent), "/up_load.bin", "b", "_", "i", "r", user, "ftp", "0", "*", "i"},
	}
	for i, line := range lines {
		e, err := parseXferlog(line)
		if err != nil {
			t.Errorf("xferlog line %d: %v", i+1, err)
			continue
		}
		if e.when.Before(start.Truncate(time.Second)) || e.when.After(time.Now()) {
			t.Errorf("xferlog line %d: date %v, not between the test's start %v and now", i+1, e.when, start)
		}
		if secs, err := strconv.Atoi(e.fields[xfSecs]); err != nil || secs < 1 {
			t.Errorf("xferlog line %d: transfer time %q, want whole seconds >= 1", i+1, e.fields[xfSecs])
		}
		for j := xfHost; j < xfFields; j++ {
			if e.fields[j] != want[i][j] {
				t.Errorf("xferlog line %d field %d: %q, want %q\n%s", i+1, j+6, e.fields[j], want[i][j], line)
			}
		}
	}
}

// TestServiceReopensLogOnSIGUSR1: after logrotate renamed the log file,
// SIGUSR1 makes the server write a new file at the configured path.
func TestServiceReopensLogOnSIGUSR1(t *testing.T) {
	t.Parallel()
	c := newSvcConfig(newAccount(user, pass), newAccount("bob", "bob-secret"))
	c.log = []string{`file = "ftpsd.log"`}
	s := startService(t, c)
	path := filepath.Join(s.dir, "ftpsd.log")
	s.login(t, user, pass).Cmd(221, "QUIT")
	s.await(t, 0, msgOf("login", user))

	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	m := s.Len()
	s.signal(t, syscall.SIGUSR1)
	s.await(t, m, msgIs("log files reopened"))
	s.login(t, "bob", "bob-secret").Cmd(221, "QUIT")
	s.await(t, m, msgOf("login", "bob"))

	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// has reports whether a log file holds a record msg (of user, if set).
	has := func(text, msg, name string) bool {
		for line := range strings.Lines(text) {
			var r struct{ Msg, User string }
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == msg && (name == "" || r.User == name) {
				return true
			}
		}
		return false
	}
	rotated, current := read(path+".1"), read(path)
	for _, tc := range []struct {
		file, text, msg, user string
		want                  bool
	}{
		{"rotated", rotated, "listening", "", true},
		{"rotated", rotated, "login", user, true},
		{"rotated", rotated, "log files reopened", "", false},
		{"rotated", rotated, "login", "bob", false},
		{"current", current, "log files reopened", "", true},
		{"current", current, "login", "bob", true},
		{"current", current, "listening", "", false},
		{"current", current, "login", user, false},
	} {
		if has(tc.text, tc.msg, tc.user) != tc.want {
			t.Errorf("%s log file: has %q (user %q) = %t, want %t:\n%s", tc.file, tc.msg, tc.user, !tc.want, tc.want, tc.text)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o640 || int(st.Uid) != ftpsdproc.UID() {
		t.Errorf("new log file: mode %v owner %d, want 0640 owned by %d", fi.Mode().Perm(), st.Uid, ftpsdproc.UID())
	}
}

// goDuration matches what a time.Duration renders as in text.
var goDuration = regexp.MustCompile(`^-?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`)

// TestServiceJSONLog: in the JSON log every duration is a number of
// seconds, on every line, and "session closed" counts the bytes moved.
func TestServiceJSONLog(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := newSvcConfig(newAccount(user, pass))
	c.maxFailures = 2
	// Known durations, to tell seconds from another unit.
	c.server = []string{`shutdown_timeout = "7s"`}
	c.auth = []string{`ban_duration = "10m"`}
	c.log = []string{`level = "debug"`}
	s := startService(t, c)
	up, dl := testutil.Payload(300_001, 10), testutil.Payload(200_003, 11)
	s.put(t, user, "dl.bin", dl)

	conn := s.login(t, user, pass)
	conn.Cmd(200, "TYPE I")
	conn.Xfer("STOR up.bin", up)
	conn.AssertRetr("dl.bin", dl)
	conn.Cmd(221, "QUIT")
	closed := s.await(t, 0, msgOf("session closed", user))
	in, okIn := closed.num("bytes_in")
	out, okOut := closed.num("bytes_out")
	if !okIn || !okOut || in != float64(len(up)) || out != float64(len(dl)) {
		t.Errorf("session closed: bytes_in %v bytes_out %v, want %d and %d", closed.attrs["bytes_in"], closed.attrs["bytes_out"], len(up), len(dl))
	}

	// More lines with durations: a reload, a ban, the shutdown.
	s.reload(t)
	for range c.maxFailures {
		s.tryLogin(t, "mallory", "guess")
	}
	s.await(t, 0, msgIs("login ban started"))
	if code := s.Stop(); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}

	// Measured durations cannot exceed the test's own.
	elapsed := time.Since(start).Seconds()
	seen := map[string]int{}
	for i, line := range s.Lines(0) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("line %d is not JSON (%v): %s", i+1, err, line)
			continue
		}
		for _, k := range []string{"dur", "timeout", "delay"} {
			v, ok := rec[k]
			if !ok {
				continue
			}
			seen[k]++
			secs, num := v.(float64)
			if !num {
				t.Errorf("line %d: %s is %T %v, want a number of seconds: %s", i+1, k, v, v, line)
				continue
			}
			want := ""
			switch {
			case rec["msg"] == "shutting down" && k == "timeout":
				if secs != 7 {
					want = "7 (shutdown_timeout)"
				}
			case rec["msg"] == "login ban started" && k == "dur":
				if secs != 600 {
					want = "600 (ban_duration)"
				}
			case k == "dur" && (secs < 0 || secs > elapsed):
				want = fmt.Sprintf("seconds between 0 and %.1f (the test's time)", elapsed)
			}
			if want != "" {
				t.Errorf("line %d: %s = %v, want %s: %s", i+1, k, secs, want, line)
			}
		}
		walkStrings(rec, func(key, v string) {
			if goDuration.MatchString(v) {
				t.Errorf("line %d: %s = %q is a duration as text: %s", i+1, key, v, line)
			}
		})
	}
	// What the lines above must have produced, so the check was not vacuous.
	if seen["dur"] < 4 || seen["timeout"] < 1 {
		t.Errorf("saw dur %d times and timeout %d times, want >= 4 and >= 1", seen["dur"], seen["timeout"])
	}
}

// walkStrings calls f for every string in a decoded JSON value.
func walkStrings(v any, f func(key, s string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok {
				f(k, s)
			} else {
				walkStrings(e, f)
			}
		}
	case []any:
		for _, e := range v {
			walkStrings(map[string]any{"[]": e}, f)
		}
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants it.
func monotonicUsec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// TestServiceNotifiesSystemd: with NOTIFY_SOCKET set, the server tells the
// service manager READY=1 once it listens, RELOADING=1 (with the time)
// then READY=1 around a reload, and STOPPING=1 at shutdown.
func TestServiceNotifiesSystemd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if err := ftpsdproc.Own(sock); err != nil { // the server sends as its own user
		t.Fatal(err)
	}
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			select {
			case msgs <- string(buf[:n]):
			default: // more than the test waits for: the check below reports it
			}
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(logWait):
			t.Fatalf("no notification %s within %v", what, logWait)
			return ""
		}
	}

	s := startService(t, newSvcConfig(newAccount(user, pass)), "NOTIFY_SOCKET="+sock)
	if m := next("after the start"); m != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", m)
	}

	before := monotonicUsec(t)
	s.reload(t)
	m := next("at the reload")
	after := monotonicUsec(t)
	fields := strings.Split(m, "\n")
	if len(fields) != 2 || fields[0] != "RELOADING=1" || !strings.HasPrefix(fields[1], "MONOTONIC_USEC=") {
		t.Fatalf("reload notification %q, want RELOADING=1 and MONOTONIC_USEC=...", m)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(fields[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC %q: want CLOCK_MONOTONIC between the signal (%d) and its receipt (%d)", fields[1], before, after)
	}
	if m := next("after the reload"); m != "READY=1" {
		t.Errorf("notification after the reload %q, want READY=1", m)
	}

	s.signal(t, syscall.SIGTERM)
	if m := next("at the shutdown"); m != "STOPPING=1" {
		t.Errorf("notification at SIGTERM %q, want STOPPING=1", m)
	}
	if code, err := s.Wait(logWait); err != nil || code != 0 {
		t.Fatalf("after SIGTERM: exit %d, %v; want 0", code, err)
	}
	select {
	case m := <-msgs:
		t.Errorf("unexpected notification after STOPPING=1: %q", m)
	default:
	}
}

// TestServicePortBelow1024NeedsPrivilege: as an unprivileged user, a
// listen on port 21 fails with the ways to get the privilege.
func TestServicePortBelow1024NeedsPrivilege(t *testing.T) {
	t.Parallel()
	if ftpsdproc.AsOther() {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n <= 21 {
			t.Skipf("net.ipv4.ip_unprivileged_port_start is %d: every user may bind port 21", n)
		}
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:21")
		if err == nil {
			ln.Close()
			t.Skip("this user may bind port 21 (CAP_NET_BIND_SERVICE or a low ip_unprivileged_port_start)")
		}
		if !errors.Is(err, syscall.EACCES) {
			t.Skipf("binding port 21 fails otherwise than for privilege: %v", err)
		}
	}
	c := newSvcConfig(newAccount(user, pass))
	c.listen = "127.0.0.1:21"
	dir := t.TempDir()
	path := filepath.Join(dir, "ftpsd.toml")
	if err := os.WriteFile(path, []byte(c.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ftpsdproc.Own(dir); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runFtpsd(t, ftpsdproc.Build(t), dir, false, "serve", "-config", path)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{"server.listen: ", "ports below 1024 need a privilege", "docs/deploy/ftpsd.service",
		"setcap cap_net_bind_service=+ep", "a port above 1023"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
