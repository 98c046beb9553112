package passive

import (
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// testPKI is the shared test CA and its certificate for "localhost" and
// 127.0.0.1, with the configs these tests build from it (no
// InsecureSkipVerify).
type testPKI struct{ *testutil.PKI }

func newTestPKI(t *testing.T) testPKI { return testPKI{testutil.NewPKI(t)} }

// baseConfig is the server's base config as tlsctl builds it: TLS 1.2+,
// ALPN "ftp" and explicit session ticket keys.
func (p testPKI) baseConfig(t *testing.T) *tls.Config {
	t.Helper()
	var key [32]byte
	rand.Read(key[:])
	cfg := &tls.Config{
		Certificates: []tls.Certificate{p.Cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"ftp"},
	}
	cfg.SetSessionTicketKeys([][32]byte{key})
	return cfg
}

// clientOpt tweaks a test client config.
type clientOpt func(*tls.Config)

func withCache(c *tls.Config)       { c.ClientSessionCache = tls.NewLRUClientSessionCache(8) }
func ticketsDisabled(c *tls.Config) { c.SessionTicketsDisabled = true }

// clientConfig returns a client config pinned to TLS version vers with a
// fixed ServerName, so the session cache key is the same for control and
// data connections.
func (p testPKI) clientConfig(vers uint16, opts ...clientOpt) *tls.Config {
	c := &tls.Config{
		RootCAs:    p.CAPool,
		ServerName: "localhost",
		MinVersion: vers,
		MaxVersion: vers,
		NextProtos: []string{"ftp"},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// newTestManager builds a Manager (on a free port range when cfg.Ports is
// empty) and closes it at cleanup.
func newTestManager(t *testing.T, cfg Config, log *slog.Logger) *Manager {
	t.Helper()
	if cfg.Ports == "" {
		first, last := freeRange(t, 4)
		cfg.Ports = strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))
	}
	m, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// portBlocks hands out disjoint port blocks to the tests of this package,
// so that parallel tests never share ports of their ranges.
var portBlocks struct {
	mu   sync.Mutex
	next int
}

// freeRange returns n consecutive ports, disjoint from every other range
// this test binary holds, that are free on 127.0.0.1 right now. They lie
// below the usual Linux ephemeral range (32768-60999).
func freeRange(t *testing.T, n int) (first, last uint16) {
	t.Helper()
	portBlocks.mu.Lock()
	defer portBlocks.mu.Unlock()
	if portBlocks.next == 0 {
		portBlocks.next = 20000 + mrand.IntN(4000)
	}
	for range 1000 {
		if portBlocks.next+n > 32768 { // wrap; blocks of finished tests are free again
			portBlocks.next = 20000
		}
		base := portBlocks.next
		portBlocks.next += n
		ok := true
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return uint16(base), uint16(base + n - 1)
		}
	}
	t.Fatalf("no %d free consecutive ports found", n)
	return 0, 0
}

// session is one control connection over loopback: the server side made
// with Bind and ControlTLS, the client side with the given config.
type session struct {
	b      *Binding
	client *tls.Conn
}

// startSession opens a control connection from 127.0.0.1, binds it in m and
// runs the TLS handshake with b.ControlTLS(). The server then writes a line
// that the client reads, so TLS 1.3 tickets reach the client's cache.
func startSession(t *testing.T, m *Manager, base, client *tls.Config) *session {
	t.Helper()
	return startSessionFrom(t, m, base, client, "127.0.0.1")
}

// startSessionFrom is startSession with the control connection coming from
// source (another loopback address such as 127.0.0.2).
func startSessionFrom(t *testing.T, m *Manager, base, client *tls.Config, source string) *session {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	cc, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })

	b := m.Bind(base, addrPort(t, sc.LocalAddr()), addrPort(t, sc.RemoteAddr()))
	t.Cleanup(b.Close)

	srvErr := make(chan error, 1)
	go func() {
		ts := tls.Server(sc, b.ControlTLS())
		if err := ts.HandshakeContext(t.Context()); err != nil {
			srvErr <- err
			return
		}
		_, err := io.WriteString(ts, "220 ok\n")
		srvErr <- err
	}()
	tc := tls.Client(cc, client)
	if err := tc.HandshakeContext(t.Context()); err != nil {
		t.Fatalf("control handshake: %v", err)
	}
	readLine(t, tc, "220 ok\n")
	if err := <-srvErr; err != nil {
		t.Fatalf("control server: %v", err)
	}
	return &session{b: b, client: tc}
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		t.Fatalf("%v is not a TCP address", a)
	}
	return ta.AddrPort()
}

func readLine(t *testing.T, r io.Reader, want string) {
	t.Helper()
	if c, ok := r.(net.Conn); ok {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		defer c.SetReadDeadline(time.Time{})
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("read %q: %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// assertPortsFree fails the test unless every port went back to m's pool.
func assertPortsFree(t *testing.T, m *Manager) {
	t.Helper()
	if n := m.InUse(); n != 0 {
		t.Errorf("InUse() = %d, want 0: a port was not given back", n)
	}
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// mustListen opens a data listener on b, failing the test if it cannot.
func mustListen(t *testing.T, b *Binding) *Listener {
	t.Helper()
	l, err := b.Listen()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// acceptAsync runs l.Accept in a goroutine.
func acceptAsync(t *testing.T, l *Listener, secure bool) <-chan acceptResult {
	t.Helper()
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept(t.Context(), secure)
		ch <- acceptResult{c, err}
	}()
	return ch
}

func waitAccept(t *testing.T, ch <-chan acceptResult) acceptResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.conn != nil {
			t.Cleanup(func() { r.conn.Close() })
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return")
		return acceptResult{}
	}
}

// dialData opens a TLS data connection to port on 127.0.0.1 and runs the
// client handshake. The handshake error is returned, not fatal: a server
// that refuses the session may do so after the client finished.
func dialData(t *testing.T, port uint16, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, cfg)
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	return tc, tc.HandshakeContext(t.Context())
}
