package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestNeverBanValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		list    []string
		wantErr []string // none: valid
	}{
		{list: nil},
		{list: []string{"10.0.0.0/8", "127.0.0.2", "2001:db8::/32", "::1", "192.0.2.7/24"}},
		{list: []string{"10.0.0.0/33"}, wantErr: []string{`auth.never_ban[0]: "10.0.0.0/33" is not a CIDR network`}},
		{list: []string{"10.0.0.0/8", "example.com"}, wantErr: []string{`auth.never_ban[1]: "example.com" is not a CIDR network or an IP address`}},
		{list: []string{"fe80::1%eth0"}, wantErr: []string{`auth.never_ban[0]: "fe80::1%eth0" is not`}},
		{list: []string{""}, wantErr: []string{`auth.never_ban[0]: "" is not`}},
	} {
		t.Run(fmt.Sprintf("%q", tc.list), func(t *testing.T) {
			t.Parallel()
			cfg := Config{NeverBan: tc.list}
			testutil.AssertErrContains(t, "Validate()", cfg.Validate(), tc.wantErr...)
		})
	}
	cfg := Config{NeverBan: []string{"192.0.2.7/24", "::ffff:10.0.0.1", " ::ffff:198.51.100.0/120 "}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("198.51.100.0/24")}
	if got := cfg.neverBan(); !slices.Equal(got, want) {
		t.Errorf("neverBan() = %v, want %v (masked, unmapped)", got, want)
	}
}

// TestNeverBan: addresses in never_ban get as many wrong passwords as they
// like and still log in; everyone else is banned after max_failures.
func TestNeverBan(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 2, FailureWindow: time.Hour, BanDuration: time.Hour,
		NeverBan: []string{"127.0.0.2", "10.1.0.0/16", "2001:db8:1::/48", "::ffff:192.0.2.0/120", "fe80::/10"}}
	s, _, logs := newTestStore(t, cfg, testUsers(t))
	for _, tc := range []struct {
		ip     string
		banned bool
	}{
		{"127.0.0.1", true}, // loopback is not exempt by default
		{"127.0.0.2", false},
		{"::ffff:127.0.0.2", false}, // mapped counts as IPv4
		{"10.1.200.3", false},
		{"10.2.0.1", true},
		{"2001:db8:1:5::9", false},
		{"2001:db8:2::1", true},
		{"192.0.2.9", false},    // a network written IPv4-mapped
		{"fe80::1%eth0", false}, // a link-local client has a zone
	} {
		ip := netip.MustParseAddr(tc.ip)
		for i := range cfg.MaxFailures + 2 {
			_, err := s.Authenticate(t.Context(), "alice", "wrong", ip)
			if !errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrBlocked) {
				t.Fatalf("%s: failure %d: %v", ip, i+1, err)
			}
		}
		_, err := s.Authenticate(t.Context(), "alice", "alice-pw", ip)
		if banned := errors.Is(err, ErrBlocked); banned != tc.banned || (!banned && err != nil) {
			t.Errorf("%s after %d wrong passwords: right password gives %v; want banned=%t", ip, cfg.MaxFailures+2, err, tc.banned)
		}
		listed := slices.ContainsFunc(s.Bans(), func(b Ban) bool { return b.Client == ClientKey(ip) })
		if listed != tc.banned {
			t.Errorf("%s: in Bans() = %t, want %t", ip, listed, tc.banned)
		}
	}
	if n := strings.Count(logs.String(), "login ban started"); n != 3 {
		t.Errorf("%d bans logged, want 3:\n%s", n, logs)
	}

	// A reload that adds an address lets it in at once, though its ban
	// is still recorded; one that removes it counts it again.
	lo := netip.MustParseAddr("127.0.0.1")
	cfg.NeverBan = []string{"127.0.0.0/8"}
	p, err := s.PrepareReload(cfg, testUsers(t))
	if err != nil {
		t.Fatal(err)
	}
	p.Apply()
	if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", lo); err != nil {
		t.Errorf("banned address added to never_ban by a reload: %v, want a login", err)
	}
	cfg.NeverBan = nil
	if p, err = s.PrepareReload(cfg, testUsers(t)); err != nil {
		t.Fatal(err)
	}
	p.Apply()
	if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", lo); !errors.Is(err, ErrBlocked) {
		t.Errorf("never_ban emptied by a reload: %v, want ErrBlocked", err)
	}
}

func TestBansAndUnban(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 3, FailureWindow: 10 * time.Minute, BanDuration: time.Hour}
	s, clk, _ := newTestStore(t, cfg, testUsers(t))
	fail := func(ip string, n int) {
		for range n {
			s.Authenticate(t.Context(), "bob", "wrong", netip.MustParseAddr(ip))
		}
	}
	start := clk.Now()
	fail("192.0.2.9", 3) // banned until start+1h
	clk.Advance(time.Minute)
	fail("2001:db8::1", 3) // banned until start+1h1m, as its /64
	fail("192.0.2.1", 2)   // counting
	fail("192.0.2.2", 1)   // counting

	want := []Ban{
		{Client: netip.MustParsePrefix("192.0.2.9/32"), Until: start.Add(time.Hour)},
		{Client: netip.MustParsePrefix("2001:db8::/64"), Until: start.Add(time.Hour + time.Minute)},
		{Client: netip.MustParsePrefix("192.0.2.1/32"), Failures: 2},
		{Client: netip.MustParsePrefix("192.0.2.2/32"), Failures: 1},
	}
	if got := s.Bans(); !slices.Equal(got, want) {
		t.Fatalf("Bans() = %v\nwant %v", got, want)
	}

	for _, tc := range []struct {
		ip      string
		key     string
		removed bool
	}{
		{"192.0.2.9", "192.0.2.9/32", true},
		{"192.0.2.9", "192.0.2.9/32", false}, // already lifted
		{"2001:db8::ffff", "2001:db8::/64", true},
		{"192.0.2.2", "192.0.2.2/32", true}, // failures only
		{"198.51.100.1", "198.51.100.1/32", false},
		{"::ffff:192.0.2.1", "192.0.2.1/32", true},
	} {
		k, ok := s.Unban(netip.MustParseAddr(tc.ip))
		if k.String() != tc.key || ok != tc.removed {
			t.Errorf("Unban(%s) = %v, %t; want %s, %t", tc.ip, k, ok, tc.key, tc.removed)
		}
	}
	if got := s.Bans(); len(got) != 0 {
		t.Errorf("Bans() after lifting all = %v, want none", got)
	}
	for _, ip := range []string{"192.0.2.9", "2001:db8::1"} {
		if _, err := s.Authenticate(t.Context(), "bob", "bob-pw", netip.MustParseAddr(ip)); err != nil {
			t.Errorf("%s after Unban: %v, want a login", ip, err)
		}
	}
	// The count starts afresh: two failures do not ban.
	fail("192.0.2.1", 2)
	if _, err := s.Authenticate(t.Context(), "bob", "bob-pw", netip.MustParseAddr("192.0.2.1")); err != nil {
		t.Errorf("after Unban and two failures: %v, want a login", err)
	}
	// Failures age out of the list with their window.
	clk.Advance(cfg.FailureWindow)
	if got := s.Bans(); len(got) != 0 {
		t.Errorf("Bans() once the window passed = %v, want none", got)
	}
}

// TestUnbanPersists: a ban lifted and then saved stays lifted after a
// restart, while the others stay.
func TestUnbanPersists(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 2, FailureWindow: time.Hour, BanDuration: time.Hour, FailureDelay: time.Millisecond}
	users := testUsers(t)
	first, err := New(cfg, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		first.Authenticate(t.Context(), "bob", "wrong", ip1)
		first.Authenticate(t.Context(), "bob", "wrong", ip2)
	}
	path := filepath.Join(t.TempDir(), "bans.json")
	if err := first.SaveBans(path); err != nil {
		t.Fatal(err)
	}
	if _, ok := first.Unban(ip1); !ok {
		t.Fatal("Unban found no ban")
	}
	if err := first.SaveBans(path); err != nil {
		t.Fatal(err)
	}
	second, err := New(cfg, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.LoadBans(path); err != nil {
		t.Fatal(err)
	}
	got := second.Bans()
	if len(got) != 1 || got[0].Client != ClientKey(ip2) || got[0].Until.IsZero() {
		t.Errorf("bans after a restart = %v, want only %s banned", got, ip2)
	}
	if _, err := second.Authenticate(t.Context(), "bob", "bob-pw", ip1); err != nil {
		t.Errorf("lifted ban after a restart: %v, want a login", err)
	}
}
