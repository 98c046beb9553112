package passive

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
)

// DefaultProxyHeaderTimeout bounds the wait for the PROXY header of a
// connection from a trusted proxy (server.proxy_header_timeout): a balancer
// sends it with its first packet.
const DefaultProxyHeaderTimeout = 5 * time.Second

// ErrUntrustedProxy means a connection came from a source outside
// server.trusted_proxies while that list is set: a node behind balancers
// accepts connections from its balancers only. It wraps
// proxyproto.ErrInvalidUpstream.
var ErrUntrustedProxy = fmt.Errorf("%w: source is not in server.trusted_proxies", proxyproto.ErrInvalidUpstream)

// Proxies are the networks whose connections carry a PROXY protocol header
// (v1 or v2) naming the real client: the load balancers. The zero value
// (no proxies) leaves every connection as it is.
type Proxies []netip.Prefix

// ParseProxies parses a list of CIDRs or single IP addresses; errors name
// key and the entry's index (`server.trusted_proxies[1]: "x" is not ...`).
func ParseProxies(key string, list []string) (Proxies, error) {
	var out Proxies
	for i, s := range list {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%s[%d]: %q is not an IP address or CIDR", key, i, list[i])
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Contains reports whether a is a trusted proxy's address.
func (p Proxies) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Policy is a proxyproto.ConnPolicyFunc: with no proxies, SKIP (nothing
// changes); a trusted source must send a header (REQUIRE); any other
// source is refused (REJECT, with ErrUntrustedProxy), so that a header
// from it is never believed and a direct connection never served.
func (p Proxies) Policy(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	if len(p) == 0 {
		return proxyproto.SKIP, nil
	}
	if ap, ok := tcpAddrPort(o.Upstream); ok && p.Contains(ap.Addr()) {
		return proxyproto.REQUIRE, nil
	}
	return proxyproto.REJECT, ErrUntrustedProxy
}

// Accept applies Policy to a freshly accepted connection and reads its
// PROXY header within timeout. It returns c itself when there are no
// proxies (header nil); the connection wrapped so that RemoteAddr and
// LocalAddr are the header's source and destination, with the header;
// or an error (ErrUntrustedProxy, or a missing, malformed or late
// header), after which the caller closes c. A LOCAL header (v2 LOCAL, v1
// UNKNOWN: a balancer's health check) is returned as it is, its
// addresses being the socket's own.
func (p Proxies) Accept(c net.Conn, timeout time.Duration) (net.Conn, *proxyproto.Header, error) {
	pol, err := p.Policy(proxyproto.ConnPolicyOptions{Upstream: c.RemoteAddr(), Downstream: c.LocalAddr()})
	if err != nil {
		return nil, nil, err
	}
	if pol == proxyproto.SKIP {
		return c, nil, nil
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(pol), proxyproto.SetReadHeaderTimeout(timeout))
	// A zero-length read parses the header (under the timeout) and
	// returns its error without consuming anything after it.
	if _, err := pc.Read(nil); err != nil {
		return nil, nil, fmt.Errorf("no valid PROXY header: %w", err)
	}
	h := pc.ProxyHeader()
	switch {
	case h == nil:
		return nil, nil, errors.New("no valid PROXY header")
	case h.Command.IsLocal():
		return pc, h, nil
	}
	if _, _, ok := h.TCPAddrs(); !ok {
		return nil, nil, fmt.Errorf("PROXY header carries no TCP addresses (%v)", h.TransportProtocol)
	}
	return pc, h, nil
}

// SocketAddr is the local address of the socket under a connection that
// Accept wrapped (where a node listens), or c's own local address.
func SocketAddr(c net.Conn) net.Addr {
	if r, ok := c.(interface{ Raw() net.Conn }); ok {
		return r.Raw().LocalAddr()
	}
	return c.LocalAddr()
}

// tcpAddrPort converts a TCP address to an unmapped netip.AddrPort.
func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
