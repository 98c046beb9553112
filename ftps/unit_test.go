package ftps

import (
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
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

func TestResolve(t *testing.T) {
	tests := []struct {
		cwd, arg  string
		virt, rel string
		err       bool
	}{
		{"/", "a.txt", "/a.txt", "a.txt", false},
		{"/", "/", "/", ".", false},
		{"/", ".", "/", ".", false},
		{"/sub", "a", "/sub/a", "sub/a", false},
		{"/sub", "..", "/", ".", false},
		{"/", "../../etc/passwd", "/etc/passwd", "etc/passwd", false},
		{"/sub", "/../../x", "/x", "x", false},
		{"/a", "b/../../../c", "/c", "c", false},
		{"/", "//x//y/", "/x/y", "x/y", false},
		{"/", `a\b`, `/a\b`, `a\b`, false},
		{"/", "a\x00b", "", "", true},
		{"/", "a\nb", "", "", true},
		{"/", strings.Repeat("a", maxPathLen+1), "", "", true},
	}
	for _, tt := range tests {
		virt, rel, err := resolve(tt.cwd, tt.arg)
		if (err != nil) != tt.err || virt != tt.virt || rel != tt.rel {
			t.Errorf("resolve(%q, %q) = %q, %q, %v; want %q, %q, err=%t", tt.cwd, tt.arg, virt, rel, err, tt.virt, tt.rel, tt.err)
		}
	}
}

func TestReplyFormat(t *testing.T) {
	tests := []struct {
		r    reply
		want string
	}{
		{reply{200, "OK."}, "200 OK.\r\n"},
		{reply{211, "Features:\n UTF8\nEnd"}, "211-Features:\r\n UTF8\r\n211 End\r\n"},
		{reply{213, "Status:\n226 looks like a code\nEnd"}, "213-Status:\r\n 226 looks like a code\r\n213 End\r\n"},
	}
	for _, tt := range tests {
		if got := tt.r.format(); got != tt.want {
			t.Errorf("format(%v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestQuotePath(t *testing.T) {
	if got := quotePath(`/a "b"`); got != `"/a ""b"""` {
		t.Errorf("quotePath = %s", got)
	}
}

func TestFSReplyCodes(t *testing.T) {
	tests := []struct {
		err  error
		want reply
	}{
		{&fs.PathError{Op: "remove", Path: "d", Err: syscall.ENOTEMPTY}, reply{550, "Directory not empty."}},
		{&fs.PathError{Op: "mkdir", Path: "d", Err: syscall.EEXIST}, reply{550, "File exists."}},
		{&fs.PathError{Op: "open", Path: "d", Err: syscall.ENOENT}, reply{550, "No such file or directory."}},
		{&fs.PathError{Op: "write", Path: "d", Err: syscall.ENOSPC}, reply{452, "Insufficient storage space."}},
		{&fs.PathError{Op: "open", Path: "d", Err: syscall.EACCES}, replyNoPerm},
	}
	for _, tt := range tests {
		if got := fsReply(tt.err); got != tt.want {
			t.Errorf("fsReply(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestFSReplyNeverLeaks(t *testing.T) {
	err := &fs.PathError{Op: "open", Path: "/secret/home/alice/x", Err: fs.ErrNotExist}
	r := fsReply(err)
	if r.code != 550 || strings.Contains(r.text, "secret") {
		t.Errorf("fsReply = %v", r)
	}
}

type fakeInfo struct {
	name string
	size int64
	mode fs.FileMode
	mt   time.Time
}

func (f fakeInfo) Name() string       { return f.name }
func (f fakeInfo) Size() int64        { return f.size }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return f.mt }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

func TestListingFormats(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	recent := fakeInfo{"a.txt", 1234, 0o644, time.Date(2026, 11, 1, 9, 5, 0, 0, time.UTC)}
	old := fakeInfo{"old", 0, fs.ModeDir | 0o755, time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)}
	tests := []struct{ got, want string }{
		{listLine(recent, "a.txt", now), "-rw-r--r-- 1 ftp ftp         1234 Nov  1 09:05 a.txt"},
		{listLine(old, "old", now), "drwxr-xr-x 1 ftp ftp            0 Feb  3  2020 old"},
		{mlsxLine(recent, "a.txt", allFacts, auth.PermRead|auth.PermDelete), "type=file;size=1234;modify=20261101090500;perm=rd; a.txt"},
		{mlsxLine(old, "old", factType|factPerm, auth.PermList|auth.PermMkdir|auth.PermRename), "type=dir;perm=elmf; old"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got  %q\nwant %q", tt.got, tt.want)
		}
	}
}

func TestParseFactsAndTimeVal(t *testing.T) {
	f := parseFacts("Type;SIZE;bogus;")
	if f != factType|factSize || f.String() != "type;size;" {
		t.Errorf("parseFacts = %v %q", f, f.String())
	}
	tv, err := parseTimeVal("20260102030405.5")
	if err != nil || !tv.Equal(time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC)) {
		t.Errorf("parseTimeVal = %v, %v", tv, err)
	}
	for _, bad := range []string{"2026", "20261302030405", "20260102030405.x"} {
		if _, err := parseTimeVal(bad); err == nil {
			t.Errorf("parseTimeVal(%q) accepted", bad)
		}
	}
}

func TestListArg(t *testing.T) {
	tests := map[string]string{"": "", "-la": "", "-la dir": "dir", "-a -l x y": "x y", "dir": "dir"}
	for in, want := range tests {
		if got := listArg(in); got != want {
			t.Errorf("listArg(%q) = %q, want %q", in, got, want)
		}
	}
}

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

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Listen = "nonsense" }, "server.listen"},
		{func(c *Config) { c.Listen = "1.2.3.4:99999" }, "server.listen"},
		{func(c *Config) { c.MaxConnections = -1 }, "server.max_connections"},
		{func(c *Config) { c.IdleTimeout = -time.Second }, "server.idle_timeout"},
		{func(c *Config) { c.Banner = "a\nb" }, "server.banner"},
		{func(c *Config) { c.MaxConnections = 2; c.MaxConnectionsPerIP = 5 }, "server.max_connections_per_ip"},
		{func(c *Config) { c.MaxPreloginConnections = -1 }, "server.max_prelogin_connections"},
		{func(c *Config) { c.MaxPreloginConnections = 101 }, "server.max_prelogin_connections"},
		{func(c *Config) { c.AuthTLSTimeout = -time.Second }, "server.auth_tls_timeout"},
	}
	for i, tt := range tests {
		var c Config
		tt.mod(&c)
		err := c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%d: Validate() = %v, want mention of %q", i, err, tt.want)
		}
	}
	var c Config
	c.Validate()
	if c.Listen != ":21" || c.IdleTimeout != 5*time.Minute || c.MaxConnectionsPerIP != 10 ||
		c.MaxPreloginConnections != 25 || c.AuthTLSTimeout != 10*time.Second {
		t.Errorf("defaults not applied: %+v", c)
	}
	small := Config{MaxConnections: 2, MaxConnectionsPerIP: 1}
	if err := small.Validate(); err != nil || small.MaxPreloginConnections != 1 {
		t.Errorf("max_connections 2: max_prelogin_connections = %d, %v; want 1", small.MaxPreloginConnections, err)
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain name.txt", "plain name.txt"},
		{"été 日本", "été 日本"},
		{"evil\r\nphantom", "evil??phantom"},
		{"esc\x1b[2J", "esc?[2J"},
		{"nul\x00del\x7f", "nul?del?"},
		{"c1\u0085\u009b", "c1????"},
		{"latin \u00a0\u00e9", "latin \u00a0\u00e9"}, // U+00A0 and up are printable
		{"bad utf8 \xff\xc2", "bad utf8 \xff\xc2"},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Replies never carry a control byte, whatever their text holds.
	got := reply{250, "Deleted /a\x1bb\r.\n 213 forged"}.format()
	if want := "250-Deleted /a?b?.\r\n250  213 forged\r\n"; got != want {
		t.Errorf("format = %q, want %q", got, want)
	}
}

func TestIsTempName(t *testing.T) {
	for name, want := range map[string]bool{
		tempName():                  true,
		".ftpsd-ABCDEFGHIJKL.part":  true,
		".ftpsd-ABC.part":           false,
		"ftpsd-ABCDEFGHIJKL.part":   false,
		".ftpsd-ABCDEFGHIJKL.partx": false,
	} {
		if got := isTempName(name); got != want {
			t.Errorf("isTempName(%q) = %t, want %t", name, got, want)
		}
	}
}
