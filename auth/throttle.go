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
	inFlight    int       // attempts reserved and not yet finished
}

// idleAt reports whether r holds nothing worth keeping at now: no attempt
// in flight, no running ban and no running window.
func (r ipRecord) idleAt(now time.Time, window time.Duration) bool {
	return r.inFlight == 0 && !now.Before(r.bannedUntil) && (r.failures == 0 || now.Sub(r.windowStart) >= window)
}

// reservation is the outcome of throttle.reserve.
type reservation uint8

const (
	// refused: the key is banned, or its failures alone already reach
	// max_failures. The password must not be judged.
	refused reservation = iota
	// busy: the failures and the attempts in flight reach max_failures
	// together. The attempt may wait for one in flight to end (its
	// outcome decides) and ask again.
	busy
	// reserved: the attempt counts in its key's inFlight until finish or
	// cancel.
	reserved
	// untracked: the map is full of running bans and this key has no
	// entry; the attempt goes uncounted (it still gets the delay).
	untracked
	// exempt: the address is in auth.never_ban; nothing is counted.
	exempt
)

// throttle counts failed logins per key and bans keys that fail too often.
// Attempts are counted before their password is judged (reserve), so that
// simultaneous attempts cannot get more than maxFailures passwords judged
// per window between them.
type throttle struct {
	maxFailures int
	window, ban time.Duration
	limit       int // most entries kept
	neverBan    []netip.Prefix

	mu        sync.Mutex
	m         map[netip.Prefix]ipRecord
	lastPrune time.Time
	// ended is closed (and replaced) whenever an attempt in flight ends,
	// to wake the attempts that wait on a busy key.
	ended chan struct{}
}

func newThrottle(cfg Config) *throttle {
	return &throttle{
		maxFailures: cfg.MaxFailures,
		window:      cfg.FailureWindow,
		ban:         cfg.BanDuration,
		limit:       maxThrottleEntries,
		neverBan:    cfg.neverBan(),
		m:           make(map[netip.Prefix]ipRecord),
		ended:       make(chan struct{}),
	}
}

// endedLocked wakes the attempts waiting for a busy key.
func (t *throttle) endedLocked() {
	close(t.ended)
	t.ended = make(chan struct{})
}

// setLimits puts a reloaded configuration's limits in force; the counts
// and bans are kept.
func (t *throttle) setLimits(cfg Config) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maxFailures, t.window, t.ban = cfg.MaxFailures, cfg.FailureWindow, cfg.BanDuration
	t.neverBan = cfg.neverBan()
}

// exempt reports whether ip is in a never_ban network: its logins bypass
// the throttle altogether, a ban recorded earlier included.
func (t *throttle) exempt(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("") // a zoned address matches no Prefix
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.neverBan {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// limits returns max_failures and ban_duration in force.
func (t *throttle) limits() (int, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.maxFailures, t.ban
}

// reserve asks to judge one password of k at now. An attempt is reserved
// only while the failures in k's window plus the attempts in flight stay
// within maxFailures: every reserved attempt could fail, and all of them
// failing must not judge more than maxFailures passwords.
//
// When it answers busy, wake is closed once some attempt in flight ends.
func (t *throttle) reserve(k netip.Prefix, now time.Time) (res reservation, wake <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastPrune) >= pruneInterval {
		t.pruneLocked(now)
	}
	r, ok := t.m[k]
	if !ok && !t.makeRoomLocked(now) {
		return untracked, nil
	}
	if now.Before(r.bannedUntil) {
		return refused, nil
	}
	if r.failures > 0 && now.Sub(r.windowStart) >= t.window {
		r.failures, r.windowStart = 0, time.Time{}
	}
	switch {
	case r.failures >= t.maxFailures:
		return refused, nil
	case r.failures+r.inFlight >= t.maxFailures:
		return busy, t.ended
	}
	r.inFlight++
	t.m[k] = r
	return reserved, nil
}

// cancel gives back a reservation whose password was not judged.
func (t *throttle) cancel(k netip.Prefix, res reservation, now time.Time) {
	if res != reserved {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.m[k]; ok && r.inFlight > 0 { // ok: an entry in flight is never dropped
		r.inFlight--
		t.storeLocked(k, r, now)
		t.endedLocked()
	}
}

// finish ends the attempt reserved as res, whose password was judged at
// now (failed is true for a wrong password or an unknown user). It reports
// whether k is banned at now, including by the ban this failure started:
// every attempt that ends during a ban gets the same answer whatever its
// password, so a ban cannot confirm a password. A success clears nothing:
// failures age out of their window, so one valid account cannot be used to
// reset the count while guessing another's password.
func (t *throttle) finish(k netip.Prefix, res reservation, now time.Time, failed bool) (banned, banStarted bool) {
	if res == exempt {
		return false, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	if res == reserved && ok && r.inFlight > 0 {
		r.inFlight--
		defer t.endedLocked()
	}
	if !ok {
		if !failed || !t.makeRoomLocked(now) {
			return false, false // untracked, and still no room
		}
	}
	if now.Before(r.bannedUntil) {
		t.storeLocked(k, r, now)
		return true, false // banned while this attempt was being verified
	}
	if failed {
		if r.failures == 0 || now.Sub(r.windowStart) >= t.window {
			r.failures, r.windowStart = 0, now
		}
		r.failures++
		if r.failures >= t.maxFailures {
			r.failures, r.windowStart, r.bannedUntil = 0, time.Time{}, now.Add(t.ban)
			banned, banStarted = true, true
		}
	}
	t.storeLocked(k, r, now)
	return banned, banStarted
}

// storeLocked keeps r as k's record, or drops it if it holds nothing (an
// address that only ever logs in successfully keeps no entry).
func (t *throttle) storeLocked(k netip.Prefix, r ipRecord, now time.Time) {
	if r.idleAt(now, t.window) {
		delete(t.m, k)
		return
	}
	t.m[k] = r
}

// merge puts what the cluster knows of k in its record: a ban until
// bannedUntil (the longer ban wins) and failures counted since
// windowStart (the larger count wins). Zero values add nothing.
func (t *throttle) merge(k netip.Prefix, now, bannedUntil time.Time, failures int, windowStart time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	if !ok && !t.makeRoomLocked(now) {
		return
	}
	if bannedUntil.After(r.bannedUntil) {
		r.bannedUntil = bannedUntil
	}
	if failures > 0 && now.Sub(windowStart) < t.window {
		if r.failures > 0 && now.Sub(r.windowStart) >= t.window {
			r.failures, r.windowStart = 0, time.Time{}
		}
		if failures > r.failures {
			r.failures, r.windowStart = failures, windowStart
		}
	}
	t.storeLocked(k, r, now)
}

// clear lifts k's ban and forgets its failures; it reports false when
// there was neither. Attempts in flight keep their reservations.
func (t *throttle) clear(k netip.Prefix, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	if !ok || (!now.Before(r.bannedUntil) && (r.failures == 0 || now.Sub(r.windowStart) >= t.window)) {
		return false
	}
	r.failures, r.windowStart, r.bannedUntil = 0, time.Time{}, time.Time{}
	t.storeLocked(k, r, now)
	t.endedLocked() // attempts waiting on this key may now be judged
	return true
}

// blocked reports whether k is banned at now (for tests).
func (t *throttle) blocked(k netip.Prefix, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	return ok && now.Before(r.bannedUntil)
}

// makeRoomLocked makes sure a new entry fits, pruning and then evicting a
// key that is only counting failures. It reports false if every entry is a
// running ban or has attempts in flight (whose reservations must hold).
func (t *throttle) makeRoomLocked(now time.Time) bool {
	if len(t.m) < t.limit {
		return true
	}
	t.pruneLocked(now)
	if len(t.m) < t.limit {
		return true
	}
	for k, r := range t.m { // random order: no key is always the victim
		if r.inFlight == 0 && !now.Before(r.bannedUntil) {
			delete(t.m, k)
			return true
		}
	}
	return false
}

// pruneLocked drops entries with no attempt in flight, no running ban and
// no running window.
func (t *throttle) pruneLocked(now time.Time) {
	t.lastPrune = now
	for k, r := range t.m {
		if r.idleAt(now, t.window) {
			delete(t.m, k)
		}
	}
}

// inFlight is the number of attempts of k in flight (for tests).
func (t *throttle) inFlight(k netip.Prefix) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k].inFlight
}

// size is the number of entries (for tests).
func (t *throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
