package auth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrInvalidCredentials is the answer to an unknown user name and to a wrong
// password alike, so that the two cannot be told apart.
var ErrInvalidCredentials = errors.New("invalid user name or password")

// ErrBlocked is the answer to every login from an address that is banned
// after too many failures, whatever the password, and to a login that
// would take the address past max_failures passwords judged per window.
var ErrBlocked = errors.New("too many failed logins from this address")

// ErrNetworkRefused answers a right password from an address outside the
// user's allowed_networks. It counts as a failure and is an
// ErrInvalidCredentials (errors.Is), so the client cannot tell it from a
// wrong password: the password stays unconfirmed from there.
var ErrNetworkRefused = fmt.Errorf("%w: address not in the user's allowed_networks", ErrInvalidCredentials)

// homeMode is the mode of home directories New creates.
const homeMode fs.FileMode = 0o750

// User is an authenticated user, as the control layer needs it.
type User struct {
	Name  string // login name
	Home  string // absolute, cleaned path of the home directory
	Perms Perm   // what the user may do inside Home
	// Limits are the user's limits, defaults of [limits] applied.
	Limits Limits
}

// Store holds the configured users, the login throttle and the limiter of
// password hashing. Its users and limits can be replaced while it serves
// (PrepareReload); it is safe for concurrent use.
type Store struct {
	log      *slog.Logger
	set      atomic.Pointer[userSet] // replaced as a whole by a reload
	throttle *throttle               // kept across reloads: bans survive them
	cluster  atomic.Pointer[cluster] // nil unless JoinCluster: bans shared through Redis
	hashes   *hashLimiter
	now      func() time.Time // the throttle's clock (tests replace it)
	waiting  atomic.Int32     // attempts waiting for a busy address (for tests)
	saveMu   sync.Mutex       // orders SaveBans: the last file written holds the newest state

	cacheHits, cacheMisses atomic.Uint64 // login cache lookups (LoginCacheStats)
	hashed                 atomic.Uint64 // verifications computed (for tests)
}

// userSet is what a reload replaces: the users, the dummy hash that matches
// the slowest of them, and the failure delay.
type userSet struct {
	users map[string]parsedUser // read-only; disabled users are left out
	dummy *passwordHash         // verified for unknown users
	delay time.Duration
	caps  ServerLimits // [limits] total_download_rate, total_upload_rate
	// cache remembers successful logins verified against these users
	// (nil: login_cache_ttl = 0). A reload's set starts with an empty one.
	cache *loginCache
}

// New validates cfg (filling its defaults) and users, requires every home to
// be an absolute path, creates missing homes (mode 0750, parents included)
// and fails if a home exists but is not a directory. It prepares a dummy hash
// of the algorithm and cost of the slowest users' hashes, so that a login
// with an unknown name takes as long as the slowest wrong password. log may
// be nil.
func New(cfg Config, users []UserConfig, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	set, err := newUserSet(cfg, users, log)
	if err != nil {
		return nil, err
	}
	s := &Store{
		log:      log,
		throttle: newThrottle(cfg),
		hashes:   newHashLimiter(cfg.MaxHashMemoryMiB, runtime.GOMAXPROCS(0)),
		now:      time.Now,
	}
	s.set.Store(set)
	return s, nil
}

// newUserSet validates users, checks every home (absolute, and a directory
// when it exists), creates the missing ones only once all passed, and
// prepares the dummy hash.
func newUserSet(cfg Config, users []UserConfig, log *slog.Logger) (*userSet, error) {
	limits, err := cfg.Limits.parse()
	if err != nil {
		return nil, err
	}
	parsed, err := parseUsers(users, limits.defaults)
	if err != nil {
		return nil, err
	}
	var missing []int
	for i := range parsed {
		u := &parsed[i].user
		key := userKey(i, u.Name)
		if strings.HasPrefix(u.Home, "s3://") {
			continue // an object store home: ftps checks and opens it
		}
		if !filepath.IsAbs(u.Home) {
			return nil, fmt.Errorf("%s.home: %q is not an absolute path", key, u.Home)
		}
		u.Home = filepath.Clean(u.Home)
		fi, err := os.Stat(u.Home)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, i)
		case err != nil:
			return nil, fmt.Errorf("%s.home: %w", key, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("%s.home: %q is not a directory", key, u.Home)
		}
	}
	for _, i := range missing {
		u := parsed[i].user
		if err := os.MkdirAll(u.Home, homeMode); err != nil {
			return nil, fmt.Errorf("%s.home: %w", userKey(i, u.Name), err)
		}
		log.Info("created home directory", "user", u.Name, "path", u.Home)
	}
	set := &userSet{users: make(map[string]parsedUser, len(parsed)), delay: cfg.FailureDelay, caps: limits.server}
	for i, p := range parsed {
		if !users[i].Disabled {
			set.users[p.user.Name] = p
		}
	}
	// Disabled users count too: their names must not be found by timing.
	if set.dummy, err = slowestHash(parsed).dummy(); err != nil {
		return nil, fmt.Errorf("auth: making the dummy hash: %w", err)
	}
	if set.cache, err = newLoginCache(cfg.loginCacheTTL(), cfg.LoginCacheSize); err != nil {
		return nil, fmt.Errorf("auth: making the login cache: %w", err)
	}
	return set, nil
}

// Active reports whether name may log in now: a user of the set in force,
// not disabled.
func (s *Store) Active(name string) bool {
	_, ok := s.set.Load().users[name]
	return ok
}

// Lookup returns a copy of the user name as in force now (its home and
// limits, which a reload may have changed since the login), and false
// when name may not log in (unknown or disabled). It checks no password.
func (s *Store) Lookup(name string) (*User, bool) {
	u, ok := s.set.Load().users[name]
	if !ok {
		return nil, false
	}
	user := u.user
	return &user, true
}

// ServerLimits returns the server-wide caps of [limits] in force.
func (s *Store) ServerLimits() ServerLimits {
	return s.set.Load().caps
}

// PendingReload is a validated set of users and limits, not yet in force.
type PendingReload struct {
	s   *Store
	cfg Config
	set *userSet
}

// PrepareReload validates cfg and users as New does (creating missing
// homes once everything passed) without changing what is in force: a
// failure leaves the Store as it was. Apply puts them in force. Bans and
// failure counts are kept; max_hash_memory_mib keeps the value New was
// given (the limiter's budget is fixed).
func (s *Store) PrepareReload(cfg Config, users []UserConfig) (*PendingReload, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	set, err := newUserSet(cfg, users, s.log)
	if err != nil {
		return nil, err
	}
	return &PendingReload{s: s, cfg: cfg, set: set}, nil
}

// Apply puts the prepared users and limits in force for the next login,
// with an empty login cache. Logins being checked finish with the users
// they started with.
func (p *PendingReload) Apply() {
	p.s.throttle.setLimits(p.cfg)
	p.s.set.Store(p.set)
}

// slowestHash returns the first hash of the slowest cost class: an unknown
// user must not answer faster than any known one.
func slowestHash(users []parsedUser) *passwordHash {
	var slowest *passwordHash
	for _, u := range users {
		if slowest == nil || u.hash.verifyCost() > slowest.verifyCost() {
			slowest = u.hash
		}
	}
	return slowest
}

// Authenticate checks name and password for a client at ip.
//
// It returns a copy of the user on success; ErrInvalidCredentials for an
// unknown name or a wrong password (an unknown name is verified against a
// dummy hash as slow as the slowest user's); ErrBlocked while ip is banned,
// whatever the password; or ctx.Err() if ctx ends first.
//
// Failures are counted per IPv4 address or IPv6 /64, and so are attempts
// in flight: a password is judged only if the failures within
// failure_window plus the attempts being verified stay within
// max_failures; any other attempt waits until one being verified ends and
// then asks again (a ban, or failures reaching max_failures, answer it
// ErrBlocked without hashing). So no address gets more than max_failures
// wrong passwords judged per window, however many it sends at once, and
// right passwords sent together (parallel logins) are judged in turn.
// Addresses in never_ban bypass all of this. The failure that reaches
// max_failures starts a ban of ban_duration (logged once, at Warn), and
// every attempt that finishes during a ban, that failure and right
// passwords included, gets ErrBlocked, so that a ban never tells a right
// password from a wrong one. A success neither clears the count nor a ban.
//
// Every failure is answered failure_delay after its verification started
// (or after the call, for ErrBlocked without one), so wrong passwords,
// unknown users and bans take the same time as long as the slowest hash
// takes less than failure_delay. Verifications share a memory budget
// (max_hash_memory_mib); callers beyond it wait, honouring ctx.
//
// A right password that verified within login_cache_ttl for the same user
// and hash succeeds without hashing again (see loginCache): bans,
// allowed_networks and disabled users are judged as before; wrong
// passwords never use the cache.
func (s *Store) Authenticate(ctx context.Context, name, password string, ip netip.Addr) (*User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key := ClientKey(ip)
	res, wake := exempt, (<-chan struct{})(nil)
	if !s.throttle.exempt(ip) {
		// The shared state first, bounded by cluster.timeout (memory
		// alone on error).
		var sharedBan bool
		if c := s.cluster.Load(); c != nil {
			sharedBan = c.sync(ctx, key)
		}
		res, wake = s.throttle.reserve(key, s.now())
		if sharedBan && res != refused {
			// A ban in Redis refuses even when this node's table is too
			// full to record it (reserve then answers untracked).
			s.throttle.cancel(key, res, s.now())
			res = refused
		}
	}
	for res == busy {
		// This address's passwords being checked could use up its failure
		// budget: wait for one to end (a success frees its place, a
		// failure may start a ban), then ask again. Right passwords sent
		// at once (FileZilla's parallel logins, users behind one NAT) are
		// so judged one after the other instead of being refused.
		s.waiting.Add(1)
		select {
		case <-wake:
		case <-ctx.Done():
			s.waiting.Add(-1)
			return nil, ctx.Err()
		}
		s.waiting.Add(-1)
		res, wake = s.throttle.reserve(key, s.now())
	}
	if res == refused {
		return nil, s.failAt(ctx, time.Now().Add(s.set.Load().delay), ErrBlocked)
	}

	set := s.set.Load()
	u, known := set.users[name]
	h := set.dummy
	if known {
		h = u.hash
	}
	// The login cache only answers for a known user logging in from an
	// allowed network: a right password that must be refused pays the
	// full hash like a wrong one (see loginCache). Every login computes
	// the MAC and looks it up, so that the work before the hash is the
	// same whoever logs in.
	var (
		ok, cacheable bool
		mac           [32]byte
		started       time.Time
	)
	if set.cache != nil {
		mac = set.cache.sum(name, password, h.encoded)
		hit := set.cache.hit(name, mac, s.now())
		cacheable = known && u.user.Limits.Allows(ip)
		ok = hit && cacheable
	}
	if ok {
		s.cacheHits.Add(1)
		started = time.Now()
	} else {
		if cacheable {
			s.cacheMisses.Add(1)
		}
		var err error
		ok, started, err = s.verify(ctx, h, password)
		if err != nil {
			s.throttle.cancel(key, res, s.now())
			return nil, err
		}
		if ok && cacheable {
			set.cache.add(name, mac, s.now())
		}
	}
	deadline := started.Add(set.delay)
	// A right password from outside the user's networks is a failure like
	// a wrong one: it counts towards a ban and is answered the same way.
	netRefused := known && ok && !u.user.Limits.Allows(ip)
	failed := !(known && ok) || netRefused
	banned, banStarted := s.throttle.finish(key, res, s.now(), failed)
	if c := s.cluster.Load(); c != nil && res != exempt {
		switch {
		case banStarted:
			_, ban := s.throttle.limits()
			c.ban(ctx, key, s.now().Add(ban))
		case failed && !banned && c.fail(ctx, key):
			// The failures of every node together reached max_failures.
			banned, banStarted = true, true
		}
	}
	if banStarted {
		maxFailures, ban := s.throttle.limits()
		s.log.Warn("login ban started", "ip", ip.String(), "banned", key.String(),
			"failures", maxFailures, "dur", ban)
	}
	switch {
	case banned:
		return nil, s.failAt(ctx, deadline, ErrBlocked)
	case netRefused:
		s.log.Warn("login refused: address not in the user's allowed_networks", "user", name, "ip", ip.String())
		return nil, s.failAt(ctx, deadline, ErrNetworkRefused)
	case known && ok:
		user := u.user
		return &user, nil
	}
	return nil, s.failAt(ctx, deadline, ErrInvalidCredentials)
}

// LoginCacheStats counts the lookups of the login cache.
type LoginCacheStats struct {
	Hits   uint64 // logins answered from the cache, without hashing
	Misses uint64 // lookups that had to hash: first logins, expired entries, wrong passwords
	// Entries are the users remembered now (expired ones not yet dropped
	// included).
	Entries int
}

// LoginCacheStats returns the login cache's counts since New (reloads
// included) and its size now. Cheap: call it at scrape time.
func (s *Store) LoginCacheStats() LoginCacheStats {
	return LoginCacheStats{Hits: s.cacheHits.Load(), Misses: s.cacheMisses.Load(), Entries: s.set.Load().cache.len()}
}

// verify computes h against password once the hash limiter lets it, and
// returns when it started computing: the time before, spent waiting for
// other logins, does not depend on the user.
func (s *Store) verify(ctx context.Context, h *passwordHash, password string) (ok bool, started time.Time, err error) {
	g, err := s.hashes.acquire(ctx, h.memoryKiB())
	if err != nil {
		return false, time.Time{}, err
	}
	defer s.hashes.release(g)
	s.hashed.Add(1)
	started = time.Now()
	return h.verify(password), started, nil
}

// failAt waits until deadline and returns err, or ctx.Err() if ctx ends
// first. A deadline already passed (a hash slower than failure_delay)
// answers at once.
func (s *Store) failAt(ctx context.Context, deadline time.Time, err error) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-t.C:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
