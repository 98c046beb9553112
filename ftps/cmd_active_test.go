package ftps

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestParsePORT(t *testing.T) {
	for _, tt := range []struct {
		arg  string
		want string // "" for a syntax error
	}{
		{"127,0,0,1,4,1", "127.0.0.1:1025"},
		{" 10,1,2,3,255,255 ", "10.1.2.3:65535"},
		{"0,0,0,0,0,0", "0.0.0.0:0"}, // parsed; passive refuses the address
		{"127,0,0,1,4", ""},
		{"127,0,0,1,4,1,1", ""},
		{"127,0,0,1,4,256", ""},
		{"127,0,0,1,-4,1", ""},
		{"127,0,0,1,+4,1", ""},
		{"127,0,0,1,4,1000", ""},
		{"127,0,0,1,4,", ""},
		{"127,0,0,1,4 ,1", ""},
		{"a,b,c,d,e,f", ""},
		{"", ""},
	} {
		ap, ok := parsePORT(tt.arg)
		got := ""
		if ok {
			got = ap.String()
		}
		if got != tt.want {
			t.Errorf("parsePORT(%q) = %q, want %q", tt.arg, got, tt.want)
		}
	}
}

func TestParseEPRT(t *testing.T) {
	for _, tt := range []struct {
		arg   string
		proto string
		want  string // "" for no address
		ok    bool
	}{
		{"|1|127.0.0.1|5000|", "1", "127.0.0.1:5000", true},
		{"|2|::1|5000|", "2", "[::1]:5000", true},
		{"!1!127.0.0.1!5000!", "1", "127.0.0.1:5000", true},
		{"|3|x|5000|", "3", "", true}, // unknown protocol: 522, not 501
		{"|2|fe80::1%eth0|5000|", "", "", false},
		{"|2|127.0.0.1|5000|", "", "", false},
		{"|1|::1|5000|", "", "", false},
		{"|1|127.0.0.1|0|", "", "", false},
		{"|1|127.0.0.1|65536|", "", "", false},
		{"|1|127.0.0.1|005000|", "", "", false},
		{"|1|127.0.0.1|5000", "", "", false},
		{"|1|127.0.0.1|5000||", "", "", false},
		{"|x|127.0.0.1|5000|", "", "", false},
		{"\x7f1\x7f127.0.0.1\x7f5000\x7f", "", "", false},
		{"|", "", "", false},
		{"", "", "", false},
	} {
		proto, ap, ok := parseEPRT(tt.arg)
		got := ""
		if ap.IsValid() {
			got = ap.String()
		}
		if ok != tt.ok || proto != tt.proto || got != tt.want {
			t.Errorf("parseEPRT(%q) = %q, %q, %v; want %q, %q, %v", tt.arg, proto, got, ok, tt.proto, tt.want, tt.ok)
		}
	}
}

// FuzzParseActive: what the parsers accept formats back to the same
// address, and nothing makes them panic.
func FuzzParseActive(f *testing.F) {
	for _, s := range []string{"127,0,0,1,4,1", "|1|127.0.0.1|5000|", "|2|::1|5000|", "|3|||"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		if ap, ok := parsePORT(arg); ok {
			ip := ap.Addr().As4()
			again, ok2 := parsePORT(fmt.Sprintf("%d,%d,%d,%d,%d,%d", ip[0], ip[1], ip[2], ip[3], ap.Port()>>8, ap.Port()&0xff))
			if !ok2 || again != ap {
				t.Fatalf("parsePORT(%q) = %v, not stable", arg, ap)
			}
		}
		if proto, ap, ok := parseEPRT(arg); ok && ap.IsValid() {
			if ap.Port() == 0 || ap.Addr().Zone() != "" || (proto == "1") != ap.Addr().Is4() {
				t.Fatalf("parseEPRT(%q) = %q %v", arg, proto, ap)
			}
			if again, err := netip.ParseAddrPort(ap.String()); err != nil || again != ap {
				t.Fatalf("parseEPRT(%q) = %v, not an address", arg, ap)
			}
		}
	})
}
