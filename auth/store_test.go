package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the throttle.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects text log output from concurrent goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testUsers returns alice (argon2id, list+read) and bob (bcrypt, all) with
// homes under a temporary directory.
func testUsers(t *testing.T) []UserConfig {
	t.Helper()
	dir := t.TempDir()
	return []UserConfig{
		{Name: "alice", PasswordHash: mustHash(t, "alice-pw"), Home: filepath.Join(dir, "alice"), Permissions: []string{"list", "read"}},
		{Name: "bob", PasswordHash: mustBcrypt(t, "bob-pw"), Home: filepath.Join(dir, "bob"), Permissions: []string{"all"}},
	}
}

// newTestStore builds a Store on a fake clock with a 1ms failure delay
// unless cfg sets one.
func newTestStore(t *testing.T, cfg Config, users []UserConfig) (*Store, *fakeClock, *logBuffer) {
	t.Helper()
	if cfg.FailureDelay == 0 {
		cfg.FailureDelay = time.Millisecond
	}
	logs := &logBuffer{}
	s, err := New(cfg, users, logs.logger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clk := newFakeClock()
	s.now = clk.Now
	return s, clk, logs
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	users := testUsers(t)
	s, _, logs := newTestStore(t, Config{MaxFailures: 1000}, users)
	alice := &User{Name: "alice", Home: users[0].Home, Perms: PermList | PermRead}
	bob := &User{Name: "bob", Home: users[1].Home, Perms: permAll}

	for _, tc := range []struct {
		name, user, password string
		want                 *User
		wantErr              error
	}{
		{"argon2id user", "alice", "alice-pw", alice, nil},
		{"argon2id wrong password", "alice", "alice-PW", nil, ErrInvalidCredentials},
		{"bcrypt user", "bob", "bob-pw", bob, nil},
		{"bcrypt wrong password", "bob", "alice-pw", nil, ErrInvalidCredentials},
		{"empty password", "bob", "", nil, ErrInvalidCredentials},
		{"unknown user", "carol", "alice-pw", nil, ErrInvalidCredentials},
		{"empty user", "", "", nil, ErrInvalidCredentials},
		{"names are case-sensitive", "Alice", "alice-pw", nil, ErrInvalidCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Authenticate(t.Context(), tc.user, tc.password, ip1)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Authenticate(%q) error = %v; want %v", tc.user, err, tc.wantErr)
			}
			if tc.want == nil {
				if got != nil {
					t.Errorf("Authenticate(%q) = %+v; want nil", tc.user, got)
				}
				return
			}
			if got == nil || *got != *tc.want {
				t.Errorf("Authenticate(%q) = %+v; want %+v", tc.user, got, tc.want)
			}
		})
	}
	t.Cleanup(func() {
		for _, secret := range []string{"alice-pw", "bob-pw", users[0].PasswordHash, users[1].PasswordHash} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("log contains a password or hash:\n%s", logs)
			}
		}
	})
}

func TestAuthenticateReturnsCopy(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t, Config{}, testUsers(t))
	u, err := s.Authenticate(t.Context(), "alice", "alice-pw", ip1)
	if err != nil {
		t.Fatal(err)
	}
	u.Perms, u.Home = permAll, "/"
	u2, err := s.Authenticate(t.Context(), "alice", "alice-pw", ip1)
	if err != nil {
		t.Fatal(err)
	}
	if u2.Perms != PermList|PermRead || u2.Home == "/" {
		t.Errorf("changing a returned User changed the store: %+v", u2)
	}
}

func TestDummyHash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	argonA, argonB := mustHash(t, "a"), mustHash(t, "b")
	cheap, err := hashWithParams("c", argonParams{memory: 64, time: 1, threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	bc := mustBcrypt(t, "d")
	user := func(name, hash string) UserConfig {
		return UserConfig{Name: name, PasswordHash: hash, Home: filepath.Join(dir, name)}
	}
	for _, tc := range []struct {
		name  string
		users []UserConfig
		want  string // hash whose cost the dummy must have
	}{
		{"argon2id only", []UserConfig{user("a", argonA)}, argonA},
		{"bcrypt only", []UserConfig{user("d", bc)}, bc},
		{"first on a tie", []UserConfig{user("c", cheap), user("d", bc)}, cheap},
		{"most common wins", []UserConfig{user("d", bc), user("c", cheap), user("a", argonA), user("b", argonB)}, argonA},
	} {
		s, _, _ := newTestStore(t, Config{}, tc.users)
		want, err := parseHash(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.dummy.costClass(); got != want.costClass() {
			t.Errorf("%s: dummy %q; want %q", tc.name, got, want.costClass())
		}
	}
}

func TestBan(t *testing.T) {
	t.Parallel()
	s, clk, logs := newTestStore(t, Config{MaxFailures: 3, FailureWindow: time.Minute, BanDuration: 10 * time.Minute}, testUsers(t))
	ctx := t.Context()
	try := func(user, pw string, ip netip.Addr, want error) {
		t.Helper()
		u, err := s.Authenticate(ctx, user, pw, ip)
		if !errors.Is(err, want) || (err == nil) != (want == nil) || (err == nil) != (u != nil) {
			t.Fatalf("Authenticate(%q, %s) = %v, %v; want %v", user, ip, u, err, want)
		}
	}

	try("alice", "wrong", ip1, ErrInvalidCredentials)
	try("nobody", "wrong", ip1, ErrInvalidCredentials) // unknown users count too
	if strings.Contains(logs.String(), "ban") {
		t.Fatalf("ban logged before max_failures:\n%s", logs)
	}
	try("bob", "wrong", ip1, ErrInvalidCredentials) // the third failure starts the ban
	try("alice", "alice-pw", ip1, ErrBlocked)       // even the right password
	try("bob", "wrong", ip1, ErrBlocked)
	try("alice", "alice-pw", ip2, nil) // other addresses are not affected

	if n := strings.Count(logs.String(), "login ban started"); n != 1 {
		t.Errorf("ban logged %d times; want once:\n%s", n, logs)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "ip=192.0.2.1") {
		t.Errorf("ban log lacks level or address:\n%s", out)
	}

	clk.Advance(10*time.Minute - time.Second)
	try("alice", "alice-pw", ip1, ErrBlocked)
	clk.Advance(time.Second)
	try("alice", "alice-pw", ip1, nil) // the ban has expired

	// A fresh count after the ban: two failures do not ban again.
	try("alice", "wrong", ip1, ErrInvalidCredentials)
	try("alice", "wrong", ip1, ErrInvalidCredentials)
	clk.Advance(time.Second)
	try("alice", "alice-pw", ip1, nil)
}

func TestFailureCounting(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 3, FailureWindow: time.Minute, BanDuration: time.Hour}
	for _, tc := range []struct {
		name  string
		steps []string // "fail", "ok", or a duration to advance
		want  error    // result of a final right password
	}{
		{"below the limit", []string{"fail", "fail"}, nil},
		{"at the limit", []string{"fail", "fail", "fail"}, ErrBlocked},
		{"spread over the window", []string{"fail", "30s", "fail", "29s", "fail"}, ErrBlocked},
		{"window passed", []string{"fail", "fail", "1m", "fail", "fail"}, nil},
		{"a success does not clear the count", []string{"fail", "fail", "ok", "fail"}, ErrBlocked},
		{"success does not lift a ban", []string{"fail", "fail", "fail", "ok"}, ErrBlocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, clk, _ := newTestStore(t, cfg, testUsers(t))
			for _, step := range tc.steps {
				switch step {
				case "fail":
					_, _ = s.Authenticate(t.Context(), "alice", "wrong", ip1)
				case "ok":
					_, _ = s.Authenticate(t.Context(), "alice", "alice-pw", ip1)
				default:
					d, err := time.ParseDuration(step)
					if err != nil {
						t.Fatal(err)
					}
					clk.Advance(d)
				}
			}
			_, err := s.Authenticate(t.Context(), "alice", "alice-pw", ip1)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Errorf("after %v: Authenticate = %v; want %v", tc.steps, err, tc.want)
			}
		})
	}
}

func TestThrottleKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"2001:db8::1", "2001:db8::2", true},
		{"2001:db8::1", "2001:db8:0:0:ffff:ffff:ffff:ffff", true},
		{"2001:db8::1", "2001:db8:0:1::1", false},
		{"fe80::1%eth0", "fe80::2%eth1", true},
	} {
		ka, kb := ClientKey(netip.MustParseAddr(tc.a)), ClientKey(netip.MustParseAddr(tc.b))
		if (ka == kb) != tc.same {
			t.Errorf("ClientKey(%s) = %s, ClientKey(%s) = %s; want same = %v", tc.a, ka, tc.b, kb, tc.same)
		}
	}
}

func TestBanIPv6Prefix(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t, Config{MaxFailures: 2}, testUsers(t))
	for _, a := range []string{"2001:db8::1", "2001:db8::2"} {
		if _, err := s.Authenticate(t.Context(), "alice", "wrong", netip.MustParseAddr(a)); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("from %s: %v", a, err)
		}
	}
	if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", netip.MustParseAddr("2001:db8::3")); !errors.Is(err, ErrBlocked) {
		t.Errorf("same /64: %v; want ErrBlocked", err)
	}
	if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", netip.MustParseAddr("2001:db8:0:1::3")); err != nil {
		t.Errorf("other /64: %v; want success", err)
	}
}

func TestBlockedDoesNotHash(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t, Config{MaxFailures: 1}, testUsers(t))
	if _, err := s.Authenticate(t.Context(), "alice", "wrong", ip1); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal(err)
	}
	// With every hashing slot taken, a login that hashed would wait for the
	// context; a banned address must be answered without hashing.
	for range cap(s.sem) {
		s.sem <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.Authenticate(ctx, "alice", "alice-pw", ip1); !errors.Is(err, ErrBlocked) {
		t.Errorf("Authenticate = %v; want ErrBlocked", err)
	}
}

func TestThrottleSuccessDuringBan(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 2}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	th := newThrottle(cfg)
	k, now := ClientKey(ip1), time.Now()
	if th.failure(k, now) || !th.failure(k, now) {
		t.Fatal("the second failure did not start the ban")
	}
	// A login that was verified while the ban started is refused and the
	// ban stays.
	if !th.success(k, now) {
		t.Error("success during a ban reported no ban")
	}
	if !th.blocked(k, now.Add(time.Minute)) {
		t.Error("success lifted the ban")
	}
	if th.failure(k, now) {
		t.Error("a failure during the ban started another one")
	}
}

func TestThrottleBounded(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 2, FailureWindow: time.Minute, BanDuration: time.Hour}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	th := newThrottle(cfg)
	th.limit = 10
	now := time.Now()
	addr := func(i int) netip.Prefix { return ClientKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})) }

	// Counters only: old ones are evicted to make room.
	for i := range 100 {
		th.failure(addr(i), now)
		if n := th.size(); n > th.limit {
			t.Fatalf("%d entries; limit %d", n, th.limit)
		}
	}
	// Bans fill the map; further keys go uncounted but bans are kept.
	for i := range 20 {
		th.failure(addr(1000+i), now)
		th.failure(addr(1000+i), now)
	}
	if n := th.size(); n != th.limit {
		t.Fatalf("%d entries; want %d", n, th.limit)
	}
	for i := range 10 {
		if !th.blocked(addr(1000+i), now) {
			t.Errorf("ban of key %d was evicted", i)
		}
	}
	// Expired bans are pruned, at the latest when the map is full.
	later := now.Add(time.Hour)
	th.failure(addr(5000), later)
	if n := th.size(); n != 1 {
		t.Errorf("%d entries after the bans expired; want 1", n)
	}
	// Periodic pruning drops expired windows.
	th.failure(addr(5001), later.Add(pruneInterval))
	if n := th.size(); n != 1 {
		t.Errorf("%d entries after the window expired; want 1", n)
	}
}

func TestAuthenticateContext(t *testing.T) {
	t.Parallel()

	t.Run("canceled before", func(t *testing.T) {
		t.Parallel()
		s, _, _ := newTestStore(t, Config{}, testUsers(t))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if u, err := s.Authenticate(ctx, "alice", "alice-pw", ip1); u != nil || !errors.Is(err, context.Canceled) {
			t.Errorf("Authenticate = %v, %v; want context.Canceled", u, err)
		}
		if n := s.throttle.size(); n != 0 {
			t.Errorf("a canceled login was counted (%d entries)", n)
		}
	})

	t.Run("during the failure delay", func(t *testing.T) {
		t.Parallel()
		s, _, _ := newTestStore(t, Config{FailureDelay: time.Hour}, testUsers(t))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if _, err := s.Authenticate(ctx, "alice", "wrong", ip1); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Authenticate = %v; want context.DeadlineExceeded", err)
		}
		if n := s.throttle.size(); n != 1 {
			t.Errorf("the failure was not counted (%d entries)", n)
		}
	})

	t.Run("waiting for a hashing slot", func(t *testing.T) {
		t.Parallel()
		s, _, _ := newTestStore(t, Config{}, testUsers(t))
		for range cap(s.sem) {
			s.sem <- struct{}{}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if _, err := s.Authenticate(ctx, "alice", "alice-pw", ip1); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Authenticate = %v; want context.DeadlineExceeded", err)
		}
		if n := s.throttle.size(); n != 0 {
			t.Errorf("an unverified login was counted (%d entries)", n)
		}
	})
}

func TestSemaphoreSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		memKiB uint64
		max    int
	}{
		{4, 1 << 16},
		{64 * 1024, 16},
		{1 << 20, 1},
		{maxArgonMemory, 1},
	} {
		if n := semaphoreSize(tc.memKiB); n < 1 || n > tc.max {
			t.Errorf("semaphoreSize(%d) = %d; want 1..%d", tc.memKiB, n, tc.max)
		}
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t, Config{MaxFailures: 1000}, testUsers(t))
	var wg sync.WaitGroup
	defer wg.Wait() // before t.Context is canceled
	for i := range 40 {
		wg.Go(func() {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 4)})
			user, pw, want := "alice", "alice-pw", error(nil)
			if i%3 == 0 {
				pw, want = "wrong", ErrInvalidCredentials
			}
			if i%5 == 0 {
				user, pw = "bob", "bob-pw"
				if i%3 == 0 {
					pw = "wrong"
				}
			}
			if _, err := s.Authenticate(t.Context(), user, pw, ip); !errors.Is(err, want) || (err == nil) != (want == nil) {
				t.Errorf("goroutine %d: %v; want %v", i, err, want)
			}
		})
	}
}

func TestNewHomes(t *testing.T) {
	t.Parallel()
	hash := mustHash(t, "pw")

	t.Run("creates missing homes", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		existing := filepath.Join(dir, "existing")
		if err := os.Mkdir(existing, 0o755); err != nil {
			t.Fatal(err)
		}
		created := filepath.Join(dir, "a", "b", "new")
		s, _, logs := newTestStore(t, Config{}, []UserConfig{
			{Name: "new", PasswordHash: hash, Home: created + "/./"},
			{Name: "old", PasswordHash: hash, Home: existing},
		})
		fi, err := os.Stat(created)
		if err != nil || !fi.IsDir() {
			t.Fatalf("home not created: %v", err)
		}
		if perm := fi.Mode().Perm(); perm&^0o750 != 0 {
			t.Errorf("home mode %v; want at most 0750", perm)
		}
		if fi, _ := os.Stat(existing); fi.Mode().Perm() != 0o755 {
			t.Errorf("existing home mode changed to %v", fi.Mode().Perm())
		}
		out := logs.String()
		if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "created home directory") || !strings.Contains(out, created) {
			t.Errorf("creation not logged at Info:\n%s", out)
		}
		if strings.Count(out, "created home directory") != 1 {
			t.Errorf("want one creation logged:\n%s", out)
		}
		u, err := s.Authenticate(t.Context(), "new", "pw", ip1)
		if err != nil || u.Home != created {
			t.Errorf("Authenticate = %+v, %v; want home %q (cleaned)", u, err, created)
		}
	})

	for _, tc := range []struct {
		name    string
		setup   func(dir string) []UserConfig
		wantErr string
	}{
		{
			name: "home is a file",
			setup: func(dir string) []UserConfig {
				f := filepath.Join(dir, "file")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return []UserConfig{
					{Name: "a", PasswordHash: hash, Home: filepath.Join(dir, "missing")},
					{Name: "b", PasswordHash: hash, Home: f},
				}
			},
			wantErr: "users[1].home: %q is not a directory",
		},
		{
			name: "relative home",
			setup: func(dir string) []UserConfig {
				return []UserConfig{
					{Name: "a", PasswordHash: hash, Home: filepath.Join(dir, "missing")},
					{Name: "b", PasswordHash: hash, Home: "rel/home"},
				}
			},
			wantErr: `users[1].home: "rel/home" is not an absolute path`,
		},
		{
			name: "invalid user",
			setup: func(dir string) []UserConfig {
				return []UserConfig{
					{Name: "a", PasswordHash: hash, Home: filepath.Join(dir, "missing")},
					{Name: "b", PasswordHash: "plain", Home: filepath.Join(dir, "b")},
				}
			},
			wantErr: "users[1].password_hash: not an argon2id or bcrypt hash",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			users := tc.setup(dir)
			_, err := New(Config{}, users, nil)
			want := tc.wantErr
			if strings.Contains(want, "%q") {
				want = fmt.Sprintf(want, users[1].Home)
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("New = %v; want error containing %q", err, want)
			}
			// Nothing is created when the configuration is refused.
			if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("New created a home before failing: %v", err)
			}
		})
	}

	t.Run("invalid config", func(t *testing.T) {
		t.Parallel()
		_, err := New(Config{MaxFailures: -1}, []UserConfig{{Name: "a", PasswordHash: hash, Home: t.TempDir()}}, nil)
		if err == nil || err.Error() != "auth.max_failures: must be >= 1" {
			t.Errorf("New = %v; want auth.max_failures error", err)
		}
	})
}
