package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// Log patterns of the "user" scope (passive/listener.go).
const (
	logSiblingResumed = `msg="data connection resumed a sibling session's ticket`
	logRefusedSibling = `msg="data connection refused: TLS session not resumed" .* tls_resumption=required ticket=sibling hint=`
)

// oldRcloneBin is Debian's rclone (1.60 in Debian 12): before 1.64 rclone
// keeps one TLS session cache for all its FTP connections. A newer rclone
// may be first on PATH (go install puts one in GOPATH/bin), so the test
// calls this path explicitly.
const oldRcloneBin = "/usr/bin/rclone"

// needOldRclone returns oldRcloneBin when it is an rclone before 1.64.
// Otherwise the test is skipped, or fails under CI=true (test/run.sh
// installs Debian's rclone).
func needOldRclone(t *testing.T) string {
	t.Helper()
	minor, version, err := rcloneMinor(t, oldRcloneBin)
	why := ""
	if err != nil {
		why = err.Error()
	} else if minor >= 64 {
		why = fmt.Sprintf("%s is %s; the shared ticket cache is rclone before 1.64 (Debian 12 ships 1.60)", oldRcloneBin, version)
	}
	if why == "" {
		t.Logf("%s", version)
		return oldRcloneBin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s and CI=true (bash test/run.sh installs Debian's rclone)", why)
	}
	t.Skipf("%s: skipping (bash test/run.sh installs Debian's rclone; with CI=true this fails)", why)
	return ""
}

// rcloneMinor is the minor version of the rclone v1.x at bin, and its
// version line.
func rcloneMinor(t *testing.T, bin string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return 0, "", fmt.Errorf("%s version: %v", bin, err)
	}
	m := regexp.MustCompile(`^rclone v1\.(\d+)\.`).FindSubmatch(out)
	if m == nil {
		return 0, "", fmt.Errorf("%s version says %q, not rclone v1.x", bin, firstLine(out))
	}
	minor, _ := strconv.Atoi(string(m[1]))
	return minor, firstLine(out), nil
}

// pickRclone returns the rclone to drive and the tls_resumption it needs:
// an rclone 1.64 or later on PATH or in GOPATH/bin resumes its own control
// session, under the default "required"; without one, Debian's 1.60 (see
// needOldRclone) shares its ticket cache and needs "user".
func pickRclone(t *testing.T) (bin, mode string) {
	t.Helper()
	var cands []string
	if p, err := exec.LookPath("rclone"); err == nil {
		cands = append(cands, p)
	}
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		cands = append(cands, filepath.Join(strings.TrimSpace(string(gp)), "bin", "rclone"))
	}
	for _, p := range cands {
		if minor, version, err := rcloneMinor(t, p); err == nil && minor >= 64 {
			t.Logf("%s: %s", p, version)
			return p, passive.ResumptionRequired
		}
	}
	return needOldRclone(t), passive.ResumptionUser
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// TestRcloneSharedTicketCache: rclone 1.60 copies 50 files with four
// parallel transfers. Its connections share one ticket cache, so data
// connections present a sibling session's ticket: "required" refuses
// them (and says in the log which setting helps), "user" lets the copy
// through with every file intact.
func TestRcloneSharedTicketCache(t *testing.T) {
	t.Parallel()
	bin := needOldRclone(t)
	const files = 50
	src := t.TempDir()
	want := map[string][]byte{}
	for i := range files {
		name := fmt.Sprintf("f%02d.bin", i)
		want[name] = testutil.Payload(1000+i*97, byte(i))
		testutil.WriteFile(t, src, name, want[name])
	}
	for _, tc := range []struct {
		mode   string
		wantOK bool
	}{
		{passive.ResumptionRequired, false},
		{passive.ResumptionUser, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{Passive: func(c *passive.Config) { c.TLSResumption = tc.mode }})
			start := time.Now()
			err := rcloneCopy(t, bin, s, src, "up")
			t.Logf("rclone copy under %q: err %v after %s", tc.mode, err, time.Since(start).Round(time.Millisecond))
			assertControlTLS(t, s, "TLS 1.3")
			if !tc.wantOK {
				if err == nil {
					t.Fatal("rclone copy succeeded under required, want a failure")
				}
				n := s.Log.Count(logRefusedSibling)
				if n == 0 {
					t.Errorf("no refusal of a sibling's ticket logged (with the hint):\n%s", s.Log)
				}
				t.Logf("%d data connections refused, %d of them with a sibling's ticket; %d 425 replies",
					s.Log.Count(logRefusedTLS), n, s.Log.Count(logReply425))
				return
			}
			if err != nil {
				t.Fatalf("rclone copy under user: %v", err)
			}
			for name, data := range want {
				testutil.AssertContent(t, filepath.Join(s.Home(user), "up", name), data)
			}
			got, _ := os.ReadDir(filepath.Join(s.Home(user), "up"))
			if len(got) != files {
				t.Errorf("%d entries uploaded, want %d", len(got), files)
			}
			n := s.Log.Count(logSiblingResumed)
			if n == 0 {
				t.Errorf("no data connection resumed a sibling's ticket: rclone did not share its cache, the test proves nothing")
			}
			if r := s.Log.Count(logRefusedTLS); r != 0 {
				t.Errorf("%d data connections refused under user", r)
			}
			t.Logf("%d files; %d data connections, %d of them resumed a sibling's ticket (%d after waiting for its login); %d control sessions",
				files, s.Log.Count(`msg=reply .* code=150`), n, s.Log.Count(logSiblingResumed+`.* waited_for_login=(0\.|[1-9])`),
				s.Log.Count(`msg="control TLS established"`))
		})
	}
}

// TestRclone: rclone on each backend: a copy of six files (one larger than
// an S3 part) with four parallel transfers, a listing, a ranged download
// (REST+RETR), a server-side move (RNFR/RNTO), a delete, and directories
// made and removed (a non-empty one refused). rclone sets each file's time
// with MFMT after its upload and fails the copy when that fails: on S3 the
// server runs with mfmt = "ignore", and MFMT answers 213 with the time the
// object keeps.
func TestRclone(t *testing.T) {
	t.Parallel()
	bin, mode := pickRclone(t)
	eachBackend(t, func(t *testing.T, b backend) {
		h := b.start(t, ftpstest.Options{
			Passive: func(c *passive.Config) { c.TLSResumption = mode },
			Server:  func(c *ftps.Config) { c.S3.MFMT = "ignore" },
		})
		s := h.s
		src := t.TempDir()
		want := map[string][]byte{"big.bin": testutil.Payload(9<<20+7, 60)}
		for i := range 5 {
			want[fmt.Sprintf("f%d.bin", i)] = testutil.Payload(3000+i, byte(61+i))
		}
		for name, data := range want {
			testutil.WriteFile(t, src, name, data)
		}
		if err := rcloneCopy(t, bin, s, src, "up"); err != nil {
			t.Fatalf("rclone copy: %v", err)
		}
		if n := s.Log.Count(`msg=command .* cmd=MFMT`); n != len(want) {
			t.Errorf("rclone sent %d MFMT, want one per file (%d): the test no longer shows why S3 needs mfmt = \"ignore\"", n, len(want))
		}
		if n := s.Log.Count(`msg=reply .* code=502$`); n != 0 {
			t.Errorf("%d replies 502 to rclone copy", n)
		}
		for name, data := range want {
			testutil.AssertContent(t, filepath.Join(h.dir, "up", name), data)
		}

		ok := func(args ...string) string {
			t.Helper()
			out, err := rclone(t, bin, s, args...)
			if err != nil {
				t.Fatalf("rclone %s: %v", strings.Join(args, " "), err)
			}
			return out
		}
		if got := ok("lsf", "fz:up"); got != "big.bin\nf0.bin\nf1.bin\nf2.bin\nf3.bin\nf4.bin\n" {
			t.Errorf("rclone lsf = %q", got)
		}
		const offset = 5<<20 + 3
		if got := ok("cat", "--offset", strconv.Itoa(offset), "fz:up/big.bin"); testutil.Sum([]byte(got)) != testutil.Sum(want["big.bin"][offset:]) {
			t.Errorf("rclone cat --offset: %d bytes, differ from the file's last %d", len(got), len(want["big.bin"])-offset)
		}
		ok("moveto", "fz:up/f0.bin", "fz:up/moved.bin")
		testutil.AssertMissing(t, filepath.Join(h.dir, "up", "f0.bin"))
		testutil.AssertContent(t, filepath.Join(h.dir, "up", "moved.bin"), want["f0.bin"])
		ok("deletefile", "fz:up/moved.bin")
		testutil.AssertMissing(t, filepath.Join(h.dir, "up", "moved.bin"))

		ok("mkdir", "fz:newdir")
		if fi, err := os.Stat(filepath.Join(h.dir, "newdir")); err != nil || !fi.IsDir() {
			t.Fatalf("rclone mkdir made no directory: %v", err)
		}
		failsWith(t, s, 550, "rclone rmdir fz:up", func() error {
			_, err := rclone(t, bin, s, "rmdir", "fz:up")
			return err
		})
		ok("rmdir", "fz:newdir")
		testutil.AssertMissing(t, filepath.Join(h.dir, "newdir"))
		h.assertClean(t, "up")
		testutil.AssertDirHolds(t, filepath.Join(h.dir, "up"), "big.bin", "f1.bin", "f2.bin", "f3.bin", "f4.bin")

		assertCommands(t, s, "MLSD", "STOR", "REST", "RETR", "RNFR", "RNTO", "DELE", "MKD", "RMD")
		if r := s.Log.Count(logRefusedTLS); r != 0 {
			t.Errorf("%d data connections refused under %s", r, mode)
		}
	})
}

// rcloneCopy copies the directory src to dest on s as alice with four
// parallel transfers, bounded by toolTimeout. One try only: a refusal must
// show as a failure.
func rcloneCopy(t *testing.T, bin string, s *ftpstest.Server, src, dest string) error {
	t.Helper()
	_, err := rclone(t, bin, s, "copy", src, "fz:"+dest, "--transfers", "4")
	return err
}

// rclone runs an rclone command on the FTP remote "fz:" (s as alice),
// defined in the environment, with one try only and short timeouts, and
// returns its standard output.
func rclone(t *testing.T, bin string, s *ftpstest.Server, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	obscured, _, err := runTool(t, dir, nil, bin, "obscure", pass)
	if err != nil {
		t.Fatalf("rclone obscure: %v", err)
	}
	conf := filepath.Join(dir, "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"RCLONE_CONFIG_FZ_TYPE=ftp",
		"RCLONE_CONFIG_FZ_HOST=127.0.0.1",
		"RCLONE_CONFIG_FZ_PORT=" + strconv.Itoa(s.Port()),
		"RCLONE_CONFIG_FZ_USER=" + user,
		"RCLONE_CONFIG_FZ_PASS=" + strings.TrimSpace(obscured),
		"RCLONE_CONFIG_FZ_EXPLICIT_TLS=true",
		// Verify the server's certificate against the test CA (Go reads
		// SSL_CERT_FILE for its system roots).
		"SSL_CERT_FILE=" + s.CAFile,
	}
	out, _, err := runTool(t, dir, env, bin, append(args,
		"--config", conf, "--retries", "1", "--low-level-retries", "1",
		"--contimeout", "10s", "--timeout", "20s", "-v")...)
	return out, err
}

// TestSharedTicketCache: the server side of "user" with a Go client whose
// control and data connections all share one session cache, as rclone
// before 1.64 does. Session A logs in, then session B logs in with the same
// cache (its control handshake puts B's ticket in the cache), then A's data
// connection presents B's ticket: accepted under "user" when B is the same
// user, refused when B is another user, and refused under "required".
func TestSharedTicketCache(t *testing.T) {
	t.Parallel()
	bob := ftpstest.User{Name: "bob", Password: "bob-secret"}
	tests := []struct {
		name       string
		mode       string
		second     ftpstest.User
		wantOK     bool
		wantTicket string
	}{
		{"user/same user", passive.ResumptionUser, ftpstest.DefaultUser, true, ""},
		{"user/other user", passive.ResumptionUser, bob, false, "other_user"},
		{"required/same user", passive.ResumptionRequired, ftpstest.DefaultUser, false, "sibling"},
	}
	for _, v := range versions {
		for _, tt := range tests {
			t.Run(tls.VersionName(v)+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				s := ftpstest.NewServer(t, ftpstest.Options{
					Users:   []ftpstest.User{ftpstest.DefaultUser, bob},
					Passive: func(c *passive.Config) { c.TLSResumption = tt.mode },
				})
				shared := s.ClientTLS()
				shared.MinVersion, shared.MaxVersion = v, v
				a := s.Login(t, shared)
				b := s.Dial(t)
				b.Login(shared, tt.second.Name, tt.second.Password)
				// A control connection resumes any ticket of the server's
				// keys (a reconnect); the tickets it then issues, which
				// replace A's in the shared cache, carry B's tag only.
				if !b.ControlState().DidResume {
					t.Fatal("B's control connection did not resume A's ticket")
				}

				payload := testutil.Payload(50000, 9)
				addr := a.Pasv()
				a.Send("STOR shared.bin")
				dc, err := ftpstest.DialData(t, addr, shared)
				a.Expect(150)
				if tt.wantOK {
					if err != nil {
						t.Fatalf("data connection: %v", err)
					}
					if !dc.(*tls.Conn).ConnectionState().DidResume {
						t.Fatal("the data connection did not resume")
					}
					if _, err := dc.Write(payload); err != nil {
						t.Fatal(err)
					}
					if err := dc.Close(); err != nil {
						t.Fatal(err)
					}
					a.Expect(226)
					testutil.AssertContent(t, filepath.Join(s.Home(user), "shared.bin"), payload)
					if s.Log.Count(logSiblingResumed) != 1 {
						t.Errorf("sibling resumption not logged:\n%s", s.Log)
					}
					// B's own transfer works from the same cache.
					if got := b.Xfer("RETR shared.bin", nil); len(got) != len(payload) {
						t.Errorf("B read %d bytes, want %d", len(got), len(payload))
					}
					return
				}
				if err == nil {
					dc.Write(payload)
					io.ReadAll(dc)
				}
				if msg := a.Expect(425); !strings.Contains(msg, "TLS session of data connection not resumed") {
					t.Errorf("425 %q", msg)
				}
				testutil.AssertMissing(t, filepath.Join(s.Home(user), "shared.bin"))
				line := `tls_resumption=` + tt.mode + ` ticket=` + tt.wantTicket
				if s.Log.Count(regexp.QuoteMeta(line)) != 1 {
					t.Errorf("log lacks one %q:\n%s", line, s.Log)
				}
			})
		}
	}
}
