package ftpstest

import (
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"testing"
	"time"
)

// Conn is a raw control connection for protocol tests: it sends exact
// command lines and reads whole (possibly multi-line) replies with
// net/textproto, so a test asserts codes, not timing.
type Conn struct {
	t   testing.TB
	raw net.Conn
	c   net.Conn
	tp  *textproto.Conn
	TLS *tls.Config // set by AuthTLS; data connections reuse it
}

// Dial connects and reads the 220 greeting.
func (s *Server) Dial(t testing.TB) *Conn {
	t.Helper()
	return dialFrom(t, s.Addr, "")
}

// Dial connects to the control port at addr, of any server (an ftpsd
// process too), and reads the 220 greeting.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	return dialFrom(t, addr, "")
}

// DialFrom is Dial from the local address ip (e.g. "127.0.0.2": every
// 127.x address is loopback), or from any address when ip is "".
func (s *Server) DialFrom(t testing.TB, ip string) *Conn {
	t.Helper()
	return dialFrom(t, s.Addr, ip)
}

// DialFrom connects to addr (a server of another process) from the
// local address ip.
func DialFrom(t testing.TB, addr, ip string) *Conn { return dialFrom(t, addr, ip) }

func dialFrom(t testing.TB, addr, ip string) *Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if ip != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	raw, err := d.Dial("tcp", addr)
	must(t, err)
	c := &Conn{t: t, raw: raw, c: raw, tp: textproto.NewConn(raw)}
	t.Cleanup(func() { raw.Close() })
	c.Expect(220)
	return c
}

// NewConn wraps a control connection the caller opened itself (from a
// chosen address, after a PROXY header...) and reads the 220 greeting.
func NewConn(t testing.TB, raw net.Conn) *Conn {
	t.Helper()
	c := &Conn{t: t, raw: raw, c: raw, tp: textproto.NewConn(raw)}
	t.Cleanup(func() { raw.Close() })
	c.Expect(220)
	return c
}

// DialTLS dials and runs AUTH TLS with the server's client configuration:
// the state before USER.
func (s *Server) DialTLS(t testing.TB) *Conn {
	t.Helper()
	c := s.Dial(t)
	c.AuthTLS(s.ClientTLS())
	return c
}

// Login dials and logs in as the server's first user (DefaultUser unless
// Options.Users says otherwise) with cfg: AUTH TLS, USER, PASS, PBSZ 0,
// PROT P.
func (s *Server) Login(t testing.TB, cfg *tls.Config) *Conn {
	t.Helper()
	c := s.Dial(t)
	c.Login(cfg, s.user.Name, s.user.Password)
	return c
}

// On returns the same connection reporting to t (for fuzz targets and
// subtests).
func (c *Conn) On(t testing.TB) *Conn {
	c2 := *c
	c2.t = t
	return &c2
}

// DialImplicit connects to the implicit-FTPS listener: TLS handshake with
// cfg first, then the 220 greeting.
func (s *Server) DialImplicit(t testing.TB, cfg *tls.Config) *Conn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", s.ImplicitAddr, 5*time.Second)
	must(t, err)
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("implicit TLS handshake: %v", err)
	}
	c := &Conn{t: t, raw: raw, c: tc, tp: textproto.NewConn(tc), TLS: cfg}
	c.Expect(220)
	return c
}

// Send writes one command line verbatim (CR LF added).
func (c *Conn) Send(line string) {
	c.t.Helper()
	c.raw.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// Read reads one reply and returns its code and text.
func (c *Conn) Read() (int, string) {
	c.t.Helper()
	c.raw.SetDeadline(time.Now().Add(20 * time.Second))
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// TryRead reads one reply, returning the error instead of failing the
// test (for tests that expect the server to close).
func (c *Conn) TryRead() (int, string, error) {
	c.raw.SetDeadline(time.Now().Add(20 * time.Second))
	return c.tp.ReadResponse(0)
}

// Expect reads one reply and fails the test unless it has code want.
func (c *Conn) Expect(want int) string {
	c.t.Helper()
	code, msg := c.Read()
	if code != want {
		c.t.Fatalf("got %d %q, want %d", code, msg, want)
	}
	return msg
}

// Cmd sends line and expects the reply code want.
func (c *Conn) Cmd(want int, line string) string {
	c.t.Helper()
	c.Send(line)
	return c.Expect(want)
}

// Abort sends ABOR while a transfer runs and expects its two replies: 426
// for the transfer, then 226 for the ABOR.
func (c *Conn) Abort() {
	c.t.Helper()
	c.Send("ABOR")
	c.Expect(426)
	c.Expect(226)
}

// AuthTLS runs AUTH TLS and the handshake with cfg.
func (c *Conn) AuthTLS(cfg *tls.Config) {
	c.t.Helper()
	c.Cmd(234, "AUTH TLS")
	tc := tls.Client(c.raw, cfg)
	c.raw.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.c, c.tp, c.TLS = tc, textproto.NewConn(tc), cfg
}

// Login does AUTH TLS, USER, PASS, PBSZ 0 and PROT P.
func (c *Conn) Login(cfg *tls.Config, user, pass string) {
	c.t.Helper()
	c.AuthTLS(cfg)
	c.Cmd(331, "USER "+user)
	c.Cmd(230, "PASS "+pass)
	c.Cmd(200, "PBSZ 0")
	c.Cmd(200, "PROT P")
}

// ControlState is the TLS state of the control connection.
func (c *Conn) ControlState() tls.ConnectionState {
	return c.c.(*tls.Conn).ConnectionState()
}

// LocalAddr is the client's end of the control connection.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// Close closes the connection.
func (c *Conn) Close() { c.raw.Close() }
