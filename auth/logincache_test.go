package auth

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// TestLoginCache runs sequences of logins against a Store and checks, for
// each, the answer, whether it computed a hash, and whether the cache
// answered it.
func TestLoginCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	alice := UserConfig{Name: "alice", PasswordHash: mustHash(t, "a1"), Home: filepath.Join(dir, "alice")}
	aliceNew := alice
	aliceNew.PasswordHash = mustHash(t, "a2")
	aliceSame := alice
	aliceSame.PasswordHash = mustHash(t, "a1") // same password, new salt: another hash
	aliceOff := alice
	aliceOff.Disabled = true
	aliceLAN := alice
	aliceLAN.AllowedNetworks = []string{"198.51.100.0/24"}
	bob := UserConfig{Name: "bob", PasswordHash: mustBcrypt(t, "b1"), Home: filepath.Join(dir, "bob")}
	carol := UserConfig{Name: "carol", PasswordHash: mustHash(t, "c1"), Home: filepath.Join(dir, "carol"), AllowedNetworks: []string{"192.0.2.0/24"}}
	users := []UserConfig{alice, bob, carol}
	outside := netip.MustParseAddr("203.0.113.9")

	type step struct {
		name, pw string
		ip       netip.Addr    // default ip1
		advance  time.Duration // before the login
		reload   []UserConfig  // before the login: a reload with these users
		want     error         // nil, or what errors.Is must match
		hashed   bool          // the login computed a hash
		hit      bool          // the cache answered it
	}
	dur := func(d time.Duration) *time.Duration { return &d }
	ttl := time.Minute
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"second login hits", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", hit: true},
			{name: "alice", pw: "a1", ip: ip2, hit: true}, // another address of the same user
			{name: "bob", pw: "b1", hashed: true},         // bcrypt too
			{name: "bob", pw: "b1", hit: true},
		}},
		{"wrong password never hits", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1x", want: ErrInvalidCredentials, hashed: true},
			{name: "alice", pw: "", want: ErrInvalidCredentials, hashed: true},
			{name: "alice", pw: "b1", want: ErrInvalidCredentials, hashed: true}, // another user's password
			{name: "bob", pw: "a1", want: ErrInvalidCredentials, hashed: true},
			{name: "alice", pw: "a1", hit: true}, // a wrong password does not drop the entry
		}},
		{"unknown user never hits", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "Alice", pw: "a1", want: ErrInvalidCredentials, hashed: true},
		}},
		{"expiry", Config{LoginCacheTTL: &ttl}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", advance: ttl - time.Nanosecond, hit: true},
			{name: "alice", pw: "a1", advance: time.Nanosecond, hashed: true}, // counted from the full verification
			{name: "alice", pw: "a1", hit: true},
		}},
		{"eviction of the oldest", Config{LoginCacheSize: 2}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "bob", pw: "b1", hashed: true},
			{name: "alice", pw: "a1", hit: true},
			{name: "carol", pw: "c1", hashed: true}, // evicts alice, the oldest entry
			{name: "alice", pw: "a1", hashed: true}, // evicts bob
			{name: "carol", pw: "c1", hit: true},
			{name: "bob", pw: "b1", hashed: true},
		}},
		{"off", Config{LoginCacheTTL: dur(0)}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", hashed: true},
		}},
		{"changed password", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", reload: []UserConfig{aliceNew, bob}, want: ErrInvalidCredentials, hashed: true},
			{name: "alice", pw: "a2", hashed: true},
			{name: "alice", pw: "a2", hit: true},
		}},
		{"same password, new hash", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", reload: []UserConfig{aliceSame, bob}, hashed: true},
		}},
		{"reload clears", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", reload: users, hashed: true},
			{name: "alice", pw: "a1", hit: true},
		}},
		{"disabled user refused though cached", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", reload: []UserConfig{aliceOff, bob}, want: ErrInvalidCredentials, hashed: true},
		}},
		{"outside allowed_networks refused though cached", Config{}, []step{
			{name: "carol", pw: "c1", hashed: true},
			{name: "carol", pw: "c1", hit: true},
			{name: "carol", pw: "c1", ip: outside, want: ErrNetworkRefused, hashed: true}, // full hash: the refusal confirms nothing
			{name: "carol", pw: "c1", hit: true},
		}},
		{"allowed_networks narrowed by a reload", Config{}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", reload: []UserConfig{aliceLAN, bob}, want: ErrNetworkRefused, hashed: true},
		}},
		{"banned address refused though cached", Config{MaxFailures: 2}, []step{
			{name: "alice", pw: "a1", hashed: true},
			{name: "alice", pw: "a1", hit: true},
			{name: "alice", pw: "x", want: ErrInvalidCredentials, hashed: true},
			{name: "alice", pw: "y", want: ErrBlocked, hashed: true}, // starts the ban
			{name: "alice", pw: "a1", want: ErrBlocked},              // neither hashed nor looked up
			{name: "alice", pw: "a1", ip: ip2, hit: true},            // another address is not banned
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			if cfg.MaxFailures == 0 {
				cfg.MaxFailures = 1000
			}
			s, clk, _ := newTestStore(t, cfg, users)
			for i, st := range tc.steps {
				if st.reload != nil {
					p, err := s.PrepareReload(cfg, st.reload)
					if err != nil {
						t.Fatalf("step %d: PrepareReload: %v", i, err)
					}
					p.Apply()
				}
				clk.Advance(st.advance)
				ip := st.ip
				if !ip.IsValid() {
					ip = ip1
				}
				hashed, before := s.hashed.Load(), s.LoginCacheStats()
				u, err := s.Authenticate(context.Background(), st.name, st.pw, ip)
				after := s.LoginCacheStats()
				switch {
				case st.want == nil && (err != nil || u == nil || u.Name != st.name):
					t.Fatalf("step %d: Authenticate(%q, %q) = %v, %v; want user %s", i, st.name, st.pw, u, err, st.name)
				case st.want != nil && !errors.Is(err, st.want):
					t.Fatalf("step %d: Authenticate(%q, %q) = %v, %v; want %v", i, st.name, st.pw, u, err, st.want)
				}
				if got := s.hashed.Load() > hashed; got != st.hashed {
					t.Errorf("step %d (%s %q): hashed = %v, want %v", i, st.name, st.pw, got, st.hashed)
				}
				if got := after.Hits > before.Hits; got != st.hit {
					t.Errorf("step %d (%s %q): cache hit = %v, want %v", i, st.name, st.pw, got, st.hit)
				}
				if st.hit && st.hashed {
					t.Fatalf("step %d: a test step cannot both hit and hash", i)
				}
			}
		})
	}
}

// TestLoginCacheWrongPasswordTakesFullTime: with the right password
// cached, a wrong one still pays the hash and failure_delay.
func TestLoginCacheWrongPasswordTakesFullTime(t *testing.T) {
	t.Parallel()
	const delay = 50 * time.Millisecond
	users := testUsers(t)
	s, _, _ := newTestStore(t, Config{MaxFailures: 1000, FailureDelay: delay}, users)
	ctx := context.Background()
	for range 2 {
		if _, err := s.Authenticate(ctx, "alice", "alice-pw", ip1); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.LoginCacheStats(); st.Hits != 1 || st.Misses != 1 || st.Entries != 1 {
		t.Fatalf("LoginCacheStats = %+v, want 1 hit, 1 miss, 1 entry", st)
	}
	for _, pw := range []string{"alice-pw ", "alice-p", "Alice-pw"} {
		hashed := s.hashed.Load()
		start := time.Now()
		_, err := s.Authenticate(ctx, "alice", pw, ip1)
		if took := time.Since(start); took < delay || !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("wrong password %q: %v after %v; want ErrInvalidCredentials after at least %v", pw, err, took, delay)
		}
		if s.hashed.Load() != hashed+1 {
			t.Errorf("wrong password %q was not hashed", pw)
		}
	}
}

// TestLoginCacheEntries checks the cache itself: what a MAC binds, that
// the entry holds no password, that a MAC differing anywhere misses,
// replacement and eviction order, and expired entries being dropped.
func TestLoginCacheEntries(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c, err := newLoginCache(time.Minute, 2)
	if err != nil || c == nil {
		t.Fatalf("newLoginCache = %v, %v", c, err)
	}
	if off, err := newLoginCache(0, 10); off != nil || err != nil {
		t.Fatalf("newLoginCache(0, 10) = %v, %v; want nil (off)", off, err)
	}

	base := c.sum("alice", "password", "$hash")
	for _, tc := range []struct {
		name                string
		user, pass, encoded string
	}{
		{"other user", "bob", "password", "$hash"},
		{"other password", "alice", "passwore", "$hash"},
		{"other hash", "alice", "password", "$hasi"},
		{"field boundary moved", "alicep", "assword", "$hash"},
		{"password into hash", "alice", "passwor", "d$hash"},
	} {
		if c.sum(tc.user, tc.pass, tc.encoded) == base {
			t.Errorf("%s: same MAC as the original", tc.name)
		}
	}
	other, _ := newLoginCache(time.Minute, 2)
	if other.sum("alice", "password", "$hash") == base {
		t.Error("two caches (two secrets) give the same MAC")
	}

	c.add("alice", base, now)
	e := c.m["alice"].Value.(*cacheEntry)
	if bytes.Contains(e.mac[:], []byte("password")) || e.mac != base {
		t.Error("the entry holds something other than the MAC")
	}
	if !c.hit("alice", base, now) {
		t.Fatal("no hit for the MAC just added")
	}
	for _, i := range []int{0, 15, 31} { // first, middle, last byte
		bad := base
		bad[i] ^= 1
		if c.hit("alice", bad, now) {
			t.Errorf("MAC with byte %d changed hits", i)
		}
	}
	if c.hit("bob", base, now) {
		t.Error("alice's MAC hits for bob")
	}

	b, a2 := c.sum("bob", "pw", ""), c.sum("alice", "new", "")
	c.add("bob", b, now.Add(time.Second))
	c.add("alice", a2, now.Add(2*time.Second)) // replaces alice's entry, now the newest
	if c.hit("alice", base, now) || !c.hit("alice", a2, now) {
		t.Error("a new entry for alice did not replace the old one")
	}
	c.add("carol", c.sum("carol", "pw", ""), now.Add(3*time.Second)) // full: bob, the oldest, goes
	if c.hit("bob", b, now.Add(3*time.Second)) || !c.hit("alice", a2, now.Add(3*time.Second)) || c.len() != 2 {
		t.Errorf("eviction: want bob evicted and alice kept (%d entries)", c.len())
	}
	// At alice's expiry she is dropped, carol (added later) stays.
	if c.hit("alice", a2, now.Add(2*time.Second+time.Minute)) || c.len() != 1 {
		t.Errorf("expired entry kept: %d entries, want 1", c.len())
	}
}
