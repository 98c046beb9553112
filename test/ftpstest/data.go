package ftpstest

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpsclient"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// The data connections of a Conn: passive mode, then a TLS client that
// resumes the control session.

// Pasv sends PASV and returns the advertised address.
func (c *Conn) Pasv() string {
	c.t.Helper()
	ap, err := ftpsclient.ParsePASV(c.Cmd(227, "PASV"))
	if err != nil {
		c.t.Fatal(err)
	}
	return ap.String()
}

// Epsv sends EPSV and returns the port.
func (c *Conn) Epsv() int {
	c.t.Helper()
	p, err := ftpsclient.ParseEPSV(c.Cmd(229, "EPSV"))
	if err != nil {
		c.t.Fatal(err)
	}
	return int(p)
}

// DialData opens a data connection to addr; with cfg non-nil it runs a
// TLS client handshake (which resumes if cfg's session cache allows).
func DialData(t testing.TB, addr string, cfg *tls.Config) (net.Conn, error) {
	t.Helper()
	raw, err := ftpsclient.Dial(context.Background(), addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	if cfg == nil {
		return raw, nil
	}
	tc, err := ftpsclient.Handshake(context.Background(), raw, cfg, 0)
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// Xfer runs one data command over PASV on the logged-in connection: it
// sends line, dials the data connection with the connection's own TLS
// config, uploads send when it is non-nil or else reads everything,
// closes the data connection with close_notify, and expects 150 then 226.
// It returns what the data connection carried, and fails the test unless
// the data connection resumed the control session.
func (c *Conn) Xfer(line string, send []byte) []byte {
	c.t.Helper()
	return c.XferWith(c.TLS, line, send)
}

// XferWith is Xfer with the data connection's TLS config cfg (FileZilla,
// for instance, uses another one than on its control connection). A cfg
// with SessionTicketsDisabled cannot resume, and is not required to.
func (c *Conn) XferWith(cfg *tls.Config, line string, send []byte) []byte {
	t := c.t
	t.Helper()
	addr := c.Pasv()
	c.Send(line)
	dc, err := DialData(t, addr, cfg)
	if err != nil {
		t.Fatalf("%s: data connection: %v", line, err)
	}
	c.Expect(150)
	if tc, ok := dc.(*tls.Conn); ok && !cfg.SessionTicketsDisabled && !tc.ConnectionState().DidResume {
		t.Errorf("%s: data connection did not resume the control TLS session", line)
	}
	return c.finishXfer(dc, line, send)
}

// finishXfer moves the data of line on the open data connection dc (sends
// send, or reads everything when send is nil), closes it and expects 226.
func (c *Conn) finishXfer(dc net.Conn, line string, send []byte) []byte {
	t := c.t
	t.Helper()
	var got []byte
	var err error
	if send != nil {
		if _, err := dc.Write(send); err != nil {
			t.Fatalf("%s: write data: %v", line, err)
		}
	} else if got, err = io.ReadAll(dc); err != nil {
		t.Fatalf("%s: read data: %v", line, err)
	}
	if err := dc.Close(); err != nil {
		t.Fatalf("%s: close data: %v", line, err)
	}
	c.Expect(226)
	return got
}

// AssertRetr downloads name with Xfer and fails the test unless it carried
// exactly want (compared by SHA-256, as testutil.AssertContent does).
func (c *Conn) AssertRetr(name string, want []byte) {
	c.t.Helper()
	if got := c.Xfer("RETR "+name, nil); testutil.Sum(got) != testutil.Sum(want) {
		c.t.Errorf("RETR %s: %d bytes sha256 %s, want %d bytes sha256 %s",
			name, len(got), testutil.Sum(got)[:16], len(want), testutil.Sum(want)[:16])
	}
}

// OpenData dials the data connection of a command already sent, to addr
// (from Pasv) with the connection's own TLS config, and expects the 150.
// It fails the test unless the data connection resumed the control
// session.
func (c *Conn) OpenData(addr string) *tls.Conn {
	c.t.Helper()
	dc, err := DialData(c.t, addr, c.TLS)
	if err != nil {
		c.t.Fatalf("data connection: %v", err)
	}
	c.Expect(150)
	tc := dc.(*tls.Conn)
	if !tc.ConnectionState().DidResume {
		c.t.Fatal("the data connection did not resume the control TLS session")
	}
	return tc
}
