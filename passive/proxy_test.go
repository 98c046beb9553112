package passive

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestParseProxies(t *testing.T) {
	tests := []struct {
		in      []string
		want    string // the parsed prefixes, joined
		wantErr string
	}{
		{in: nil, want: ""},
		{in: []string{"10.0.0.0/24", "192.0.2.7", " 2001:db8::/32 ", "::ffff:192.0.2.8"},
			want: "10.0.0.0/24 192.0.2.7/32 2001:db8::/32 192.0.2.8/32"},
		{in: []string{"10.0.0.1/24"}, want: "10.0.0.0/24"}, // masked
		{in: []string{"10.0.0.0/24", "balancer"}, wantErr: `server.trusted_proxies[1]: "balancer" is not an IP address or CIDR`},
		{in: []string{"10.0.0.0/33"}, wantErr: `server.trusted_proxies[0]: "10.0.0.0/33"`},
		{in: []string{"fe80::1%eth0"}, wantErr: `server.trusted_proxies[0]: "fe80::1%eth0"`},
	}
	for _, tt := range tests {
		got, err := ParseProxies("server.trusted_proxies", tt.in)
		if tt.wantErr != "" {
			testutil.AssertErrContains(t, "ParseProxies", err, tt.wantErr)
			continue
		}
		if err != nil {
			t.Errorf("ParseProxies(%q): %v", tt.in, err)
			continue
		}
		s := ""
		for i, p := range got {
			if i > 0 {
				s += " "
			}
			s += p.String()
		}
		if s != tt.want {
			t.Errorf("ParseProxies(%q) = %q, want %q", tt.in, s, tt.want)
		}
	}
}

func TestProxiesPolicy(t *testing.T) {
	trusted, err := ParseProxies("k", []string{"127.0.0.9", "10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		proxies Proxies
		source  string
		want    proxyproto.Policy
		refused bool
	}{
		{nil, "203.0.113.5:4000", proxyproto.SKIP, false}, // no proxies: nothing changes
		{trusted, "127.0.0.9:4000", proxyproto.REQUIRE, false},
		{trusted, "10.1.200.3:4000", proxyproto.REQUIRE, false},
		{trusted, "[::ffff:10.1.0.1]:4000", proxyproto.REQUIRE, false},
		{trusted, "127.0.0.1:4000", proxyproto.REJECT, true},
		{trusted, "[2001:db8::1]:4000", proxyproto.REJECT, true},
	}
	for _, tt := range tests {
		up := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.source))
		got, err := tt.proxies.Policy(proxyproto.ConnPolicyOptions{Upstream: up})
		if got != tt.want || (err != nil) != tt.refused {
			t.Errorf("%v.Policy(%s) = %v, %v; want %v, refused %t", tt.proxies, tt.source, got, err, tt.want, tt.refused)
		}
		if tt.refused && (!errors.Is(err, ErrUntrustedProxy) || !errors.Is(err, proxyproto.ErrInvalidUpstream)) {
			t.Errorf("refusal %v does not wrap ErrUntrustedProxy and proxyproto.ErrInvalidUpstream", err)
		}
	}
}

// TestProxiedDataConnection: with trusted proxies, a passive listener
// compares the PROXY header's source with the control session's client
// (203.0.113.7 here, as a balancer would have announced it), accepts only
// connections from a trusted proxy (127.0.0.9) with a valid header, and
// hands over the stream after the header intact.
func TestProxiedDataConnection(t *testing.T) {
	t.Parallel()
	localV2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00") // v2 LOCAL, no addresses
	tests := []struct {
		name   string
		source string // the connection's own source address
		send   []byte // what it sends first
		reason RefusalReason
		ok     bool
	}{
		{"v2 from the client", "127.0.0.9", testutil.ProxyHeader(t, 2, "203.0.113.7:50123", "198.51.100.1:40001"), 0, true},
		{"v1 from the client", "127.0.0.9", testutil.ProxyHeader(t, 1, "203.0.113.7:50123", "198.51.100.1:40001"), 0, true},
		{"another client through the balancer", "127.0.0.9", testutil.ProxyHeader(t, 2, "203.0.113.8:50123", "198.51.100.1:40001"), RefusedForeignIP, false},
		{"forged header from an untrusted source", "127.0.0.5", testutil.ProxyHeader(t, 2, "203.0.113.7:50123", "198.51.100.1:40001"), RefusedProxy, false},
		{"no header", "127.0.0.9", []byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03hello"), RefusedProxy, false},
		{"header too late", "127.0.0.9", nil, RefusedProxy, false},
		{"LOCAL header", "127.0.0.9", localV2, RefusedProxy, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log, logs := testutil.NewLogger()
			m := newTestManager(t, Config{
				TrustedProxies:     Proxies{netip.MustParsePrefix("127.0.0.9/32")},
				ProxyHeaderTimeout: 300 * time.Millisecond, AcceptTimeout: 3 * time.Second,
			}, log)
			b := m.BindProxied(nil, netip.MustParseAddrPort("127.0.0.1:21"),
				netip.MustParseAddrPort("203.0.113.7:50000"), netip.MustParseAddr("198.51.100.1"))
			defer b.Close()
			if got := b.PassiveAddr(t.Context()); got != netip.MustParseAddr("198.51.100.1") {
				t.Errorf("PassiveAddr = %v, want the balancer's address from the header, 198.51.100.1", got)
			}
			l := mustListen(t, b)
			ch := acceptAsync(t, l, false)

			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.source)}, Timeout: 5 * time.Second}
			c, err := d.DialContext(t.Context(), "tcp4", "127.0.0.1:"+strconv.Itoa(int(l.Port())))
			if err != nil {
				t.Skipf("cannot dial from %s: %v", tt.source, err)
			}
			defer c.Close()
			if tt.send != nil { // nil: silent until the header timeout
				c.Write(append(tt.send, "payload"...))
			}

			if tt.ok {
				r := waitAccept(t, ch)
				if r.err != nil {
					t.Fatalf("Accept: %v", r.err)
				}
				if got := r.conn.RemoteAddr().String(); got != "203.0.113.7:50123" {
					t.Errorf("RemoteAddr = %s, want the header's source 203.0.113.7:50123", got)
				}
				got := make([]byte, len("payload"))
				r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(r.conn, got); err != nil || string(got) != "payload" {
					t.Errorf("after the header: %q, %v; want \"payload\"", got, err)
				}
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection not closed by the server: %v", err)
			}
			testutil.WaitFor(t, 5*time.Second, "the refusal counted", func() bool {
				return m.Stats().Refused[tt.reason] == 1
			})
			l.Close()
			if r := waitAccept(t, ch); !errors.Is(r.err, ErrClosed) {
				t.Errorf("Accept after the refusal and Close: %v, want ErrClosed (nothing accepted)", r.err)
			}
			if tt.reason == RefusedProxy && logs.Count(`data connection refused: not through a trusted proxy`) != 1 {
				t.Errorf("refusal not logged:\n%s", logs)
			}
		})
	}
}

// TestProxiedCloseDuringHeader: Close ends an Accept waiting for a
// trusted proxy's header (the header timeout here is longer than
// waitAccept waits).
func TestProxiedCloseDuringHeader(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{
		TrustedProxies:     Proxies{netip.MustParsePrefix("127.0.0.0/8")},
		ProxyHeaderTimeout: time.Minute, AcceptTimeout: time.Minute,
	}, nil)
	b := m.Bind(nil, netip.MustParseAddrPort("127.0.0.1:21"), netip.MustParseAddrPort("127.0.0.1:50000"))
	defer b.Close()
	l := mustListen(t, b)
	ch := acceptAsync(t, l, false)
	c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(l.Port())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(100 * time.Millisecond) // Accept is now reading the header
	l.Close()
	if r := waitAccept(t, ch); !errors.Is(r.err, ErrClosed) {
		t.Errorf("Accept = %v, want ErrClosed", r.err)
	}
	assertPortsFree(t, m)
}

// BenchmarkProxiesAccept measures what trusted_proxies adds to accepting
// a connection on loopback: the policy and the header read (v1 text, v2
// binary), against no proxies at all.
func BenchmarkProxiesAccept(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	trusted := Proxies{netip.MustParsePrefix("127.0.0.0/8")}
	for _, bc := range []struct {
		name    string
		proxies Proxies
		v       byte
	}{{"none", nil, 0}, {"v1", trusted, 1}, {"v2", trusted, 2}} {
		b.Run(bc.name, func(b *testing.B) {
			var pre []byte
			if bc.v != 0 {
				pre = testutil.ProxyHeader(b, bc.v, "203.0.113.7:50123", "198.51.100.1:21")
			}
			for b.Loop() {
				c, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				c.Write(append(pre, 'x'))
				s, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				pc, _, err := bc.proxies.Accept(s, time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(pc, make([]byte, 1)); err != nil {
					b.Fatal(err)
				}
				s.Close()
				c.Close()
			}
		})
	}
}
