package ftps_test

import (
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/test/ftpstest"
)

// TestGarbageNeverKillsTheSession sends every verb of the command set with
// hostile arguments and checks that each gets a well-formed reply and the
// session (and server) keeps serving.
func TestGarbageNeverKillsTheSession(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{Server: activeOn}) // PORT/EPRT parse their arguments
	c := s.Login(t, s.ClientTLS())
	verbs := []string{"USER", "PASS", "ACCT", "FEAT", "OPTS", "SYST", "HELP", "STAT", "TYPE", "MODE",
		"STRU", "ALLO", "PWD", "XPWD", "CWD", "XCWD", "CDUP", "XCUP", "MKD", "XMKD", "RMD", "XRMD", "DELE",
		"RNFR", "RNTO", "SIZE", "MDTM", "MFMT", "MLST", "HASH", "EPSV", "PORT", "EPRT", "REST", "PBSZ", "PROT",
		"AUTH", "CCC", "ABOR", "SITE", "XYZ"}
	args := []string{"", " ", "..", "../../../../", "/\\/\\", "\x01\x02", "é\u202e", strings.Repeat("a", 4097),
		strings.Repeat("../", 1000), "-1", "99999999999999999999999", "|||", "a b c", "%s%n%x", "*?[", "OPTS MLST ;;;"}
	for _, v := range verbs {
		for _, a := range args {
			line := strings.TrimRight(v+" "+a, " ")
			c.Send(line)
			code, msg := c.Read()
			if code < 200 || code > 599 || code == 421 {
				t.Fatalf("%q: reply %d %q", line, code, msg)
			}
		}
	}
	c.Cmd(200, "NOOP")
	if c2 := s.Dial(t); c2 == nil {
		t.Fatal("server stopped accepting")
	}
}

func FuzzCommandLine(f *testing.F) {
	for _, seed := range []string{"USER x", "CWD ../..", "MFMT 20200101000000 a", "REST 5", "OPTS MLST type;", "\xff\xf4ABOR",
		"PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|5000|", "EPRT |2|::1|5000|"} {
		f.Add(seed)
	}
	s := ftpstest.NewServer(f, ftpstest.Options{Server: activeOn})
	c := s.Dial(f)
	c.Login(s.ClientTLS(), user, pass)
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\r\n") || len(line) > 1000 {
			return
		}
		v := strings.ToUpper(strings.Fields(line + " x")[0])
		if v == "QUIT" || v == "PASV" || v == "EPSV" || v == "AUTH" || strings.HasPrefix(v, "RETR") || v == "STOR" ||
			v == "APPE" || v == "STOU" || v == "LIST" || v == "NLST" || v == "MLSD" || v == "USER" || v == "PASS" {
			return // these change the session state the fuzzer relies on
		}
		c := c.On(t)
		c.Send(line)
		if code, msg := c.Read(); code < 200 || code > 599 {
			t.Fatalf("%q: reply %d %q", line, code, msg)
		}
	})
}
