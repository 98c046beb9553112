package ftps_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
)

// batchConn holds back what is written while batching and sends it in one
// write at flush: several TLS records reach the server in one segment, so
// crypto/tls reads them all at once and holds the later ones.
type batchConn struct {
	net.Conn
	batching bool
	buf      []byte
}

func (c *batchConn) Write(p []byte) (int, error) {
	if c.batching {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *batchConn) flush() error {
	c.batching = false
	_, err := c.Conn.Write(c.buf)
	c.buf = nil
	return err
}

// TestPipelinedCommands: a session waiting for its next command (with no
// read buffer, on the socket) answers commands that arrived together: in
// one TLS record, in several records of one segment, after a line longer
// than the read buffer, and in plain text before AUTH.
func TestPipelinedCommands(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	raw, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	bc := &batchConn{Conn: raw}
	tp := textproto.NewReader(bufio.NewReader(raw))
	expect := func(r *textproto.Reader, want int) {
		t.Helper()
		code, msg, err := r.ReadResponse(0)
		if err != nil || code != want {
			t.Fatalf("reply %d %q (%v), want %d", code, msg, err, want)
		}
	}
	send := func(w io.Writer, lines string) {
		t.Helper()
		if _, err := io.WriteString(w, lines); err != nil {
			t.Fatal(err)
		}
	}
	expect(tp, 220)
	send(raw, "NOOP\r\nSYST\r\nFEAT\r\n") // plain text, before AUTH
	expect(tp, 200)
	expect(tp, 215)
	expect(tp, 211)
	send(raw, "AUTH TLS\r\n")
	expect(tp, 234)
	tc := tls.Client(bc, s.ClientTLS())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := textproto.NewReader(bufio.NewReader(tc))
	u := ftpstest.DefaultUser
	send(tc, "USER "+u.Name+"\r\nPASS "+u.Password+"\r\nPBSZ 0\r\nPROT P\r\n") // one record
	expect(tr, 331)
	expect(tr, 230)
	expect(tr, 200)
	expect(tr, 200)

	bc.batching = true
	send(tc, "NOOP\r\n")
	send(tc, "SYST\r\n")
	send(tc, "PWD\r\n")
	if err := bc.flush(); err != nil {
		t.Fatal(err)
	}
	expect(tr, 200)
	expect(tr, 215)
	expect(tr, 257)

	long := "SIZE " + strings.Repeat("a", 6000) // beyond the 4 KiB read buffer
	send(tc, long+"\r\nNOOP\r\n")
	expect(tr, 553)
	expect(tr, 200)
	time.Sleep(50 * time.Millisecond) // idle, then a command split over two records
	send(tc, "NO")
	send(tc, "OP\r\n")
	expect(tr, 200)
	send(tc, "QUIT\r\n")
	expect(tr, 221)
}

// TestIdleTimeoutLoggedIn: a logged-in session that sends nothing is
// closed after idle_timeout with a 421.
func TestIdleTimeoutLoggedIn(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Server: func(c *ftps.Config) { c.IdleTimeout = 300 * time.Millisecond }})
	c := s.Login(t, s.ClientTLS())
	c.Cmd(200, "NOOP")
	start := time.Now()
	if msg := c.Expect(421); !strings.Contains(msg, "Timeout") {
		t.Errorf("421 %q, want the idle timeout", msg)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
}
