package auth

import (
	"net/netip"
	"sync"
	"time"
)

const (
	// maxThrottleEntries bounds the throttle map (about 100 bytes an entry).
	maxThrottleEntries = 100_000
	// pruneInterval is how often expired entries are swept.
	pruneInterval = time.Minute
)

// ClientKey is the unit that per-client limits count: an IPv4 address, or
// the /64 of an IPv6 address (one IPv6 host commonly owns a whole /64, and
// could otherwise step around a limit by changing address). IPv4 addresses
// mapped into IPv6 count as IPv4. The login throttle uses it, and so does
// ftps for its per-client connection limit.
func ClientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits) // cannot fail for these sizes; zero Addr gives the zero Prefix
	return p
}

// ipRecord is the state of one key.
type ipRecord struct {
	failures    int       // failures in the window that started at windowStart
	windowStart time.Time // time of the first failure counted
	bannedUntil time.Time // zero, or the end of a ban
}

// throttle counts failed logins per key and bans keys that fail too often.
type throttle struct {
	maxFailures int
	window, ban time.Duration
	limit       int // most entries kept

	mu        sync.Mutex
	m         map[netip.Prefix]ipRecord
	lastPrune time.Time
}

func newThrottle(cfg Config) *throttle {
	return &throttle{
		maxFailures: cfg.MaxFailures,
		window:      cfg.FailureWindow,
		ban:         cfg.BanDuration,
		limit:       maxThrottleEntries,
		m:           make(map[netip.Prefix]ipRecord),
	}
}

// blocked reports whether k is banned at now.
func (t *throttle) blocked(k netip.Prefix, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	return ok && now.Before(r.bannedUntil)
}

// failure counts a failed login of k at now and reports whether it started a
// ban (true only for the failure that reached MaxFailures).
func (t *throttle) failure(k netip.Prefix, now time.Time) (banStarted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastPrune) >= pruneInterval {
		t.pruneLocked(now)
	}
	r, ok := t.m[k]
	if !ok && !t.makeRoomLocked(now) {
		return false // full of bans; this key goes uncounted (it still gets the delay)
	}
	if now.Before(r.bannedUntil) {
		return false // banned while this attempt was being verified
	}
	if r.failures == 0 || now.Sub(r.windowStart) >= t.window {
		r.failures, r.windowStart = 0, now
	}
	r.failures++
	if r.failures >= t.maxFailures {
		r.failures, r.windowStart, r.bannedUntil = 0, time.Time{}, now.Add(t.ban)
		banStarted = true
	}
	t.m[k] = r
	return banStarted
}

// success reports whether k is banned at now (a ban that started while
// this login was being verified). It clears nothing: failures age out of
// their window, so one valid account cannot be used to reset the count
// while guessing another's password.
func (t *throttle) success(k netip.Prefix, now time.Time) (banned bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	return ok && now.Before(r.bannedUntil)
}

// makeRoomLocked makes sure a new entry fits, pruning and then evicting a
// key that is only counting failures. It reports false if every entry is a
// running ban.
func (t *throttle) makeRoomLocked(now time.Time) bool {
	if len(t.m) < t.limit {
		return true
	}
	t.pruneLocked(now)
	if len(t.m) < t.limit {
		return true
	}
	for k, r := range t.m { // random order: no key is always the victim
		if !now.Before(r.bannedUntil) {
			delete(t.m, k)
			return true
		}
	}
	return false
}

// pruneLocked drops entries with neither a running ban nor a running window.
func (t *throttle) pruneLocked(now time.Time) {
	t.lastPrune = now
	for k, r := range t.m {
		if !now.Before(r.bannedUntil) && (r.failures == 0 || now.Sub(r.windowStart) >= t.window) {
			delete(t.m, k)
		}
	}
}

// size is the number of entries (for tests).
func (t *throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
