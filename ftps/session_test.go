package ftps

import (
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct{ line, verb, arg string }{
		{"USER alice", "USER", "alice"},
		{"user alice", "USER", "alice"},
		{"NOOP", "NOOP", ""},
		{"STOR my file.txt", "STOR", "my file.txt"},
		{"STOR  lead", "STOR", " lead"},
		{"RETR trailing ", "RETR", "trailing "},
		{"  PWD", "PWD", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		verb, arg := parseCommand(tt.line)
		if verb != tt.verb || arg != tt.arg {
			t.Errorf("parseCommand(%q) = %q, %q; want %q, %q", tt.line, verb, arg, tt.verb, tt.arg)
		}
	}
}

func TestDecodeTelnet(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ABOR", "ABOR"},
		{"\xff\xf4\xff\xf2ABOR", "ABOR"}, // IAC IP IAC DM
		{"RETR \xc3\xa9t\xc3\xa9.txt", "RETR été.txt"},
		{"DELE a\xff\xffb", "DELE a\xffb"},         // IAC IAC is one 0xFF
		{"DELE \xff\xff\xff\xff", "DELE \xff\xff"}, // two escaped 0xFF
		{"\xff\xfb\x01NOOP", "NOOP"},               // IAC WILL ECHO
		{"\xff\xfe\xffNOOP", "NOOP"},               // IAC DONT <0xFF option>
		{"NOOP\xff", "NOOP"},                       // a lone trailing IAC
		{"NO\xff\xf1OP", "NOOP"},                   // IAC NOP inside
	}
	for _, tt := range tests {
		if got := decodeTelnet([]byte(tt.in)); got != tt.want {
			t.Errorf("decodeTelnet(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
