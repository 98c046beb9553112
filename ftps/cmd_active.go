package ftps

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ftpsd/ftpsd/passive"
)

// Active mode: PORT (RFC 959) and EPRT (RFC 2428), refused unless
// server.active_mode is on. The address checks that stop FTP bounce
// (RFC 2577: only the client's own IP, no port below 1024) live in
// passive.Binding.Active, so no caller can skip them; the replies follow
// vsftpd and ProFTPD ("500 Illegal PORT command").

// replyActiveOff is what a client gets for PORT/EPRT when active mode is
// off. FileZilla falls back to active mode when passive fails, so the text
// names both the refusal and the way out.
var replyActiveOff = reply{502, "Active mode (PORT/EPRT) is disabled on this server; use passive mode (PASV/EPSV)."}

func (s *session) cmdPORT(r request) result {
	if res, ok := s.activeAllowed(); !ok {
		return res
	}
	if !s.remote.Addr().Is4() {
		return say(reply{522, "PORT is IPv4 only; use EPRT."})
	}
	addr, ok := parsePORT(r.arg)
	if !ok {
		return say(replySyntax)
	}
	return s.openActive("PORT", addr, "Consider using PASV.")
}

func (s *session) cmdEPRT(r request) result {
	if res, ok := s.activeAllowed(); !ok {
		return res
	}
	proto, addr, ok := parseEPRT(r.arg)
	if !ok {
		return say(replySyntax)
	}
	want := "1"
	if !s.remote.Addr().Is4() {
		want = "2"
	}
	if proto != want {
		// Only the control connection's family can carry the client's
		// own address.
		return say(reply{522, "Network protocol not supported, use (" + want + ")"})
	}
	return s.openActive("EPRT", addr, "Consider using EPSV.")
}

// activeAllowed applies the two refusals that come before any parsing:
// active mode off, and EPSV ALL (RFC 2428: after it only EPSV sets up data
// connections).
func (s *session) activeAllowed() (result, bool) {
	switch {
	case !s.cfg.ActiveMode:
		return say(replyActiveOff), false
	case s.epsvAll:
		return say(reply{503, "EPSV ALL in effect; use EPSV."}), false
	}
	return result{}, true
}

// openActive makes addr the session's data channel, replacing any pending
// PASV/EPSV listener or earlier PORT. Nothing connects until a transfer
// command: then the transfer dials, after its 150.
func (s *session) openActive(verb string, addr netip.AddrPort, hint string) result {
	a, err := s.binding.Active(addr)
	switch {
	case errors.Is(err, passive.ErrForeignAddress):
		return say(reply{500, "Illegal " + verb + " command: data connections go only to the client's own address."})
	case errors.Is(err, passive.ErrPrivilegedPort):
		return say(reply{500, "Illegal " + verb + " command: ports below 1024 are refused."})
	case err != nil:
		s.log.Error("active data channel failed", "err", err)
		return say(replyDataFailed)
	}
	s.dropData()
	s.data = a
	return say(reply{200, verb + " command successful. " + hint})
}

// parsePORT reads "h1,h2,h3,h4,p1,p2": six decimal numbers 0-255, digits
// only (no signs, spaces or empty fields).
func parsePORT(arg string) (netip.AddrPort, bool) {
	f := strings.Split(strings.TrimSpace(arg), ",")
	if len(f) != 6 {
		return netip.AddrPort{}, false
	}
	var b [6]byte
	for i, s := range f {
		n, ok := decimal(s, 3)
		if !ok || n > 255 {
			return netip.AddrPort{}, false
		}
		b[i] = byte(n)
	}
	ip := netip.AddrFrom4([4]byte(b[:4]))
	return netip.AddrPortFrom(ip, uint16(b[4])<<8|uint16(b[5])), true
}

// parseEPRT reads "<d>proto<d>addr<d>port<d>" (RFC 2428), d being one
// printable ASCII character. It returns the protocol as given; addr is
// invalid when the protocol is neither "1" (IPv4) nor "2" (IPv6), so that
// the caller can answer 522 rather than 501. ok is false on a syntax
// error: a bad delimiter, a wrong field count, an address not of the
// protocol's family (or with a zone), a port outside 1-65535.
func parseEPRT(arg string) (proto string, addr netip.AddrPort, ok bool) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 2 || arg[0] < 33 || arg[0] > 126 {
		return "", netip.AddrPort{}, false
	}
	f := strings.Split(arg[1:], arg[:1])
	if len(f) != 4 || f[3] != "" {
		return "", netip.AddrPort{}, false
	}
	proto = f[0]
	if proto != "1" && proto != "2" {
		if _, isNum := decimal(proto, 3); !isNum {
			return "", netip.AddrPort{}, false
		}
		return proto, netip.AddrPort{}, true
	}
	ip, err := netip.ParseAddr(f[1])
	if err != nil || ip.Zone() != "" || (proto == "1") != ip.Is4() {
		return "", netip.AddrPort{}, false
	}
	port, isNum := decimal(f[2], 5)
	if !isNum || port == 0 || port > 65535 {
		return "", netip.AddrPort{}, false
	}
	return proto, netip.AddrPortFrom(ip, uint16(port)), true
}

// decimal parses 1 to maxLen ASCII digits.
func decimal(s string, maxLen int) (int, bool) {
	if s == "" || len(s) > maxLen {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
