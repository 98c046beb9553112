package auth

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	dur := func(d time.Duration) *time.Duration { return &d }
	defaults := Config{MaxFailures: 5, FailureWindow: 5 * time.Minute, BanDuration: 15 * time.Minute, FailureDelay: time.Second, MaxHashMemoryMiB: 256,
		LoginCacheTTL: dur(5 * time.Minute), LoginCacheSize: 4096}
	for _, tc := range []struct {
		name    string
		in      Config
		want    Config
		wantErr []string
	}{
		{name: "zero takes defaults", in: Config{}, want: defaults},
		{
			name: "explicit values kept",
			in:   Config{MaxFailures: 3, FailureWindow: time.Minute, BanDuration: time.Hour, FailureDelay: time.Millisecond, MaxHashMemoryMiB: 1, LoginCacheTTL: dur(time.Minute), LoginCacheSize: 10},
			want: Config{MaxFailures: 3, FailureWindow: time.Minute, BanDuration: time.Hour, FailureDelay: time.Millisecond, MaxHashMemoryMiB: 1, LoginCacheTTL: dur(time.Minute), LoginCacheSize: 10},
		},
		{
			name: "login_cache_ttl 0 turns the cache off",
			in:   Config{LoginCacheTTL: dur(0)},
			want: func() Config { c := defaults; c.LoginCacheTTL = dur(0); return c }(),
		},
		{name: "negative login_cache_ttl", in: Config{LoginCacheTTL: dur(-time.Second)}, wantErr: []string{"auth.login_cache_ttl: -1s: must not be negative (0: no cache)"}},
		{name: "login_cache_ttl too long", in: Config{LoginCacheTTL: dur(2 * time.Hour)}, wantErr: []string{"auth.login_cache_ttl: 2h0m0s: at most 1h0m0s"}},
		{name: "negative login_cache_size", in: Config{LoginCacheSize: -1}, wantErr: []string{"auth.login_cache_size: -1: want 1..1000000"}},
		{name: "negative max_failures", in: Config{MaxFailures: -1}, wantErr: []string{"auth.max_failures: must be >= 1"}},
		{name: "negative failure_window", in: Config{FailureWindow: -time.Second}, wantErr: []string{"auth.failure_window: -1s: must not be negative"}},
		{name: "negative ban_duration", in: Config{BanDuration: -time.Minute}, wantErr: []string{"auth.ban_duration: -1m0s: must not be negative"}},
		{name: "negative failure_delay", in: Config{FailureDelay: -1}, wantErr: []string{"auth.failure_delay: -1ns: must not be negative"}},
		{name: "negative max_hash_memory_mib", in: Config{MaxHashMemoryMiB: -1}, wantErr: []string{"auth.max_hash_memory_mib: must be >= 1"}},
		{
			name:    "all reported",
			in:      Config{MaxFailures: -5, FailureWindow: -1, BanDuration: -1, FailureDelay: -1, MaxHashMemoryMiB: -1, LoginCacheTTL: dur(-1), LoginCacheSize: -1},
			wantErr: []string{"auth.max_failures", "auth.failure_window", "auth.ban_duration", "auth.failure_delay", "auth.max_hash_memory_mib", "auth.login_cache_ttl", "auth.login_cache_size"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.in
			err := c.Validate()
			testutil.AssertErrContains(t, "Validate()", err, tc.wantErr...)
			if err == nil && !reflect.DeepEqual(c, tc.want) {
				t.Errorf("Validate() filled %+v; want %+v", c, tc.want)
			}
		})
	}
}

func TestValidateUsers(t *testing.T) {
	t.Parallel()
	argon := mustHash(t, "secret")
	bc := mustBcrypt(t, "secret")
	good := func(name string) UserConfig {
		return UserConfig{Name: name, PasswordHash: argon, Home: "/srv/ftp/" + name, Permissions: []string{"all"}}
	}
	with := func(u UserConfig, f func(*UserConfig)) UserConfig { f(&u); return u }
	neg, negFiles := -1, int64(-5)

	for _, tc := range []struct {
		name    string
		users   []UserConfig
		wantErr []string // empty: valid
	}{
		{"one user", []UserConfig{good("alice")}, nil},
		{"bcrypt and no permissions", []UserConfig{good("alice"), with(good("bob"), func(u *UserConfig) { u.PasswordHash = bc; u.Permissions = nil })}, nil},
		{"relative home is New's business", []UserConfig{with(good("alice"), func(u *UserConfig) { u.Home = "data/alice" })}, nil},
		{"no users", nil, []string{"users: no users configured"}},
		{"empty name", []UserConfig{good("alice"), good("")}, []string{"users[1].name: empty"}},
		{"control character in name", []UserConfig{good("al\nice")}, []string{`users[0].name: "al\nice" contains a control character`}},
		{"duplicate name", []UserConfig{good("alice"), good("bob"), good("alice")}, []string{`users[2].name: "alice" is also the name of users[0]`}},
		{"empty hash", []UserConfig{with(good("alice"), func(u *UserConfig) { u.PasswordHash = "" })}, []string{`users "alice".password_hash: empty`}},
		{"plain password", []UserConfig{good("alice"), with(good("bob"), func(u *UserConfig) { u.PasswordHash = "secret" })}, []string{`users "bob".password_hash: not an argon2id or bcrypt hash`}},
		{"hash out of bounds", []UserConfig{with(good("alice"), func(u *UserConfig) { u.PasswordHash = strings.Replace(argon, "t=1", "t=1000", 1) })}, []string{`users "alice".password_hash: argon2id: t=1000 out of range`}},
		{"empty home", []UserConfig{with(good("alice"), func(u *UserConfig) { u.Home = "" })}, []string{`users "alice".home: empty`}},
		{"bad permission", []UserConfig{good("alice"), with(good("bob"), func(u *UserConfig) { u.Permissions = []string{"read", "exec"} })}, []string{`users "bob".permissions: "exec" is not a permission (want list, read, write, delete, mkdir, rename or all)`}},
		{"valid limits", []UserConfig{with(good("alice"), func(u *UserConfig) { u.DownloadRate = "2MiB"; u.AllowedNetworks = []string{"127.0.0.1/32"} })}, nil},
		{"bad rate", []UserConfig{with(good("alice"), func(u *UserConfig) { u.DownloadRate = "2 MB/s" })}, []string{`users "alice".download_rate: "2 MB/s" is not a size`}},
		{"bad quota", []UserConfig{with(good("alice"), func(u *UserConfig) { u.Quota = "lots" })}, []string{`users "alice".quota: "lots" is not a size`}},
		{"negative max_sessions", []UserConfig{with(good("alice"), func(u *UserConfig) { u.MaxSessions = &neg })}, []string{`users "alice".max_sessions: -1: must not be negative`}},
		{"negative quota_files", []UserConfig{with(good("alice"), func(u *UserConfig) { u.QuotaFiles = &negFiles })}, []string{`users "alice".quota_files: -5`}},
		{"bad network", []UserConfig{with(good("alice"), func(u *UserConfig) { u.AllowedNetworks = []string{"10.1.2.3/8/1"} })}, []string{`users "alice".allowed_networks: "10.1.2.3/8/1" is not a CIDR`}},
		{
			"all problems reported",
			[]UserConfig{{Name: "", PasswordHash: "x", Home: "", Permissions: []string{"x"}}},
			[]string{"users[0].name", "users[0].password_hash", "users[0].home", "users[0].permissions"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateUsers(tc.users)
			testutil.AssertErrContains(t, "ValidateUsers", err, tc.wantErr...)
			if err != nil && (strings.Contains(err.Error(), argon) || strings.Contains(err.Error(), bc)) {
				t.Errorf("error %q contains a password hash", err)
			}
		})
	}
}
