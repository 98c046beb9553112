package ftps_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// limited is the default user with its entry adjusted by set.
func limited(set func(*auth.UserConfig)) []ftpstest.User {
	u := ftpstest.DefaultUser
	u.Config = set
	return []ftpstest.User{u}
}

func intp(n int) *int       { return &n }
func int64p(n int64) *int64 { return &n }

// refusedLogin logs in on a new connection from ip and returns the reply
// to PASS.
func refusedLogin(t *testing.T, s *ftpstest.Server, ip, name, password string) (int, string) {
	t.Helper()
	c := s.DialFrom(t, ip)
	c.AuthTLS(s.ClientTLS())
	c.Cmd(331, "USER "+name)
	c.Send("PASS " + password)
	return c.Read()
}

// TestMaxSessions: the login beyond max_sessions gets 421 (FileZilla
// retries on it) and is not a login failure; after a QUIT there is room.
func TestMaxSessions(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{
		Users: limited(func(u *auth.UserConfig) { u.MaxSessions = intp(2) }),
		Auth:  func(c *auth.Config) { c.MaxFailures = 2 },
	})
	c1 := s.Login(t, s.ClientTLS())
	s.Login(t, s.ClientTLS())
	// More refusals than max_failures: none of them is a failure, or the
	// address would be banned below.
	for range 3 {
		if code, msg := refusedLogin(t, s, "", user, pass); code != 421 || msg != "Too many sessions for this user (max 2)." {
			t.Fatalf("third session: %d %q; want 421 Too many sessions for this user (max 2).", code, msg)
		}
	}
	if u, _ := s.FTPS().UserUsage(user); u.Sessions != 2 {
		t.Errorf("UserUsage.Sessions = %d, want 2", u.Sessions)
	}
	c1.Cmd(221, "QUIT")
	testutil.WaitFor(t, 5*time.Second, "the session to end", func() bool {
		u, _ := s.FTPS().UserUsage(user)
		return u.Sessions == 1
	})
	c3 := s.Login(t, s.ClientTLS())
	c3.Cmd(257, "PWD")
}

// TestAllowedNetworks logs in from 127.0.0.1 (allowed) and 127.0.0.2
// (refused with 530, counted as a failure: the third one bans).
func TestAllowedNetworks(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{
		Users: limited(func(u *auth.UserConfig) { u.AllowedNetworks = []string{"127.0.0.1/32"} }),
		Auth:  func(c *auth.Config) { c.MaxFailures = 3 },
	})
	s.Login(t, s.ClientTLS()).Cmd(257, "PWD")
	for i := range 2 {
		if code, msg := refusedLogin(t, s, "127.0.0.2", user, pass); code != 530 {
			t.Fatalf("login %d from 127.0.0.2: %d %q; want 530", i+1, code, msg)
		}
	}
	if n := s.Log.Count(`login refused: address not in the user's allowed_networks.*ip=127\.0\.0\.2`); n != 2 {
		t.Errorf("%d log lines of the refusal, want 2", n)
	}
	// The third failure bans 127.0.0.2, whatever the password.
	if code, msg := refusedLogin(t, s, "127.0.0.2", user, pass); code != 421 {
		t.Errorf("login from banned 127.0.0.2: %d %q; want 421", code, msg)
	}
	s.Login(t, s.ClientTLS()).Cmd(257, "PWD")
}

// cpuTime is the CPU time this process used so far (user and system).
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// throttledBig starts a server whose user has download_rate 2MiB, writes
// size bytes of payload (seed) to "big" in its home and logs in.
func throttledBig(t *testing.T, size int, seed byte) (*ftpstest.Conn, []byte) {
	t.Helper()
	s := ftpstest.NewServer(t, ftpstest.Options{
		Users: limited(func(u *auth.UserConfig) { u.DownloadRate = "2MiB" }),
	})
	data := testutil.Payload(size, seed)
	testutil.WriteFile(t, s.Home(user), "big", data)
	return s.Login(t, s.ClientTLS()), data
}

// TestDownloadRate downloads 8 MiB at download_rate 2MiB (about 4 s) and
// checks the bytes, the time within a wide tolerance, and that waiting
// costs no CPU (the process's CPU time, client and server, is reported).
func TestDownloadRate(t *testing.T) {
	// Not parallel: it measures the process's CPU time, which the heavy
	// parallel tests (S3 transfers, 100,000-key listings) would swell.
	c, data := throttledBig(t, 8<<20, 7)
	cpu0, start := cpuTime(t), time.Now()
	got := c.Xfer("RETR big", nil)
	wall, cpu := time.Since(start), cpuTime(t)-cpu0
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes that differ from the file", len(got))
	}
	rate := float64(len(data)) / wall.Seconds() / (1 << 20)
	t.Logf("8 MiB at download_rate 2MiB: %.2f s, %.2f MiB/s; process CPU %v (%.1f%% of the wall time)",
		wall.Seconds(), rate, cpu.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
	if wall < 3200*time.Millisecond || wall > 5500*time.Millisecond {
		t.Errorf("took %v, want 3.2-5.5 s (about 4 s)", wall)
	}
	// A throttle that spins would burn a core for the whole transfer.
	// Leftovers of earlier tests may still run: only a gross excess fails.
	if cpu > wall*3/4 {
		t.Errorf("CPU time %v during a throttled transfer of %v", cpu, wall)
	}
}

// TestHashCountsAgainstDownloadRate: HASH reads the file at the user's
// download rate, so it cannot burn disk and CPU faster than a RETR could.
func TestHashCountsAgainstDownloadRate(t *testing.T) {
	t.Parallel()
	c, data := throttledBig(t, 6<<20, 3)
	start := time.Now()
	got := c.Cmd(213, "HASH big")
	wall := time.Since(start)
	sum := sha256.Sum256(data)
	if want := fmt.Sprintf("SHA-256 0-%d %x big", len(data)-1, sum); got != want {
		t.Errorf("HASH big = %q, want %q", got, want)
	}
	t.Logf("HASH of 6 MiB at download_rate 2MiB: %.2f s", wall.Seconds())
	if wall < 2400*time.Millisecond || wall > 5*time.Second {
		t.Errorf("took %v, want 2.4-5 s (about 3 s at 2 MiB/s)", wall)
	}
}

// TestRateSharedBySessions: two sessions of one user download 4 MiB each
// at once; they share the user's 2 MiB/s, so both end after about 4 s.
// And two users under total_download_rate share that cap the same way.
func TestRateSharedBySessions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		opts  ftpstest.Options
		users [2]ftpstest.User
	}{
		{
			name:  "one user",
			opts:  ftpstest.Options{Users: limited(func(u *auth.UserConfig) { u.DownloadRate = "2MiB" })},
			users: [2]ftpstest.User{ftpstest.DefaultUser, ftpstest.DefaultUser},
		},
		{
			name: "server cap",
			opts: ftpstest.Options{
				Users: []ftpstest.User{ftpstest.DefaultUser, {Name: "bob", Password: "bob-secret"}},
				Auth:  func(c *auth.Config) { c.Limits.TotalDownloadRate = "2MiB" },
			},
			users: [2]ftpstest.User{ftpstest.DefaultUser, {Name: "bob", Password: "bob-secret"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, tc.opts)
			data := testutil.Payload(4<<20, 9)
			var conns [2]*ftpstest.Conn
			for i, u := range tc.users {
				testutil.WriteFile(t, s.Home(u.Name), "half", data)
				conns[i] = s.Dial(t)
				conns[i].Login(s.ClientTLS(), u.Name, u.Password)
			}
			start := time.Now()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Go(func() {
					if got := c.Xfer("RETR half", nil); !bytes.Equal(got, data) {
						t.Errorf("downloaded %d bytes that differ from the file", len(got))
					}
				})
			}
			wg.Wait()
			wall := time.Since(start)
			t.Logf("2 x 4 MiB under one 2 MiB/s limit: %.2f s, %.2f MiB/s together", wall.Seconds(), 8/wall.Seconds())
			if wall < 3200*time.Millisecond || wall > 5500*time.Millisecond {
				t.Errorf("took %v, want 3.2-5.5 s (about 4 s: the rate is shared)", wall)
			}
		})
	}
}

// TestUploadRate uploads 4 MiB at upload_rate 2MiB (about 2 s).
func TestUploadRate(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{
		Users: limited(func(u *auth.UserConfig) { u.UploadRate = "2MiB" }),
	})
	data := testutil.Payload(4<<20, 11)
	c := s.Login(t, s.ClientTLS())
	start := time.Now()
	c.Xfer("STOR up", data)
	wall := time.Since(start)
	t.Logf("4 MiB at upload_rate 2MiB: %.2f s, %.2f MiB/s", wall.Seconds(), 4/wall.Seconds())
	testutil.AssertContent(t, filepath.Join(s.Home(user), "up"), data)
	if wall < 1600*time.Millisecond || wall > 3500*time.Millisecond {
		t.Errorf("took %v, want 1.6-3.5 s (about 2 s)", wall)
	}
}

// TestThrottledTransferAbortAndReload: ABOR cuts a throttled download at
// once, and a reload that lifts the rate speeds up a running one.
func TestThrottledTransferAbortAndReload(t *testing.T) {
	t.Parallel()
	hash := ftpstest.CheapHash(pass)
	var home string
	s := ftpstest.NewServer(t, ftpstest.Options{
		Users: []ftpstest.User{{Name: user, Password: pass, Hash: hash, Config: func(u *auth.UserConfig) {
			u.DownloadRate = "128KiB"
			home = u.Home
		}}},
	})
	data := testutil.Payload(4<<20, 13) // 32 s at 128 KiB/s
	testutil.WriteFile(t, s.Home(user), "big", data)
	c := s.Login(t, s.ClientTLS())

	addr := c.Pasv()
	c.Send("RETR big")
	dc := c.OpenData(addr)
	dc.Read(make([]byte, 1000))
	start := time.Now()
	c.Abort()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ABOR of a throttled transfer took %v", d)
	}

	addr = c.Pasv()
	c.Send("RETR big")
	dc = c.OpenData(addr)
	time.Sleep(300 * time.Millisecond)
	p, err := s.Auth().PrepareReload(auth.Config{FailureDelay: time.Millisecond},
		[]auth.UserConfig{{Name: user, PasswordHash: hash, Home: home, Permissions: []string{"all"}}})
	if err != nil {
		t.Fatal(err)
	}
	p.Apply()
	s.FTPS().ApplyLimits()
	dc.SetReadDeadline(time.Now().Add(15 * time.Second))
	var got bytes.Buffer
	if _, err := got.ReadFrom(dc); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("download after the reload: %d bytes, %v", got.Len(), err)
	}
	dc.Close()
	c.Expect(226)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the lifted rate did not apply to the running transfer: %v", d)
	}
}

// storeRefused uploads data to name and returns the final reply, for
// uploads the server may cut (it stops reading at the quota).
func storeRefused(t *testing.T, c *ftpstest.Conn, verb, name string, data []byte) (int, string) {
	t.Helper()
	addr := c.Pasv()
	c.Send(verb + " " + name)
	dc := c.OpenData(addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		dc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := dc.Write(data); err == nil {
			dc.Close()
		}
	}()
	code, msg := c.Read()
	dc.NetConn().Close()
	<-done
	return code, msg
}

// waitScanned waits for the first scan of the user's home.
func waitScanned(t *testing.T, srv *ftps.Server) ftps.UserUsage {
	t.Helper()
	var u ftps.UserUsage
	testutil.WaitFor(t, 5*time.Second, "the quota scan", func() bool {
		u, _ = srv.UserUsage(user)
		return u.Scanned
	})
	return u
}

// quotaServer starts a server whose user has the quota, and returns it
// with the user's home.
func quotaServer(t *testing.T, quota auth.Size) (*ftpstest.Server, string) {
	t.Helper()
	s := ftpstest.NewServer(t, ftpstest.Options{
		Users: limited(func(u *auth.UserConfig) { u.Quota = quota }),
	})
	return s, s.Home(user)
}

// assertScanned waits for the first scan of the user's home and fails the
// test unless it counted bytes and files.
func assertScanned(t *testing.T, srv *ftps.Server, bytes, files int64) {
	t.Helper()
	if u := waitScanned(t, srv); u.QuotaBytes != bytes || u.QuotaFiles != files {
		t.Fatalf("scanned usage %d bytes, %d files; want %d, %d", u.QuotaBytes, u.QuotaFiles, bytes, files)
	}
}

// TestQuota: an upload over the quota stops with 552 and leaves no partial
// file and an overwritten file intact; the usage follows STOR, APPE, DELE
// and RNTO.
func TestQuota(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			s, home := quotaServer(t, "1MiB")
			cfg := s.ClientTLS()
			cfg.MinVersion, cfg.MaxVersion = v, v
			quotaSession(t, s, home, cfg, true)
		})
	}
}

// quotaSession is the quota's story on a home of 1 MiB, on disk or in S3
// (home is where its files are on disk): files written before the first
// login are counted by the scan, an upload over the quota stores nothing,
// and the usage follows STOR, APPE (when appe: S3 refuses it), DELE and
// RNTO.
func quotaSession(t *testing.T, s *ftpstest.Server, home string, cfg *tls.Config, appe bool) {
	t.Helper()
	old := testutil.Payload(300_000, 1)
	oldPath := testutil.WriteFile(t, home, "old.bin", old)
	os.Mkdir(filepath.Join(home, "sub"), 0o755)
	testutil.WriteFile(t, home, "sub/other.bin", testutil.Payload(100_000, 2))
	// Files beside the home (another user's prefix) are not counted.
	testutil.WriteFile(t, filepath.Dir(home), filepath.Base(home)+"-other/x.bin", testutil.Payload(5000, 9))
	c := s.Login(t, cfg)
	assertScanned(t, s.FTPS(), 400_000, 2)
	c.Cmd(257, "MKD empty") // a directory (on S3 a marker) is no file
	big := testutil.Payload(2<<20, 3)

	// A new file over the quota: 552, and no partial file.
	code, msg := storeRefused(t, c, "STOR", "new.bin", big)
	if code != 552 || !strings.HasPrefix(msg, "Quota exceeded (used 390.6KiB of 1MiB)") {
		t.Errorf("STOR over the quota: %d %q; want 552 Quota exceeded (used 390.6KiB of 1MiB).", code, msg)
	}
	testutil.AssertMissing(t, filepath.Join(home, "new.bin"))
	// An overwrite over the quota: the old file intact, no temporary file.
	if code, msg := storeRefused(t, c, "STOR", "old.bin", big); code != 552 {
		t.Errorf("overwrite over the quota: %d %q; want 552", code, msg)
	}
	testutil.AssertContent(t, oldPath, old)
	var appended int64
	if appe {
		// An append over the quota: cut back to the old size.
		if code, msg := storeRefused(t, c, "APPE", "old.bin", big); code != 552 {
			t.Errorf("APPE over the quota: %d %q; want 552", code, msg)
		}
		testutil.AssertContent(t, oldPath, old)
		appended = 1000
	}
	testutil.AssertDirHolds(t, home, "old.bin", "sub", "empty")

	// What fits is stored and counted; an overwrite counts the difference.
	c.Xfer("STOR fits.bin", testutil.Payload(500_000, 4))
	c.Xfer("STOR old.bin", testutil.Payload(200_000, 5))
	if appe {
		c.Xfer("APPE fits.bin", testutil.Payload(1000, 6))
	}
	fits := 500_000 + appended
	assertUsage(t, s.FTPS(), 100_000+fits+200_000, 3)
	// Full now: a new file is refused before any data moves.
	fill := testutil.Payload(int(1<<20-300_000-fits), 6)
	c.Xfer("STOR fill.bin", fill)
	c.Cmd(552, "STOR more.bin")
	c.Cmd(250, "DELE fits.bin")
	assertUsage(t, s.FTPS(), 1<<20-fits, 3)
	// A rename over a file frees the file it replaces; onto itself, nothing.
	c.Cmd(350, "RNFR old.bin")
	c.Cmd(250, "RNTO sub/other.bin")
	assertUsage(t, s.FTPS(), 1<<20-fits-100_000, 2)
	c.Cmd(350, "RNFR fill.bin")
	c.Cmd(250, "RNTO fill.bin")
	assertUsage(t, s.FTPS(), 1<<20-fits-100_000, 2)
	testutil.AssertContent(t, filepath.Join(home, "fill.bin"), fill)
	c.Xfer("STOR again.bin", testutil.Payload(500_000, 7))
}

func assertUsage(t *testing.T, srv *ftps.Server, bytes, files int64) {
	t.Helper()
	u, _ := srv.UserUsage(user)
	if u.QuotaBytes != bytes || u.QuotaFiles != files {
		t.Errorf("usage %d bytes, %d files; want %d, %d", u.QuotaBytes, u.QuotaFiles, bytes, files)
	}
}

// TestQuotaFiles: quota_files counts regular files; the upload of one too
// many is refused with 552 before its data connection.
func TestQuotaFiles(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{
		Users: limited(func(u *auth.UserConfig) { u.QuotaFiles = int64p(2) }),
	})
	testutil.WriteFile(t, s.Home(user), "one", []byte("1"))
	c := s.Login(t, s.ClientTLS())
	waitScanned(t, s.FTPS())
	c.Xfer("STOR two", []byte("2"))
	c.Xfer("STOR two", []byte("22")) // an overwrite adds no file
	if msg := c.Cmd(552, "STOR three"); msg != "Quota exceeded (used 2 of 2 files)." {
		t.Errorf("552 text %q", msg)
	}
	c.Cmd(552, "STOU")
	c.Cmd(250, "DELE one")
	c.Xfer("STOR three", []byte("3"))
	testutil.AssertMissing(t, filepath.Join(s.Home(user), "one"))
}

// TestQuotaOverwriteSymlink: a STOR over a symbolic link replaces the link
// with a new file and leaves the link's target as it was, so it adds the
// new file's bytes and one file (links are not counted), rather than the
// difference from the target's size.
func TestQuotaOverwriteSymlink(t *testing.T) {
	t.Parallel()
	s, home := quotaServer(t, "1MiB")
	real := testutil.Payload(300_000, 1)
	realPath := testutil.WriteFile(t, home, "real.bin", real)
	if err := os.Symlink("real.bin", filepath.Join(home, "link.bin")); err != nil {
		t.Fatal(err)
	}
	c := s.Login(t, s.ClientTLS())
	assertScanned(t, s.FTPS(), 300_000, 1)
	c.Xfer("STOR link.bin", testutil.Payload(100_000, 2))
	testutil.AssertContent(t, realPath, real)
	assertUsage(t, s.FTPS(), 400_000, 2)
}

// TestQuotaPersisted: the usage is saved in the state directory and read
// back by the next server, without a rescan; a changed quota rescans.
func TestQuotaPersisted(t *testing.T) {
	t.Parallel()
	state, home := t.TempDir(), t.TempDir()
	testutil.WriteFile(t, home, "a", testutil.Payload(1000, 1))
	start := func(quota string) *ftpstest.Server {
		return ftpstest.NewServer(t, ftpstest.Options{
			Users:  limited(func(u *auth.UserConfig) { u.Home, u.Quota = home, auth.Size(quota) }),
			Server: func(c *ftps.Config) { c.StateDir = state },
		})
	}
	s1 := start("1MiB")
	c := s1.Login(t, s1.ClientTLS())
	waitScanned(t, s1.FTPS())
	c.Xfer("STOR b", testutil.Payload(2000, 2))
	c.Cmd(221, "QUIT")
	if err := s1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var saved struct {
		Users map[string]struct {
			Home         string
			Bytes, Files int64
		}
	}
	data, err := os.ReadFile(filepath.Join(state, "quota.json"))
	if err != nil || json.Unmarshal(data, &saved) != nil {
		t.Fatalf("quota.json: %v\n%s", err, data)
	}
	if r := saved.Users[user]; r.Home != home || r.Bytes != 3000 || r.Files != 2 {
		t.Errorf("saved %+v; want home %s, 3000 bytes, 2 files", r, home)
	}

	// Behind the server's back: a rescan would count this file.
	testutil.WriteFile(t, home, "c", testutil.Payload(4000, 3))
	s2 := start("1MiB")
	s2.Login(t, s2.ClientTLS())
	if u := waitScanned(t, s2.FTPS()); u.QuotaBytes != 3000 || u.QuotaFiles != 2 {
		t.Errorf("usage after restart %d bytes, %d files; want the saved 3000, 2", u.QuotaBytes, u.QuotaFiles)
	}
	if n := s2.Log.Count("quota usage scanned"); n != 0 {
		t.Errorf("the home was rescanned %d times after the restart", n)
	}

	s3 := start("2MiB") // another quota: rescanned
	s3.Login(t, s3.ClientTLS())
	if u := waitScanned(t, s3.FTPS()); u.QuotaBytes != 7000 || u.QuotaFiles != 3 {
		t.Errorf("usage after a quota change %d bytes, %d files; want the rescanned 7000, 3", u.QuotaBytes, u.QuotaFiles)
	}
}
