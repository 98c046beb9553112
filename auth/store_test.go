package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/test/testutil"
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
func newTestStore(t *testing.T, cfg Config, users []UserConfig) (*Store, *fakeClock, *testutil.LogBuffer) {
	t.Helper()
	if cfg.FailureDelay == 0 {
		cfg.FailureDelay = time.Millisecond
	}
	log, logs := testutil.NewLogger()
	s, err := New(cfg, users, log)
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
			if got == nil || !reflect.DeepEqual(*got, *tc.want) {
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
	argon := func(pw string, p argonParams) string {
		h, err := hashWithParams(pw, p)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	bcryptAt := func(pw string, cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	argonA, argonB := mustHash(t, "a"), mustHash(t, "b") // m=1024 t=1 p=1: ~1 ms
	cheap := argon("c", argonParams{memory: 64, time: 1, threads: 1})
	lanes := argon("l", argonParams{memory: 2048, time: 1, threads: 4}) // 2048*1/4: cheaper than argonA
	passes := argon("p", argonParams{memory: 512, time: 4, threads: 1}) // 512*4: dearer than argonA
	bc4 := mustBcrypt(t, "d")                                           // ~1.1 ms
	bc6 := bcryptAt("e", 6)                                             // ~4.5 ms
	user := func(name, hash string) UserConfig {
		return UserConfig{Name: name, PasswordHash: hash, Home: filepath.Join(dir, name)}
	}
	for _, tc := range []struct {
		name  string
		users []UserConfig
		want  string // hash whose cost the dummy must have
	}{
		{"argon2id only", []UserConfig{user("a", argonA)}, argonA},
		{"bcrypt only", []UserConfig{user("d", bc4)}, bc4},
		{"first on a tie", []UserConfig{user("a", argonA), user("b", argonB)}, argonA},
		{"slowest, not most common", []UserConfig{user("d", bc4), user("c", cheap), user("a", argonA), user("b", argonB)}, bc4},
		{"slowest last", []UserConfig{user("a", argonA), user("b", argonB), user("c", cheap), user("e", bc6)}, bc6},
		{"lanes run in parallel", []UserConfig{user("l", lanes), user("a", argonA)}, argonA},
		{"passes add up", []UserConfig{user("a", argonA), user("p", passes)}, passes},
	} {
		s, _, _ := newTestStore(t, Config{}, tc.users)
		want, err := parseHash(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.set.Load().dummy.costClass(); got != want.costClass() {
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
	try("bob", "wrong", ip1, ErrBlocked)      // the third failure starts the ban, and says so
	try("alice", "alice-pw", ip1, ErrBlocked) // even the right password
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
	for _, tc := range []struct {
		addr string
		want error
	}{
		{"2001:db8::1", ErrInvalidCredentials},
		{"2001:db8::2", ErrBlocked}, // the second failure of the /64 starts the ban
	} {
		if _, err := s.Authenticate(t.Context(), "alice", "wrong", netip.MustParseAddr(tc.addr)); !errors.Is(err, tc.want) {
			t.Fatalf("from %s: %v; want %v", tc.addr, err, tc.want)
		}
	}
	if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", netip.MustParseAddr("2001:db8::3")); !errors.Is(err, ErrBlocked) {
		t.Errorf("same /64: %v; want ErrBlocked", err)
	}
	if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", netip.MustParseAddr("2001:db8:0:1::3")); err != nil {
		t.Errorf("other /64: %v; want success", err)
	}
}

// holdAllHashing takes the whole hash limiter until the test ends (or
// until the returned function is called), so that any login that hashes
// waits.
func holdAllHashing(t *testing.T, s *Store) (release func()) {
	t.Helper()
	if err := s.hashes.sem.Acquire(t.Context(), s.hashes.capacity); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { s.hashes.sem.Release(s.hashes.capacity) }) }
	t.Cleanup(release)
	return release
}

func TestBlockedDoesNotHash(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t, Config{MaxFailures: 1}, testUsers(t))
	if _, err := s.Authenticate(t.Context(), "alice", "wrong", ip1); !errors.Is(err, ErrBlocked) {
		t.Fatal(err)
	}
	// With all hashing taken, a login that hashed would wait for the
	// context; a banned address must be answered without hashing.
	holdAllHashing(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.Authenticate(ctx, "alice", "alice-pw", ip1); !errors.Is(err, ErrBlocked) {
		t.Errorf("Authenticate = %v; want ErrBlocked", err)
	}
}

// step is one operation of a throttle script.
type step struct {
	op   string        // "reserve", "fail", "ok", "cancel", "wait"
	d    time.Duration // for "wait"
	want string        // reserve: "reserved", "refused"; fail/ok: "banned", "" (not banned)
}

// newTestThrottle is the throttle of cfg, with the defaults Validate fills.
func newTestThrottle(t *testing.T, cfg Config) *throttle {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return newThrottle(cfg)
}

func TestThrottleReserve(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 3, FailureWindow: time.Minute, BanDuration: 10 * time.Minute}
	r := func(want string) step { return step{op: "reserve", want: want} }
	fail := func(want string) step { return step{op: "fail", want: want} }
	ok := func(want string) step { return step{op: "ok", want: want} }
	cancel := step{op: "cancel"}
	wait := func(d time.Duration) step { return step{op: "wait", d: d} }

	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"one at a time", []step{
			r("reserved"), fail(""), r("reserved"), fail(""), r("reserved"), fail("banned"), r("refused"),
		}},
		{"in flight count against the limit", []step{
			r("reserved"), r("reserved"), r("reserved"), r("busy"), r("busy"),
		}},
		{"failures and in flight together", []step{
			r("reserved"), fail(""), r("reserved"), r("reserved"), r("busy"),
		}},
		{"all in flight fail: the last starts the ban", []step{
			r("reserved"), r("reserved"), r("reserved"), fail(""), fail(""), fail("banned"), r("refused"),
		}},
		{"right password among them, no ban", []step{
			r("reserved"), r("reserved"), r("reserved"), fail(""), ok(""), fail(""), r("reserved"),
		}},
		{"refused while the last one is in flight", []step{
			r("reserved"), r("reserved"), r("reserved"), fail(""), fail(""), wait(time.Second), r("busy"), fail("banned"), r("refused"),
		}},
		{"success during a ban is banned", []step{
			r("reserved"), r("reserved"), r("reserved"), fail(""), fail(""), fail("banned"), ok("banned"),
		}},
		{"a success frees only its slot", []step{
			r("reserved"), r("reserved"), r("reserved"), ok(""), r("reserved"), r("busy"),
		}},
		{"cancel frees the slot", []step{
			r("reserved"), r("reserved"), r("reserved"), cancel, r("reserved"), r("busy"),
		}},
		{"cancel does not count", []step{
			r("reserved"), cancel, r("reserved"), cancel, r("reserved"), cancel,
			r("reserved"), fail(""), r("reserved"), fail(""), r("reserved"), r("busy"),
		}},
		{"window passes", []step{
			r("reserved"), fail(""), r("reserved"), fail(""), r("reserved"), wait(time.Minute), r("reserved"), r("reserved"), r("busy"),
		}},
		{"ban passes", []step{
			r("reserved"), fail(""), r("reserved"), fail(""), r("reserved"), fail("banned"),
			wait(10*time.Minute - time.Second), r("refused"), wait(time.Second), r("reserved"), r("reserved"), r("reserved"), r("busy"),
		}},
		{"the window starts at the first failure", []step{
			r("reserved"), fail(""), wait(59 * time.Second), r("reserved"), fail(""), wait(time.Second),
			r("reserved"), r("reserved"), r("reserved"), r("busy"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			th := newTestThrottle(t, cfg)
			k, now := ClientKey(ip1), time.Now()
			for i, st := range tc.steps {
				var got string
				switch st.op {
				case "reserve":
					got = map[reservation]string{refused: "refused", busy: "busy", reserved: "reserved", untracked: "untracked"}[first(th.reserve(k, now))]
				case "fail", "ok":
					banned, _ := th.finish(k, reserved, now, st.op == "fail")
					if banned {
						got = "banned"
					}
				case "cancel":
					th.cancel(k, reserved, now)
				case "wait":
					now = now.Add(st.d)
				}
				if got != st.want {
					t.Fatalf("step %d (%s): %q; want %q", i, st.op, got, st.want)
				}
			}
			if th.size() > 1 {
				t.Errorf("%d entries for one key", th.size())
			}
		})
	}
}

func TestThrottleBanStartedOnce(t *testing.T) {
	t.Parallel()
	th := newTestThrottle(t, Config{MaxFailures: 2})
	k, now := ClientKey(ip1), time.Now()
	th.reserve(k, now)
	th.reserve(k, now)
	if banned, started := th.finish(k, reserved, now, true); banned || started {
		t.Fatal("the first failure banned")
	}
	if banned, started := th.finish(k, reserved, now, true); !banned || !started {
		t.Fatal("the second failure did not start the ban")
	}
	// Attempts not counted before the ban (the map was full) still end
	// banned, and start nothing.
	if banned, started := th.finish(k, untracked, now, true); !banned || started {
		t.Errorf("failure during the ban: banned %v, started %v; want true, false", banned, started)
	}
	if banned, started := th.finish(k, untracked, now, false); !banned || started {
		t.Errorf("success during the ban: banned %v, started %v; want true, false", banned, started)
	}
	if !th.blocked(k, now.Add(time.Minute)) {
		t.Error("a success lifted the ban")
	}
}

func TestThrottleBounded(t *testing.T) {
	t.Parallel()
	th := newTestThrottle(t, Config{MaxFailures: 2, FailureWindow: time.Minute, BanDuration: time.Hour})
	th.limit = 10
	now := time.Now()
	addr := func(i int) netip.Prefix { return ClientKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})) }
	fail := func(k netip.Prefix, now time.Time) {
		th.finish(k, first(th.reserve(k, now)), now, true)
	}

	// Counters only: old ones are evicted to make room.
	for i := range 100 {
		fail(addr(i), now)
		if n := th.size(); n > th.limit {
			t.Fatalf("%d entries; limit %d", n, th.limit)
		}
	}
	// Bans fill the map; further keys go uncounted but bans are kept.
	for i := range 20 {
		fail(addr(1000+i), now)
		fail(addr(1000+i), now)
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
	fail(addr(5000), later)
	if n := th.size(); n != 1 {
		t.Errorf("%d entries after the bans expired; want 1", n)
	}
	// Periodic pruning drops expired windows.
	fail(addr(5001), later.Add(pruneInterval))
	if n := th.size(); n != 1 {
		t.Errorf("%d entries after the window expired; want 1", n)
	}
}

func TestThrottleKeepsInFlight(t *testing.T) {
	t.Parallel()
	th := newTestThrottle(t, Config{MaxFailures: 2, FailureWindow: time.Minute, BanDuration: time.Hour})
	th.limit = 4
	now := time.Now()
	addr := func(i int) netip.Prefix { return ClientKey(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})) }

	// Four keys with an attempt in flight fill the map: neither pruning
	// (even long after, with no window running) nor eviction drops them.
	for i := range 4 {
		if res, _ := th.reserve(addr(i), now); res != reserved {
			t.Fatalf("key %d: %v", i, res)
		}
	}
	later := now.Add(time.Hour)
	if res, _ := th.reserve(addr(9), later); res != untracked {
		t.Fatalf("fifth key: %v; want untracked (no room)", res)
	}
	if n := th.size(); n != 4 {
		t.Fatalf("%d entries; want the 4 in flight", n)
	}
	// Their reservations still hold: each key has one slot left.
	for i := range 4 {
		if res, _ := th.reserve(addr(i), later); res != reserved {
			t.Errorf("key %d: %v; want reserved", i, res)
		}
		if res, _ := th.reserve(addr(i), later); res != refused && res != busy {
			t.Errorf("key %d: %v; want refused (2 in flight)", i, res)
		}
	}
	// Once they end, the entries can go.
	for i := range 4 {
		th.cancel(addr(i), reserved, later)
		th.finish(addr(i), reserved, later, false)
	}
	if n := th.size(); n != 0 {
		t.Errorf("%d entries after every attempt ended without failure; want 0", n)
	}
}

// TestAuthenticateContext: a login whose context ends returns the
// context's error; only a judged failure counts against the address.
func TestAuthenticateContext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cfg      Config
		password string
		canceled bool // canceled before the call; else a 20ms deadline
		hold     bool // every hashing slot is taken
		wantErr  error
		counted  int // throttle entries afterwards
	}{
		{"canceled before", Config{}, "alice-pw", true, false, context.Canceled, 0},
		{"during the failure delay", Config{FailureDelay: time.Hour}, "wrong", false, false, context.DeadlineExceeded, 1},
		{"waiting for a hashing slot", Config{MaxFailures: 1}, "alice-pw", false, true, context.DeadlineExceeded, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newTestStore(t, tc.cfg, testUsers(t))
			release := func() {}
			if tc.hold {
				release = holdAllHashing(t, s)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			if tc.canceled {
				cancel()
			}
			if u, err := s.Authenticate(ctx, "alice", tc.password, ip1); u != nil || !errors.Is(err, tc.wantErr) {
				t.Errorf("Authenticate = %v, %v; want %v", u, err, tc.wantErr)
			}
			if n := s.throttle.size(); n != tc.counted {
				t.Errorf("%d throttle entries; want %d", n, tc.counted)
			}
			// The address is not locked out: the right password logs in
			// (with max_failures 1, proof that the held reservation was
			// given back).
			release()
			if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", ip1); err != nil {
				t.Errorf("after a canceled login: %v; want success", err)
			}
		})
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		memMiB int
	}{
		{"default hash memory", 0},
		// 1 MiB hashes are memory-bound in 2 MiB: they wait for collections.
		{"tight hash memory", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newTestStore(t, Config{MaxFailures: 1000, MaxHashMemoryMiB: tc.memMiB}, testUsers(t))
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
		})
	}
}

// TestAuthenticateSimultaneous sends ten passwords from one address at once,
// nine wrong and one right: no more than max_failures may be judged, and
// the right one must get either a success (judged before any ban) or the
// answer the unjudged wrong ones get, never an answer of its own.
func TestAuthenticateSimultaneous(t *testing.T) {
	t.Parallel()
	const n, maxFailures = 10, 5
	for _, tc := range []struct {
		name      string
		rightAt   int   // position of the right password in the order of arrival
		wantRight error // its answer
		wantWrong int   // wrong passwords answered ErrInvalidCredentials
	}{
		// Four wrong ones and the right one are judged: no ban.
		{"right password first", 0, nil, 4},
		{"right password within the limit", maxFailures - 1, nil, 4},
		// Five wrong ones are judged, the last of them starts the ban.
		{"right password past the limit", maxFailures, ErrBlocked, 4},
		{"right password last", n - 1, ErrBlocked, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newTestStore(t, Config{MaxFailures: maxFailures}, testUsers(t))
			key := ClientKey(ip1)
			// No hash can start until every attempt has arrived: all of
			// them are in flight together.
			release := holdAllHashing(t, s)
			errs := make([]error, n)
			var returned atomic.Int32
			var wg sync.WaitGroup
			for i := range n {
				pw := "wrong"
				if i == tc.rightAt {
					pw = "alice-pw"
				}
				wg.Go(func() {
					_, errs[i] = s.Authenticate(t.Context(), "alice", pw, ip1)
					returned.Add(1)
				})
				// Let attempt i reserve (or be refused) before the next.
				testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("attempt %d arrived", i), func() bool {
					return s.throttle.inFlight(key)+int(returned.Load())+int(s.waiting.Load()) == i+1
				})
			}
			if got := s.throttle.inFlight(key); got != maxFailures {
				t.Errorf("%d attempts in flight; want %d", got, maxFailures)
			}
			release()
			wg.Wait()

			count := map[error]int{}
			for i, err := range errs {
				if i != tc.rightAt {
					count[err]++
				}
			}
			if count[ErrInvalidCredentials] != tc.wantWrong || count[ErrBlocked] != n-1-tc.wantWrong {
				t.Errorf("wrong passwords got %v; want %d ErrInvalidCredentials and %d ErrBlocked", count, tc.wantWrong, n-1-tc.wantWrong)
			}
			if err := errs[tc.rightAt]; !errors.Is(err, tc.wantRight) {
				t.Errorf("right password: %v; want %v", err, tc.wantRight)
			}
			if got := s.throttle.inFlight(key); got != 0 {
				t.Errorf("%d attempts still in flight", got)
			}
		})
	}
}

// TestAuthenticateSimultaneousRace is TestAuthenticateSimultaneous with the
// scheduler choosing the order, many times over.
func TestAuthenticateSimultaneousRace(t *testing.T) {
	t.Parallel()
	const n, maxFailures, rounds = 10, 5, 20
	s, _, _ := newTestStore(t, Config{MaxFailures: maxFailures}, testUsers(t))
	for round := range rounds {
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(round)})
		right := round % n
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			pw := "wrong"
			if i == right {
				pw = "alice-pw"
			}
			wg.Go(func() {
				<-start
				_, errs[i] = s.Authenticate(t.Context(), "alice", pw, ip)
			})
		}
		close(start)
		wg.Wait()

		judged := 0
		wrongGot := map[error]bool{}
		for i, err := range errs {
			if err == nil || err == ErrInvalidCredentials {
				judged++
			}
			if i != right {
				wrongGot[err] = true
			}
		}
		if judged > maxFailures {
			t.Errorf("round %d: %d passwords judged (%v); want at most %d", round, judged, errs, maxFailures)
		}
		if err := errs[right]; err != nil && !wrongGot[err] {
			t.Errorf("round %d: only the right password got %v (%v)", round, err, errs)
		}
	}
}

// TestFailureTiming: a wrong password for a user whose hash is cheap (a
// bcrypt user among argon2id users), an unknown user and a banned address
// are answered after the same time. Without the padding an unknown user
// costs an argon2id hash more than the bcrypt user.
func TestFailureTiming(t *testing.T) {
	// Not parallel: the other tests of the package would add noise.
	if testing.Short() {
		t.Skip("measures timing")
	}
	// The delay leaves room for the slowest hash under -race on a loaded
	// machine: timing is flat only while hashing takes less than it.
	const delay, attempts, margin = time.Second, 5, 25 * time.Millisecond
	dir := t.TempDir()
	var users []UserConfig
	for _, name := range []string{"a1", "a2", "a3"} {
		h, err := hashWithParams(name+"-pw", argonParams{memory: 32 * 1024, time: 1, threads: 1}) // tens of ms
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, UserConfig{Name: name, PasswordHash: h, Home: filepath.Join(dir, name)})
	}
	users = append(users, UserConfig{Name: "bc", PasswordHash: mustBcrypt(t, "bc-pw"), Home: filepath.Join(dir, "bc")}) // ~1 ms
	s, _, _ := newTestStore(t, Config{MaxFailures: 2, FailureDelay: delay, BanDuration: time.Hour}, users)
	banned := netip.MustParseAddr("192.0.2.200")
	for range 2 {
		_, _ = s.Authenticate(t.Context(), "a1", "wrong", banned)
	}

	next := 0
	measure := func(user string, ip netip.Addr, want error) time.Duration {
		if !ip.IsValid() { // a fresh address each time: no ban
			next++
			ip = netip.AddrFrom4([4]byte{10, 9, byte(next >> 8), byte(next)})
		}
		start := time.Now()
		_, err := s.Authenticate(t.Context(), user, "wrong", ip)
		d := time.Since(start)
		if err != want {
			t.Fatalf("Authenticate(%s) = %v; want %v", user, err, want)
		}
		return d
	}
	var bc, unknown, ban []time.Duration
	for range attempts { // interleaved, so that a slow moment hits all kinds
		bc = append(bc, measure("bc", netip.Addr{}, ErrInvalidCredentials))
		unknown = append(unknown, measure("nobody", netip.Addr{}, ErrInvalidCredentials))
		ban = append(ban, measure("bc", banned, ErrBlocked))
	}
	med := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	mBC, mUnknown, mBan := med(bc), med(unknown), med(ban)
	t.Logf("medians: bcrypt user %v, unknown user %v, banned address %v", mBC, mUnknown, mBan)
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"unknown user", mUnknown}, {"banned address", mBan}} {
		if diff := (c.d - mBC).Abs(); diff > margin {
			t.Errorf("%s answered in %v, bcrypt user in %v: %v apart; want at most %v", c.name, c.d, mBC, diff, margin)
		}
	}
	if mBC < delay {
		t.Errorf("wrong password answered after %v; want at least failure_delay %v", mBC, delay)
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
			wantErr: `users "b".home: %q is not a directory`,
		},
		{
			name: "relative home",
			setup: func(dir string) []UserConfig {
				return []UserConfig{
					{Name: "a", PasswordHash: hash, Home: filepath.Join(dir, "missing")},
					{Name: "b", PasswordHash: hash, Home: "rel/home"},
				}
			},
			wantErr: `users "b".home: "rel/home" is not an absolute path`,
		},
		{
			name: "invalid user",
			setup: func(dir string) []UserConfig {
				return []UserConfig{
					{Name: "a", PasswordHash: hash, Home: filepath.Join(dir, "missing")},
					{Name: "b", PasswordHash: "plain", Home: filepath.Join(dir, "b")},
				}
			},
			wantErr: `users "b".password_hash: not an argon2id or bcrypt hash`,
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

// first drops the wake channel of throttle.reserve.
func first(r reservation, _ <-chan struct{}) reservation { return r }
