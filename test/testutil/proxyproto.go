package testutil

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pires/go-proxyproto"
)

// ProxyHeader is a PROXY protocol header of version v (1 or 2) from src
// to dst ("ip:port"), as HAProxy sends it before a connection's bytes.
func ProxyHeader(t testing.TB, v byte, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(v,
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
