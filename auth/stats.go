package auth

import "time"

// ActiveBans is the number of clients (IPv4 addresses or IPv6 /64s) banned
// right now, for metrics. It walks the throttle's table (at most
// 100 000 entries) under its lock: call it at scrape time, not per login.
func (s *Store) ActiveBans() int {
	return s.throttle.activeBans(s.now())
}

func (t *throttle) activeBans(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range t.m {
		if now.Before(r.bannedUntil) {
			n++
		}
	}
	return n
}
