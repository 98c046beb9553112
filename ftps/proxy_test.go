package ftps_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/ftpsclient"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// The balancer of these tests is 127.0.0.9; the clients it announces are
// documentation addresses, which no test socket could have.
const (
	balancer   = "127.0.0.9"
	proxClient = "203.0.113.7"
	frontAddr  = "198.51.100.1" // the balancer's address the client connected to
)

// proxiedServer trusts only the balancer, with a short header timeout.
func proxiedServer(t *testing.T) *ftpstest.Server {
	return ftpstest.NewServer(t, ftpstest.Options{Implicit: true, Server: trustBalancer})
}

func trustBalancer(c *ftps.Config) {
	c.TrustedProxies = []string{balancer}
	c.ProxyHeaderTimeout = 300 * time.Millisecond
}

// The LOCAL forms HAProxy's health checks send: v2 LOCAL, v1 UNKNOWN.
var (
	localV2 = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
	localV1 = []byte("PROXY UNKNOWN\r\n")
)

// dialVia connects to addr from the local address src and sends pre (a
// PROXY header, or anything) first.
func dialVia(t *testing.T, addr, src string, pre []byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp4", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	if len(pre) > 0 {
		if _, err := c.Write(pre); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// assertClosedSilently fails unless the server closes c without sending
// a byte.
func assertClosedSilently(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v: want the connection closed without a byte", n, err)
	}
}

// TestProxyHeaderControl: through the real control listener, a PROXY
// header (v1 or v2) from a trusted proxy makes its source the session's
// client (who, the log); on the implicit listener too.
func TestProxyHeaderControl(t *testing.T) {
	t.Parallel()
	s := proxiedServer(t)
	tests := []struct {
		name     string
		implicit bool
		v        byte
		port     int
	}{
		{"v1", false, 1, 50001},
		{"v2", false, 2, 50002},
		{"v2 implicit", true, 2, 50003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := netip.AddrPortFrom(netip.MustParseAddr(proxClient), uint16(tt.port))
			pre := testutil.ProxyHeader(t, tt.v, src.String(), frontAddr+":21")
			var c *ftpstest.Conn
			if tt.implicit {
				raw := dialVia(t, s.ImplicitAddr, balancer, pre)
				tc := tls.Client(raw, s.ClientTLS())
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					t.Fatalf("implicit TLS after the PROXY header: %v", err)
				}
				c = ftpstest.NewConn(t, tc)
				c.Cmd(331, "USER alice")
				c.Cmd(230, "PASS alice-secret")
			} else {
				c = ftpstest.NewConn(t, dialVia(t, s.Addr, balancer, pre))
				c.Login(s.ClientTLS(), "alice", "alice-secret")
			}
			found := false
			for _, si := range s.FTPS().Sessions() {
				if si.Client == src && si.User == "alice" {
					found = true
				}
			}
			if !found {
				t.Errorf("ftpsd who does not list alice at %s: %+v", src, s.FTPS().Sessions())
			}
			c.Cmd(221, "QUIT")
			s.Log.Wait(t, `msg="session closed".* remote=`+strings.ReplaceAll(src.String(), ".", `\.`), 1, 5*time.Second)
		})
	}
}

// TestProxyHeaderRefused: with trusted_proxies set, a connection from any
// other source is closed without a byte, even with a well-formed header
// (never believed), and a trusted proxy's connection without a valid
// header in time is closed too.
func TestProxyHeaderRefused(t *testing.T) {
	t.Parallel()
	s := proxiedServer(t)
	tests := []struct {
		name   string
		source string
		pre    []byte
		log    string
	}{
		{"forged header from an untrusted source", "127.0.0.5", testutil.ProxyHeader(t, 2, proxClient+":50001", frontAddr+":21"),
			`level=WARN msg="connection refused: not from a trusted proxy \(server.trusted_proxies\)" source=127.0.0.5:`},
		{"direct connection from an untrusted source", "127.0.0.6", nil,
			`level=WARN msg="connection refused: not from a trusted proxy \(server.trusted_proxies\)" source=127.0.0.6:`},
		{"no header", balancer, []byte("AUTH TLS\r\n"),
			`level=WARN msg="connection refused: no valid PROXY header from a trusted proxy" source=127.0.0.9:\d+ err=.*PROXY`},
		{"header too late", balancer, nil,
			`level=WARN msg="connection refused: no valid PROXY header from a trusted proxy" source=127.0.0.9:\d+ err=.*PROXY`},
		{"malformed header", balancer, []byte("PROXY TCP4 1.2.3\r\n"),
			`level=WARN msg="connection refused: no valid PROXY header from a trusted proxy" source=127.0.0.9:\d+`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Log.Count(tt.log)
			assertClosedSilently(t, dialVia(t, s.Addr, tt.source, tt.pre))
			s.Log.Wait(t, tt.log, before+1, 5*time.Second)
		})
	}
	if n := len(s.FTPS().Sessions()); n != 0 {
		t.Errorf("%d sessions after refused connections, want 0", n)
	}
}

// TestProxyHeaderLocal: a LOCAL header (HAProxy's health checks) gets the
// greeting exchange as the balancer itself, logged at Debug only and not
// counted as a session in the metrics.
func TestProxyHeaderLocal(t *testing.T) {
	t.Parallel()
	s, reg := metricsServer(t, ftpstest.Options{Server: trustBalancer})
	for _, tt := range []struct {
		name string
		pre  []byte
	}{{"v2 LOCAL", localV2}, {"v1 UNKNOWN", localV1}} {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Log.Count(`level=DEBUG msg="session closed" session=\d+ remote=127\.0\.0\.9:`)
			c := ftpstest.NewConn(t, dialVia(t, s.Addr, balancer, tt.pre))
			c.Cmd(221, "QUIT")
			s.Log.Wait(t, `level=DEBUG msg="session closed" session=\d+ remote=127\.0\.0\.9:`, before+1, 5*time.Second)
		})
	}
	if n := s.Log.Count(`level=INFO msg="session (opened|closed)"`); n != 0 {
		t.Errorf("health checks logged %d session lines at Info, want none:\n%s", n, s.Log)
	}
	c := ftpstest.NewConn(t, dialVia(t, s.Addr, balancer, testutil.ProxyHeader(t, 2, proxClient+":50020", frontAddr+":21")))
	c.Cmd(221, "QUIT")
	testutil.WaitFor(t, 5*time.Second, "sessions to close", func() bool {
		return gather(t, reg, "ftpsd_sessions_open").value == 0
	})
	if got := gather(t, reg, "ftpsd_sessions_total").value; got != 1 {
		t.Errorf("ftpsd_sessions_total = %v after two health checks and one client, want 1", got)
	}
}

// TestProxyHeaderIgnoredWhenUntrusted: without trusted_proxies a PROXY
// header is not parsed at all: it is an unknown command, and the session's
// client stays the socket's peer.
func TestProxyHeaderIgnoredWhenUntrusted(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := ftpstest.NewConn(t, dialVia(t, s.Addr, "127.0.0.1", testutil.ProxyHeader(t, 1, proxClient+":50001", frontAddr+":21")))
	if code, _ := c.Read(); code != 500 {
		t.Errorf("a PROXY line got %d, want 500 (unknown command)", code)
	}
	for _, si := range s.FTPS().Sessions() {
		if si.Client.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("session client %v, want the socket's peer 127.0.0.1", si.Client)
		}
	}
}

// TestProxyDataConnection: behind a balancer, PASV advertises the
// balancer's address from the header, and the data connection is
// accepted when its own PROXY header names the control session's client,
// refused when it names another one or comes from an untrusted source.
func TestProxyDataConnection(t *testing.T) {
	t.Parallel()
	s := proxiedServer(t)
	testutil.WriteFile(t, s.Home("alice"), "f.txt", []byte("through the balancer\n"))
	c := ftpstest.NewConn(t, dialVia(t, s.Addr, balancer, testutil.ProxyHeader(t, 2, proxClient+":50010", frontAddr+":21")))
	c.Login(s.ClientTLS(), "alice", "alice-secret")

	pasv := netip.MustParseAddrPort(c.Pasv())
	if pasv.Addr() != netip.MustParseAddr(frontAddr) {
		t.Errorf("PASV advertised %v, want the balancer's address %s (from the header)", pasv, frontAddr)
	}
	dataAddr := "127.0.0.1:" + strconv.Itoa(int(pasv.Port()))
	c.Send("RETR f.txt")
	// Another client through the balancer, then a forged header from
	// elsewhere: both dropped, the listener keeps waiting.
	assertClosedSilently(t, dialVia(t, dataAddr, balancer, testutil.ProxyHeader(t, 2, "203.0.113.99:50011", frontAddr+":"+strconv.Itoa(int(pasv.Port())))))
	assertClosedSilently(t, dialVia(t, dataAddr, "127.0.0.5", testutil.ProxyHeader(t, 2, proxClient+":50011", frontAddr+":"+strconv.Itoa(int(pasv.Port())))))
	raw := dialVia(t, dataAddr, balancer, testutil.ProxyHeader(t, 2, proxClient+":50012", frontAddr+":"+strconv.Itoa(int(pasv.Port()))))
	dc, err := ftpsclient.Handshake(t.Context(), raw, c.TLS, 5*time.Second)
	if err != nil {
		t.Fatalf("data TLS through the header: %v", err)
	}
	c.Expect(150)
	if !dc.ConnectionState().DidResume {
		t.Error("the data connection did not resume the control session")
	}
	got, err := io.ReadAll(dc)
	if err != nil || string(got) != "through the balancer\n" {
		t.Errorf("RETR: %q, %v", got, err)
	}
	dc.Close()
	c.Expect(226)
	st := s.Passive.Stats()
	if st.Refused[passive.RefusedForeignIP] != 1 {
		t.Errorf("refused foreign_ip %d, want 1", st.Refused[passive.RefusedForeignIP])
	}
	if n := s.Log.Count(`msg="data connection refused: not through a trusted proxy \(server.trusted_proxies\)" .*source=127\.0\.0\.5:`); n != 1 {
		t.Errorf("untrusted data connection logged %d times, want 1:\n%s", n, s.Log)
	}
}
