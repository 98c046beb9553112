package ftpsclient

import (
	"net/netip"
	"testing"
)

func TestParsePASV(t *testing.T) {
	tests := []struct {
		msg  string
		want string // "" for an error
	}{
		{"Entering Passive Mode (127,0,0,1,195,80).", "127.0.0.1:50000"},
		{"Entering Passive Mode (10,1,2,3,0,21)", "10.1.2.3:21"},
		{"Entering Passive Mode (127,0,0,1,256,80)", ""},
		{"Entering Passive Mode (127,0,0,1,80)", ""},
		{"Entering Passive Mode", ""},
	}
	for _, tt := range tests {
		got, err := ParsePASV(tt.msg)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParsePASV(%q) = %v, want an error", tt.msg, got)
		case tt.want != "" && (err != nil || got != netip.MustParseAddrPort(tt.want)):
			t.Errorf("ParsePASV(%q) = %v, %v; want %s", tt.msg, got, err, tt.want)
		}
	}
}

func TestParseEPSV(t *testing.T) {
	tests := []struct {
		msg  string
		want uint16 // 0 for an error
	}{
		{"Entering Extended Passive Mode (|||50000|)", 50000},
		{"Entering Extended Passive Mode (|||21|).", 21},
		{"Entering Extended Passive Mode (|||0|)", 0},
		{"Entering Extended Passive Mode (|||65536|)", 0},
		{"Entering Extended Passive Mode (|||x|)", 0},
		{"Entering Extended Passive Mode (|||", 0},
	}
	for _, tt := range tests {
		got, err := ParseEPSV(tt.msg)
		if (tt.want == 0) != (err != nil) || got != tt.want {
			t.Errorf("ParseEPSV(%q) = %d, %v; want %d", tt.msg, got, err, tt.want)
		}
	}
}
