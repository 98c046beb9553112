package ftps

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/auth"
)

func TestCommandTableFlags(t *testing.T) {
	openCmds := map[string]bool{"AUTH": true, "PBSZ": true, "PROT": true, "CCC": true, "USER": true, "PASS": true,
		"ACCT": true, "FEAT": true, "OPTS": true, "SYST": true, "NOOP": true, "HELP": true, "STAT": true, "QUIT": true}
	for verb, c := range commands {
		if got := c.flags&open != 0; got != openCmds[verb] {
			t.Errorf("%s: open before login = %t, want %t", verb, got, openCmds[verb])
		}
		if c.run == nil {
			t.Errorf("%s has no handler", verb)
		}
	}
	for _, feat := range []string{"AUTH TLS", "PBSZ", "PROT", "EPSV", "MDTM", "MFMT", "MLST", "REST STREAM", "SIZE", "UTF8"} {
		if !strings.Contains(featText, " "+feat) {
			t.Errorf("FEAT lacks %q", feat)
		}
	}
}

// TestCommandTablePaths: the commands that work on a path get it resolved,
// and their permission checked, by the dispatcher.
func TestCommandTablePaths(t *testing.T) {
	tests := []struct {
		verbs []string
		perm  auth.Perm
		path  bool
	}{
		{[]string{"CWD", "XCWD"}, 0, true},
		{[]string{"MKD", "XMKD"}, auth.PermMkdir, true},
		{[]string{"RMD", "XRMD", "DELE"}, auth.PermDelete, true},
		{[]string{"RNFR", "RNTO"}, auth.PermRename, true},
		{[]string{"RETR", "HASH"}, auth.PermRead, true},
		{[]string{"STOR", "APPE", "MFMT"}, auth.PermWrite, true},
		{[]string{"STOU"}, auth.PermWrite, false},
		{[]string{"LIST", "NLST", "MLSD", "MLST"}, auth.PermList, true},
		{[]string{"SIZE", "MDTM"}, auth.PermList | auth.PermRead, true},
		{[]string{"STAT", "PWD", "CDUP", "PASV", "REST", "ABOR"}, 0, false},
	}
	for _, tt := range tests {
		for _, v := range tt.verbs {
			c := commands[v]
			if c.perm != tt.perm || (c.path != nil) != tt.path {
				t.Errorf("%s: perm %v, path %t; want %v, %t", v, c.perm, c.path != nil, tt.perm, tt.path)
			}
		}
	}
}

// TestGate: the permission is checked before the path is resolved, and
// the REST offset is consumed in between: a refused command leaves it, a
// bad path does not.
func TestGate(t *testing.T) {
	tests := []struct {
		verb, arg  string
		perms      auth.Perm
		want       reply // zero: passes
		wantPath   vpath
		restLeft   int64
		wantOffset int64
	}{
		{"RETR", "a", auth.PermList, replyNoPerm, vpath{}, 5, 0},
		{"RETR", "a\x00", auth.PermList, replyNoPerm, vpath{}, 5, 0},
		{"RETR", "a\x00", auth.PermRead, reply{553, "File name not allowed."}, vpath{}, 0, 5},
		{"RETR", "../a", auth.PermRead, reply{}, vpath{"/a", "a"}, 0, 5},
		{"LIST", "-la sub", auth.PermList, reply{}, vpath{"/d/sub", "d/sub"}, 0, 5},
		{"MLSD", "", auth.PermList, reply{}, vpath{"/d", "d"}, 0, 5},
		{"MKD", "x", auth.PermRead, replyNoPerm, vpath{}, 5, 0},
		{"MKD", "x", auth.PermMkdir, reply{}, vpath{"/d/x", "d/x"}, 5, 0},
		{"SIZE", "x", auth.PermRead, reply{}, vpath{"/d/x", "d/x"}, 5, 0},
		{"SIZE", "x", auth.PermList, reply{}, vpath{"/d/x", "d/x"}, 5, 0},
		{"SIZE", "x", auth.PermWrite, replyNoPerm, vpath{}, 5, 0},
		{"MFMT", "20260102030405 x", auth.PermWrite, reply{}, vpath{"/d/x", "d/x"}, 5, 0},
		{"MFMT", "2026 x\x00", auth.PermWrite, replySyntax, vpath{}, 5, 0}, // the time-val first
		{"MFMT", "20260102030405", auth.PermWrite, replySyntax, vpath{}, 5, 0},
		{"MFMT", "20260102030405 x\x00", auth.PermWrite, reply{553, "File name not allowed."}, vpath{}, 5, 0},
		{"CWD", "..", 0, reply{}, vpath{"/", "."}, 5, 0},
	}
	for _, tt := range tests {
		s := &session{log: slog.New(slog.DiscardHandler), user: &auth.User{Perms: tt.perms}, cwd: "/d", restOffset: 5}
		r, err := s.gate(tt.verb, commands[tt.verb], tt.arg)
		var got reply
		if err != nil {
			got = errReply(err)
		}
		if got != tt.want || err == nil && r.path != tt.wantPath || s.restOffset != tt.restLeft || r.offset != tt.wantOffset {
			t.Errorf("%s %q: %v %+v, REST left %d; want %v %+v, REST left %d, offset %d",
				tt.verb, tt.arg, got, r, s.restOffset, tt.want, tt.wantPath, tt.restLeft, tt.wantOffset)
		}
	}
}

// TestDispatchRename: RNTO needs the RNFR just before it; any command in
// between, but one the dispatcher refuses before running, forgets it.
func TestDispatchRename(t *testing.T) {
	s := &session{log: slog.New(slog.DiscardHandler), user: &auth.User{}, cwd: "/", state: stateReady}
	if res := s.dispatch("RNTO", "b"); res.reply != (reply{503, "RNFR required first."}) {
		t.Errorf("RNTO alone: %v", res.reply)
	}
	s.renameFrom = vpath{"/a", "a"}
	if res := s.dispatch("MKD", ""); res.reply != replySyntax || s.renameFrom.name != "a" {
		t.Errorf("MKD without argument: %v, RNFR kept %q", res.reply, s.renameFrom.name)
	}
	s.renameFrom = vpath{"/a", "a"}
	if res := s.dispatch("NOOP", ""); s.renameFrom != (vpath{}) || res.code != 200 {
		t.Errorf("NOOP: %v, RNFR kept %q", res.reply, s.renameFrom.name)
	}
	s.renameFrom = vpath{"/a", "a"}
	if res := s.dispatch("RNTO", "b"); errReply(res.err) != replyNoPerm || s.renameFrom != (vpath{}) {
		t.Errorf("RNTO without the right: %v %v", res.reply, res.err)
	}
}
