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
	"time"
)

// ErrInvalidCredentials is the answer to an unknown user name and to a wrong
// password alike, so that the two cannot be told apart.
var ErrInvalidCredentials = errors.New("invalid user name or password")

// ErrBlocked is the answer to any login from an address that is banned after
// too many failures.
var ErrBlocked = errors.New("too many failed logins from this address")

// hashMemoryBudget bounds, in KiB, the memory that concurrent password
// verifications may allocate together (argon2id takes m KiB each).
const hashMemoryBudget = 1 << 20 // 1 GiB

// homeMode is the mode of home directories New creates.
const homeMode fs.FileMode = 0o750

// User is an authenticated user, as the control layer needs it.
type User struct {
	Name  string // login name
	Home  string // absolute, cleaned path of the home directory
	Perms Perm   // what the user may do inside Home
}

// Store holds the configured users and the login throttle. Its users are
// fixed by New; it is safe for concurrent use.
type Store struct {
	log      *slog.Logger
	users    map[string]parsedUser // read-only after New
	dummy    *passwordHash         // verified for unknown users
	delay    time.Duration
	throttle *throttle
	sem      chan struct{} // bounds concurrent hash computations
	now      func() time.Time
}

// New validates cfg (filling its defaults) and users, requires every home to
// be an absolute path, creates missing homes (mode 0750, parents included)
// and fails if a home exists but is not a directory. It prepares a dummy hash
// of the algorithm and cost most users' hashes have, so that a login with an
// unknown name takes as long as a wrong password. log may be nil.
func New(cfg Config, users []UserConfig, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	parsed, err := parseUsers(users)
	if err != nil {
		return nil, err
	}

	// Check every home before creating any.
	var missing []int
	for i := range parsed {
		u := &parsed[i].user
		if !filepath.IsAbs(u.Home) {
			return nil, fmt.Errorf("users[%d].home: %q is not an absolute path", i, u.Home)
		}
		u.Home = filepath.Clean(u.Home)
		fi, err := os.Stat(u.Home)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, i)
		case err != nil:
			return nil, fmt.Errorf("users[%d].home: %w", i, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("users[%d].home: %q is not a directory", i, u.Home)
		}
	}
	for _, i := range missing {
		u := parsed[i].user
		if err := os.MkdirAll(u.Home, homeMode); err != nil {
			return nil, fmt.Errorf("users[%d].home: %w", i, err)
		}
		log.Info("created home directory", "user", u.Name, "path", u.Home)
	}

	s := &Store{
		log:      log,
		users:    make(map[string]parsedUser, len(parsed)),
		delay:    cfg.FailureDelay,
		throttle: newThrottle(cfg),
		now:      time.Now,
	}
	var maxMem uint64
	for _, p := range parsed {
		s.users[p.user.Name] = p
		maxMem = max(maxMem, p.hash.memoryKiB())
	}
	if s.dummy, err = typicalHash(parsed).dummy(); err != nil {
		return nil, fmt.Errorf("auth: making the dummy hash: %w", err)
	}
	s.sem = make(chan struct{}, semaphoreSize(maxMem))
	return s, nil
}

// typicalHash returns the first hash of the most common cost class.
func typicalHash(users []parsedUser) *passwordHash {
	count := make(map[string]int, len(users))
	for _, u := range users {
		count[u.hash.costClass()]++
	}
	var best *passwordHash
	bestN := 0
	for _, u := range users {
		if n := count[u.hash.costClass()]; n > bestN {
			best, bestN = u.hash, n
		}
	}
	return best
}

// semaphoreSize is how many hashes may be computed at once: 2*GOMAXPROCS,
// but no more than hashMemoryBudget allows for hashes of memKiB each.
func semaphoreSize(memKiB uint64) int {
	n := 2 * runtime.GOMAXPROCS(0)
	if memKiB > 0 {
		n = min(n, int(min(hashMemoryBudget/memKiB, 1<<16)))
	}
	return max(n, 1)
}

// Authenticate checks name and password for a client at ip.
//
// It returns a copy of the user on success; ErrInvalidCredentials for an
// unknown name or a wrong password (an unknown name is verified against a
// dummy hash, so both take the same time); ErrBlocked, without verifying
// anything, while ip is banned; or ctx.Err() if ctx ends first. Every
// failure, ErrBlocked included, is answered only after the configured
// failure delay.
//
// Failures are counted per IPv4 address or IPv6 /64. The failure that
// reaches max_failures within failure_window starts a ban of ban_duration
// (logged once, at Warn). A success neither clears the count nor a ban.
// At most a bounded number of hashes are computed at once; callers beyond
// that wait, honouring ctx.
func (s *Store) Authenticate(ctx context.Context, name, password string, ip netip.Addr) (*User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key := ClientKey(ip)
	if s.throttle.blocked(key, s.now()) {
		return nil, s.fail(ctx, ErrBlocked)
	}

	u, known := s.users[name]
	h := s.dummy
	if known {
		h = u.hash
	}
	ok, err := s.verify(ctx, h, password)
	if err != nil {
		return nil, err
	}
	if known && ok {
		if s.throttle.success(key, s.now()) {
			return nil, s.fail(ctx, ErrBlocked)
		}
		user := u.user
		return &user, nil
	}
	if s.throttle.failure(key, s.now()) {
		s.log.Warn("login ban started", "ip", ip.String(), "banned", key.String(),
			"failures", s.throttle.maxFailures, "dur", s.throttle.ban)
	}
	return nil, s.fail(ctx, ErrInvalidCredentials)
}

// verify computes h against password once a hashing slot is free.
func (s *Store) verify(ctx context.Context, h *passwordHash, password string) (bool, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.sem }()
	return h.verify(password), nil
}

// fail waits the failure delay and returns err, or ctx.Err() if ctx ends
// first.
func (s *Store) fail(ctx context.Context, err error) error {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
