package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults of Config, applied by Validate to zero fields.
const (
	defaultMaxFailures   = 5
	defaultFailureWindow = 5 * time.Minute
	defaultBanDuration   = 15 * time.Minute
	defaultFailureDelay  = time.Second
	defaultHashMemoryMiB = 256

	// defaultLoginCacheTTL covers a client's burst of logins (FileZilla
	// logs in again for each of its transfer connections, an rclone or
	// lftp job reconnects as it goes) while making every password pass the
	// full hash again at least every few minutes.
	defaultLoginCacheTTL = 5 * time.Minute
	// maxLoginCacheTTL keeps the cache short-lived whatever the file says.
	maxLoginCacheTTL = time.Hour
	// defaultLoginCacheSize is the number of users whose last successful
	// login is remembered (about 150 bytes each).
	defaultLoginCacheSize = 4096
	// maxLoginCacheSize bounds it (some 150 MB).
	maxLoginCacheSize = 1_000_000
)

// Config is the [auth] section: the login throttle and the bounds of
// password hashing. Zero fields take their defaults in Validate.
type Config struct {
	// MaxFailures is the number of failed logins from one client address
	// (one IPv4 address, or one IPv6 /64) within FailureWindow that starts a
	// ban. Default 5.
	MaxFailures int `toml:"max_failures"`
	// FailureWindow is counted from an address's first failure; when it has
	// passed, the count starts again. Default 5m.
	FailureWindow time.Duration `toml:"failure_window"`
	// BanDuration is how long a banned address gets ErrBlocked. Default 15m.
	BanDuration time.Duration `toml:"ban_duration"`
	// FailureDelay is the time from the start of a password verification
	// (once it has its hashing slot; the wait before that does not depend
	// on the user) to the answer of a failed login; ErrBlocked without a
	// verification is answered FailureDelay after the call. Wrong
	// passwords, unknown users and banned addresses therefore take the
	// same time, as long as the slowest configured hash verifies in less
	// than FailureDelay. Default 1s.
	FailureDelay time.Duration `toml:"failure_delay"`
	// MaxHashMemoryMiB bounds the memory that password verifications take
	// together, garbage included: a verification's memory (argon2id
	// allocates m KiB) counts from its start until the collector has
	// reclaimed it, and logins beyond the bound wait. So a flood of logins,
	// even with unknown user names, cannot grow the server by more (a hash
	// that needs more than the bound is verified alone). Larger values let
	// more logins be verified at once on a machine with many CPUs. Default
	// 256.
	MaxHashMemoryMiB int `toml:"max_hash_memory_mib"`
	// LoginCacheTTL is how long a successful password verification is
	// remembered, so that the same user logging in again with the same
	// password within that time skips the hash (see loginCache). Unset:
	// 5m; 0 turns the cache off; at most 1h.
	LoginCacheTTL *time.Duration `toml:"login_cache_ttl"`
	// LoginCacheSize is the most users the cache remembers at once; the
	// oldest entry goes first. Default 4096.
	LoginCacheSize int `toml:"login_cache_size"`
	// NeverBan lists networks (CIDR, or single addresses) whose failed
	// logins are never counted and that are never banned: a monitoring
	// probe, an office network. Their failures are still logged. Loopback
	// is not exempt unless listed. Default: none.
	NeverBan []string `toml:"never_ban"`
	// UsersFile names a file of further [[users]] tables, which cmd/ftpsd
	// reads and appends to the users it passes to New ("ftpsd user" edits
	// that file). auth itself does not read it. Default "": none.
	UsersFile string `toml:"users_file"`
	// Limits is the [limits] section (defaults of the per-user limits and
	// the server-wide caps), set by cmd/ftpsd; New and PrepareReload
	// parse it. Zero: no limits.
	Limits LimitsConfig `toml:"-"`
}

// Validate fills in defaults for zero fields and rejects negative ones,
// naming the key ("auth.max_failures: must be >= 1").
func (c *Config) Validate() error {
	var errs []error
	if c.MaxFailures < 0 {
		errs = append(errs, errors.New("auth.max_failures: must be >= 1"))
	} else if c.MaxFailures == 0 {
		c.MaxFailures = defaultMaxFailures
	}
	if c.MaxHashMemoryMiB < 0 {
		errs = append(errs, errors.New("auth.max_hash_memory_mib: must be >= 1"))
	} else if c.MaxHashMemoryMiB == 0 {
		c.MaxHashMemoryMiB = defaultHashMemoryMiB
	}
	for _, d := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"failure_window", &c.FailureWindow, defaultFailureWindow},
		{"ban_duration", &c.BanDuration, defaultBanDuration},
		{"failure_delay", &c.FailureDelay, defaultFailureDelay},
	} {
		if *d.v < 0 {
			errs = append(errs, fmt.Errorf("auth.%s: %v: must not be negative", d.key, *d.v))
		} else if *d.v == 0 {
			*d.v = d.def
		}
	}
	switch ttl := c.LoginCacheTTL; {
	case ttl == nil:
		d := defaultLoginCacheTTL
		c.LoginCacheTTL = &d
	case *ttl < 0:
		errs = append(errs, fmt.Errorf("auth.login_cache_ttl: %v: must not be negative (0: no cache)", *ttl))
	case *ttl > maxLoginCacheTTL:
		errs = append(errs, fmt.Errorf("auth.login_cache_ttl: %v: at most %v", *ttl, maxLoginCacheTTL))
	}
	switch {
	case c.LoginCacheSize < 0 || c.LoginCacheSize > maxLoginCacheSize:
		errs = append(errs, fmt.Errorf("auth.login_cache_size: %d: want 1..%d (login_cache_ttl = \"0s\" turns the cache off)", c.LoginCacheSize, maxLoginCacheSize))
	case c.LoginCacheSize == 0:
		c.LoginCacheSize = defaultLoginCacheSize
	}
	for i, n := range c.NeverBan {
		if _, err := parseNetwork(n); err != nil {
			errs = append(errs, fmt.Errorf("auth.never_ban[%d]: %v", i, err))
		}
	}
	return errors.Join(errs...)
}

// loginCacheTTL is the validated login_cache_ttl (0: no cache).
func (c *Config) loginCacheTTL() time.Duration {
	if c.LoginCacheTTL == nil {
		return defaultLoginCacheTTL
	}
	return *c.LoginCacheTTL
}

// neverBan returns the validated never_ban networks.
func (c *Config) neverBan() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.NeverBan))
	for _, n := range c.NeverBan {
		if p, err := parseNetwork(n); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseNetwork parses a CIDR network ("10.0.0.0/8", "2001:db8::/32") or a
// single address, which stands for its /32 or /128. Clients are matched
// unmapped and without a zone, so an IPv4-mapped network (::ffff:0:0/96
// and longer) is stored as the IPv4 network it covers, and a zone is
// refused.
func parseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network (like \"192.0.2.0/24\")", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network or an IP address", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// UserConfig is one [[users]] entry.
type UserConfig struct {
	// Name is the login name, compared exactly (case-sensitive).
	Name string `toml:"name"`
	// PasswordHash is an argon2id PHC string
	// ($argon2id$v=19$m=..,t=..,p=..$salt$hash) or a bcrypt hash ($2a$, $2b$,
	// $2y$), never a plain password.
	PasswordHash string `toml:"password_hash"`
	// Home is the user's root directory. New requires it absolute (cmd
	// resolves relative paths) and creates it with mode 0750 if missing.
	Home string `toml:"home"`
	// Permissions are names for ParsePerms: list, read, write, delete,
	// mkdir, rename, or all.
	Permissions []string `toml:"permissions"`
	// Disabled keeps the user in the file but refuses its logins (as an
	// unknown user); a reload that disables a user closes its sessions.
	Disabled bool `toml:"disabled"`

	// The user's limits; an unset key takes its default from [limits]
	// (see LimitsConfig for the meaning of each).
	MaxSessions     *int     `toml:"max_sessions"`
	DownloadRate    Size     `toml:"download_rate"`
	UploadRate      Size     `toml:"upload_rate"`
	Quota           Size     `toml:"quota"`
	QuotaFiles      *int64   `toml:"quota_files"`
	AllowedNetworks []string `toml:"allowed_networks"`
}

// parsedUser is a validated UserConfig.
type parsedUser struct {
	user User
	hash *passwordHash
}

// ValidateUsers checks the [[users]] entries: at least one user, non-empty
// unique names without control characters, a well-formed password hash
// within bounds, a non-empty home, and known permission names. Each error
// names its key, e.g. `users[1].permissions: "exec" is not a permission
// (want list, read, write, delete, mkdir, rename or all)`; all problems are
// reported at once.
func ValidateUsers(users []UserConfig) error {
	_, err := parseUsers(users, Limits{})
	return err
}

// parseUsers validates users; their limits start from defaults.
func parseUsers(users []UserConfig, defaults Limits) ([]parsedUser, error) {
	if len(users) == 0 {
		return nil, errors.New("users: no users configured (add a [[users]] entry)")
	}
	count := make(map[string]int, len(users))
	for _, u := range users {
		count[u.Name]++
	}
	var errs []error
	add := func(i int, key, format string, args ...any) {
		name := users[i].Name
		if count[name] > 1 {
			name = "" // ambiguous: by position
		}
		msg := fmt.Sprintf(format, args...)
		if key != "" {
			msg = key + ": " + msg
		}
		errs = append(errs, fmt.Errorf("%s.%s", userKey(i, name), msg))
	}
	seen := make(map[string]int, len(users))
	out := make([]parsedUser, len(users))
	for i, u := range users {
		switch {
		case u.Name == "":
			add(i, "name", "empty")
		case hasControl(u.Name):
			add(i, "name", "%q contains a control character", u.Name)
		default:
			if j, dup := seen[u.Name]; dup {
				add(i, "name", "%q is also the name of users[%d]", u.Name, j)
			} else {
				seen[u.Name] = i
			}
		}
		if u.PasswordHash == "" {
			add(i, "password_hash", "empty")
		} else if h, err := parseHash(u.PasswordHash); err != nil {
			add(i, "password_hash", "%v", err)
		} else {
			out[i].hash = h
		}
		if u.Home == "" {
			add(i, "home", "empty")
		}
		perms, err := ParsePerms(u.Permissions)
		if err != nil {
			add(i, "permissions", "%v", err)
		}
		limits, lerrs := userLimits(u, defaults)
		for _, err := range lerrs {
			add(i, "", "%v", err)
		}
		out[i].user = User{Name: u.Name, Home: u.Home, Perms: perms, Limits: limits}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// userKey names a [[users]] entry in errors: by its name, which is what an
// administrator searches for, or by its position when the name itself is
// unusable.
func userKey(i int, name string) string {
	if name == "" || hasControl(name) || strings.ContainsAny(name, `"\\`) {
		return fmt.Sprintf("users[%d]", i)
	}
	return fmt.Sprintf("users %q", name)
}
