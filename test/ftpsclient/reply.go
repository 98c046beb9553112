package ftpsclient

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

var pasvRE = regexp.MustCompile(`\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`)

// ParsePASV reads the address of a 227 reply text,
// "Entering Passive Mode (h1,h2,h3,h4,p1,p2)".
func ParsePASV(msg string) (netip.AddrPort, error) {
	m := pasvRE.FindStringSubmatch(msg)
	if m == nil {
		return netip.AddrPort{}, fmt.Errorf("malformed PASV reply %q", msg)
	}
	var b [6]byte
	for i := range b {
		n, err := strconv.ParseUint(m[i+1], 10, 8)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("malformed PASV reply %q", msg)
		}
		b[i] = byte(n)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])), nil
}

// ParseEPSV reads the port of a 229 reply text,
// "Entering Extended Passive Mode (|||port|)".
func ParseEPSV(msg string) (uint16, error) {
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	if i < 0 || j < i+4 {
		return 0, fmt.Errorf("malformed EPSV reply %q", msg)
	}
	p, err := strconv.ParseUint(msg[i+4:j], 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("malformed EPSV reply %q", msg)
	}
	return uint16(p), nil
}
