package auth

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Size is a byte count as written in the configuration: a plain number
// (2097152) or a string with a unit ("2MiB", "500KB", "1.5GiB"). SI units
// count in thousands (KB = 1000), IEC units in 1024s (KiB = 1024). The
// text is kept as written and parsed by validation, so that an error can
// name its key; "" means "not set here" (the default applies) and "0"
// means "no limit".
type Size string

// UnmarshalTOML accepts a TOML integer or string.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*s = Size(strconv.FormatInt(v, 10))
	case string:
		*s = Size(v)
	default:
		return fmt.Errorf("%v is not a size: use a number of bytes or a string such as \"2MiB\"", v)
	}
	return nil
}

// sizeUnits are the units ParseSize knows, by upper-case name.
var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
}

// ParseSize parses a size: a non-negative number with an optional unit (B,
// KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024;
// case-insensitive; a space between number and unit is allowed).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%q is not a size (want a number of bytes, or e.g. \"500KB\", \"2MiB\", \"1.5GiB\")", s)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err == nil && (mult == 1 || n <= math.MaxInt64/int64(mult)) {
			return n * int64(mult), nil
		}
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%q is not a size", s)
		}
		return 0, fmt.Errorf("%q is too large", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (want a number of bytes, or e.g. \"500KB\", \"2MiB\", \"1.5GiB\")", s)
	}
	v := math.Round(f * mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// FormatSize writes n bytes the short way: whole IEC units when exact
// ("2MiB"), one decimal otherwise ("1.5GiB"), plain bytes below 1 KiB.
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 || v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64) + units[i]
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + units[i]
}

// Limits are what one user may use, after the [limits] defaults were
// applied. Zero values mean "no limit"; an empty AllowedNetworks means
// "from anywhere". auth enforces AllowedNetworks at login; the control
// layer enforces the rest.
type Limits struct {
	MaxSessions     int            // concurrent sessions of the user, server-wide
	DownloadRate    int64          // bytes per second over all of the user's sessions
	UploadRate      int64          // bytes per second over all of the user's sessions
	QuotaBytes      int64          // bytes under the home
	QuotaFiles      int64          // regular files under the home
	AllowedNetworks []netip.Prefix // where the user may log in from
}

// HasQuota reports whether usage under the home must be tracked.
func (l Limits) HasQuota() bool { return l.QuotaBytes > 0 || l.QuotaFiles > 0 }

// Allows reports whether the user may log in from ip.
func (l Limits) Allows(ip netip.Addr) bool {
	if len(l.AllowedNetworks) == 0 {
		return true
	}
	ip = ip.Unmap().WithZone("") // a zoned address matches no Prefix
	for _, p := range l.AllowedNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// String is a one-line summary, for check-config and "ftpsd who":
// "sessions 3, download 2MiB/s, upload unlimited, quota 1GiB and 1000 files, networks any".
func (l Limits) String() string {
	rate := func(n int64) string {
		if n == 0 {
			return "unlimited"
		}
		return FormatSize(n) + "/s"
	}
	sessions := "unlimited"
	if l.MaxSessions > 0 {
		sessions = strconv.Itoa(l.MaxSessions)
	}
	var quota []string
	if l.QuotaBytes > 0 {
		quota = append(quota, FormatSize(l.QuotaBytes))
	}
	if l.QuotaFiles > 0 {
		quota = append(quota, strconv.FormatInt(l.QuotaFiles, 10)+" files")
	}
	if len(quota) == 0 {
		quota = []string{"none"}
	}
	nets := "any"
	if len(l.AllowedNetworks) > 0 {
		s := make([]string, len(l.AllowedNetworks))
		for i, p := range l.AllowedNetworks {
			s[i] = p.String()
		}
		nets = strings.Join(s, " ")
	}
	return fmt.Sprintf("sessions %s, download %s, upload %s, quota %s, networks %s",
		sessions, rate(l.DownloadRate), rate(l.UploadRate), strings.Join(quota, " and "), nets)
}

// LimitsConfig is the [limits] section: the defaults of the per-user
// limits (a user's own key replaces its default) and the server-wide rate
// caps. It is decoded by cmd/ftpsd and handed to auth in Config.Limits.
type LimitsConfig struct {
	// MaxSessions is the default number of concurrent sessions per user
	// (0: unlimited). FileZilla opens up to 3 (1 control connection plus
	// 2 transfer connections by default): leave room for that.
	MaxSessions int `toml:"max_sessions"`
	// DownloadRate and UploadRate are the default per-user rates in bytes
	// per second, over all of a user's sessions ("0": unlimited).
	DownloadRate Size `toml:"download_rate"`
	UploadRate   Size `toml:"upload_rate"`
	// Quota and QuotaFiles are the default bytes and regular files a
	// user's home may hold (0: none).
	Quota      Size  `toml:"quota"`
	QuotaFiles int64 `toml:"quota_files"`
	// AllowedNetworks are the default CIDRs users may log in from (empty:
	// anywhere).
	AllowedNetworks []string `toml:"allowed_networks"`
	// TotalDownloadRate and TotalUploadRate cap the server as a whole, all
	// users together, in bytes per second ("0" or unset: unlimited).
	TotalDownloadRate Size `toml:"total_download_rate"`
	TotalUploadRate   Size `toml:"total_upload_rate"`
}

// ServerLimits are the server-wide caps of [limits], parsed.
type ServerLimits struct {
	DownloadRate, UploadRate int64 // bytes per second; 0: unlimited
}

// parsedLimits is a validated LimitsConfig.
type parsedLimits struct {
	defaults Limits
	server   ServerLimits
}

// Validate checks the [limits] section, naming the key in errors
// (`limits.download_rate: "2 MB/s" is not a size ...`).
func (c *LimitsConfig) Validate() error {
	_, err := c.parse()
	return err
}

func (c *LimitsConfig) parse() (parsedLimits, error) {
	var p parsedLimits
	var errs []error
	add := func(key string, err error) { errs = append(errs, fmt.Errorf("limits.%s: %w", key, err)) }
	if c.MaxSessions < 0 {
		add("max_sessions", fmt.Errorf("%d: must not be negative (0: unlimited)", c.MaxSessions))
	}
	if c.QuotaFiles < 0 {
		add("quota_files", fmt.Errorf("%d: must not be negative (0: none)", c.QuotaFiles))
	}
	p.defaults.MaxSessions, p.defaults.QuotaFiles = c.MaxSessions, c.QuotaFiles
	for _, f := range []struct {
		key string
		in  Size
		out *int64
	}{
		{"download_rate", c.DownloadRate, &p.defaults.DownloadRate},
		{"upload_rate", c.UploadRate, &p.defaults.UploadRate},
		{"quota", c.Quota, &p.defaults.QuotaBytes},
		{"total_download_rate", c.TotalDownloadRate, &p.server.DownloadRate},
		{"total_upload_rate", c.TotalUploadRate, &p.server.UploadRate},
	} {
		if err := parseSizeKey(f.in, f.out); err != nil {
			add(f.key, err)
		}
	}
	nets, err := parseNetworks(c.AllowedNetworks)
	if err != nil {
		add("allowed_networks", err)
	}
	p.defaults.AllowedNetworks = nets
	return p, errors.Join(errs...)
}

// parseSizeKey parses s into out unless s is empty (out keeps its value).
func parseSizeKey(s Size, out *int64) error {
	if s == "" {
		return nil
	}
	n, err := ParseSize(string(s))
	if err != nil {
		return err
	}
	*out = n
	return nil
}

// parseNetworks parses CIDRs (see parseNetwork).
func parseNetworks(nets []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range nets {
		p, err := parseNetwork(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// userLimits applies the user's own limit keys over the defaults d.
func userLimits(u UserConfig, d Limits) (Limits, []error) {
	l := d
	var errs []error
	add := func(key string, err error) { errs = append(errs, fmt.Errorf("%s: %w", key, err)) }
	if u.MaxSessions != nil {
		if *u.MaxSessions < 0 {
			add("max_sessions", fmt.Errorf("%d: must not be negative (0: unlimited)", *u.MaxSessions))
		}
		l.MaxSessions = *u.MaxSessions
	}
	if u.QuotaFiles != nil {
		if *u.QuotaFiles < 0 {
			add("quota_files", fmt.Errorf("%d: must not be negative (0: none)", *u.QuotaFiles))
		}
		l.QuotaFiles = *u.QuotaFiles
	}
	for _, f := range []struct {
		key string
		in  Size
		out *int64
	}{
		{"download_rate", u.DownloadRate, &l.DownloadRate},
		{"upload_rate", u.UploadRate, &l.UploadRate},
		{"quota", u.Quota, &l.QuotaBytes},
	} {
		if err := parseSizeKey(f.in, f.out); err != nil {
			add(f.key, err)
		}
	}
	if len(u.AllowedNetworks) > 0 {
		nets, err := parseNetworks(u.AllowedNetworks)
		if err != nil {
			add("allowed_networks", err)
		}
		l.AllowedNetworks = nets
	}
	return l, errs
}

// EffectiveLimits returns each user's limits after the defaults of lc, in
// the order of users, for reports (check-config). The configuration must
// have passed validation; entries that do not parse get the defaults.
func EffectiveLimits(lc LimitsConfig, users []UserConfig) []Limits {
	p, _ := lc.parse()
	out := make([]Limits, len(users))
	for i, u := range users {
		out[i], _ = userLimits(u, p.defaults)
	}
	return out
}

// ServerCaps returns the server-wide rate caps of lc (zero if it does not
// parse: validation reports that).
func ServerCaps(lc LimitsConfig) ServerLimits {
	p, _ := lc.parse()
	return p.server
}
