package ftpstest

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The client's side of active mode (PORT/EPRT): jlaffaye/ftp cannot do
// it, so tests listen themselves and let the server connect. The server
// stays the TLS server on the data connection (RFC 4217), so the client
// runs tls.Client on the connection it accepted.

// ActivePort is a client data port for active mode.
type ActivePort struct {
	t  testing.TB
	ln *net.TCPListener
}

// ListenActive listens on ip, port 0 (ip "" means the control
// connection's local address: the client address the server sees).
func (c *Conn) ListenActive(ip string) *ActivePort {
	c.t.Helper()
	if ip == "" {
		ip = c.raw.LocalAddr().(*net.TCPAddr).IP.String()
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	must(c.t, err)
	c.t.Cleanup(func() { ln.Close() })
	return &ActivePort{t: c.t, ln: ln.(*net.TCPListener)}
}

// Addr is the listening address.
func (a *ActivePort) Addr() netip.AddrPort { return a.ln.Addr().(*net.TCPAddr).AddrPort() }

// Close stops listening (a port the server then cannot reach).
func (a *ActivePort) Close() { a.ln.Close() }

// PORT is the PORT command for this port (IPv4 only).
func (a *ActivePort) PORT() string {
	a.t.Helper()
	ap := a.Addr()
	if !ap.Addr().Unmap().Is4() {
		a.t.Fatalf("PORT cannot carry %v", ap)
	}
	ip := ap.Addr().Unmap().As4()
	return fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", ip[0], ip[1], ip[2], ip[3], ap.Port()>>8, ap.Port()&0xff)
}

// EPRT is the EPRT command for this port.
func (a *ActivePort) EPRT() string {
	ap := a.Addr()
	proto := 2
	if ap.Addr().Unmap().Is4() {
		proto = 1
	}
	return fmt.Sprintf("EPRT |%d|%s|%d|", proto, ap.Addr().Unmap(), ap.Port())
}

// Accept waits up to wait for the server's data connection; with cfg
// non-nil it runs the TLS client handshake (which resumes the control
// session when cfg's cache holds its ticket). The handshake error is
// returned: a server that refuses the session may do so after the
// client finished.
func (a *ActivePort) Accept(wait time.Duration, cfg *tls.Config) (net.Conn, error) {
	a.t.Helper()
	a.ln.SetDeadline(time.Now().Add(wait))
	raw, err := a.ln.Accept()
	if err != nil {
		return nil, err
	}
	a.t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	if cfg == nil {
		return raw, nil
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return tc, err
	}
	return tc, nil
}

// AssertNoConnection fails the test if the server connects within wait.
func (a *ActivePort) AssertNoConnection(wait time.Duration) {
	a.t.Helper()
	a.ln.SetDeadline(time.Now().Add(wait))
	if c, err := a.ln.Accept(); err == nil {
		c.Close()
		a.t.Errorf("the server connected to %v", a.Addr())
	}
}

// XferActive is Xfer in active mode: it listens on the control
// connection's local address, sends mode (PORT or EPRT, built by
// ActivePort) expecting 200, sends line, accepts the server's data
// connection, runs the TLS client handshake with the connection's own
// config, and fails the test unless it resumed the control session.
func (c *Conn) XferActive(mode, line string, send []byte) []byte {
	t := c.t
	t.Helper()
	a := c.ListenActive("")
	if mode == "EPRT" {
		c.Cmd(200, a.EPRT())
	} else {
		c.Cmd(200, a.PORT())
	}
	c.Send(line)
	c.Expect(150)
	dc, err := a.Accept(20*time.Second, c.TLS)
	if err != nil {
		t.Fatalf("%s: active data connection: %v", line, err)
	}
	if !dc.(*tls.Conn).ConnectionState().DidResume {
		t.Errorf("%s: the active data connection did not resume the control TLS session", line)
	}
	return c.finishXfer(dc, line, send)
}
