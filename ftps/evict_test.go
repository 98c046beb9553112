package ftps

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

// TestPreloginVictim: eviction takes the least advanced session first,
// then the oldest of the client (IPv4 address, IPv6 /48) holding the most,
// and never one whose password is being checked.
func TestPreloginVictim(t *testing.T) {
	t0 := time.Now()
	type sess struct {
		name   string
		remote string
		stage  int32
		age    time.Duration // how long ago it connected
	}
	tests := []struct {
		name     string
		sessions []sess
		want     string // "" for none
	}{
		{"plain before TLS, whatever the count", []sess{
			{"legit-tls", "198.51.100.1:1", stageTLS, 10 * time.Second},
			{"attacker-plain", "203.0.113.1:1", stageConnected, time.Second},
		}, "attacker-plain"},
		{"no USER before USER", []sess{
			{"legit-user", "198.51.100.1:1", stageUser, 10 * time.Second},
			{"attacker-tls", "203.0.113.1:1", stageTLS, time.Second},
			{"attacker-tls2", "203.0.113.1:2", stageTLS, 2 * time.Second},
		}, "attacker-tls2"},
		{"most connections, then oldest", []sess{
			{"nat-user-a", "198.51.100.1:1", stageConnected, 10 * time.Second},
			{"attacker-1", "203.0.113.1:1", stageConnected, 2 * time.Second},
			{"attacker-2", "203.0.113.1:2", stageConnected, 3 * time.Second},
			{"attacker-3", "203.0.113.1:3", stageConnected, 1 * time.Second},
		}, "attacker-2"},
		{"IPv6 counted by /48", []sess{
			{"other", "[2001:db8:1::1]:1", stageConnected, 10 * time.Second},
			{"v6-a", "[2001:db8:2:1::1]:1", stageConnected, 2 * time.Second},
			{"v6-b", "[2001:db8:2:2::1]:1", stageConnected, 3 * time.Second},
		}, "v6-b"},
		{"password being checked is never taken", []sess{
			{"checking", "198.51.100.1:1", stageChecking, 10 * time.Second},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{prelogin: make(map[*session]struct{})}
			names := make(map[*session]string)
			for _, x := range tt.sessions {
				remote := netip.MustParseAddrPort(x.remote)
				p := &session{remote: remote, key: auth.ClientKey(remote.Addr()), started: t0.Add(-x.age)}
				p.stage.Store(x.stage)
				s.prelogin[p] = struct{}{}
				names[p] = x.name
			}
			got := ""
			if v := s.preloginVictimLocked(); v != nil {
				got = names[v]
			}
			if got != tt.want {
				t.Errorf("victim %q, want %q", got, tt.want)
			}
		})
	}
}
