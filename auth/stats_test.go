package auth

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// TestActiveBans counts bans as they start and expire.
func TestActiveBans(t *testing.T) {
	t.Parallel()
	s, clk, _ := newTestStore(t, Config{MaxFailures: 1, FailureWindow: time.Minute, BanDuration: 10 * time.Minute}, testUsers(t))
	if n := s.ActiveBans(); n != 0 {
		t.Fatalf("ActiveBans() = %d on a fresh store", n)
	}
	steps := []struct {
		ip      string
		advance time.Duration
		want    int
	}{
		{"192.0.2.1", 0, 1},
		{"192.0.2.2", time.Minute, 2},
		{"192.0.2.2", 0, 2},                   // banned already: no new ban
		{"2001:db8::1", 0, 3},                 // IPv6 /64s count as one client each
		{"2001:db8::2", 9 * time.Minute, 2},   // the first ban has expired
		{"2001:db8:1::1", 2 * time.Minute, 1}, // so has the second
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		_, err := s.Authenticate(t.Context(), "bob", "wrong", netip.MustParseAddr(st.ip))
		if !errors.Is(err, ErrBlocked) {
			t.Fatalf("failure from %s: %v, want ErrBlocked (max_failures 1)", st.ip, err)
		}
		if n := s.ActiveBans(); n != st.want {
			t.Errorf("after a failure from %s: ActiveBans() = %d, want %d", st.ip, n, st.want)
		}
	}
}
