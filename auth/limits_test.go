package auth

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		err  string // "" : valid
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"500KB", 500_000, ""},
		{"500kb", 500_000, ""},
		{"2MiB", 2 << 20, ""},
		{"2 MiB", 2 << 20, ""},
		{"1.5GiB", 3 << 29, ""},
		{"1.5GB", 1_500_000_000, ""},
		{"10K", 10_000, ""},
		{"64KiB", 64 << 10, ""},
		{"1TiB", 1 << 40, ""},
		{"3B", 3, ""},
		{" 7 ", 7, ""},
		{"", 0, "is not a size"},
		{"MiB", 0, "is not a size"},
		{"2 MB/s", 0, `"2 MB/s" is not a size`},
		{"-1", 0, "is not a size"},
		{"1e6", 0, "is not a size"},
		{"2XB", 0, "is not a size"},
		{"1.2.3MB", 0, "is not a size"},
		{"99999999999999999999", 0, "too large"},
		{"9000000TiB", 0, "too large"},
		{"9000000.5TiB", 0, "too large"},
	} {
		got, err := ParseSize(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSize(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0B", 1000: "1000B", 1024: "1KiB", 2 << 20: "2MiB", 3 << 29: "1.5GiB", 1_500_000: "1.4MiB"} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestSizeFromTOML checks that a size may be a TOML number or string, and
// that anything else is refused by the decoder.
func TestSizeFromTOML(t *testing.T) {
	t.Parallel()
	var c LimitsConfig
	md, err := toml.Decode("download_rate = 2097152\nupload_rate = \"500KB\"\nquota = \"1.5GiB\"\n", &c)
	if err != nil || len(md.Undecoded()) > 0 {
		t.Fatalf("Decode: %v, undecoded %v", err, md.Undecoded())
	}
	if c.DownloadRate != "2097152" || c.UploadRate != "500KB" || c.Quota != "1.5GiB" {
		t.Errorf("decoded %+v", c)
	}
	if _, err := toml.Decode("quota = 1.5\n", &c); err == nil || !strings.Contains(err.Error(), "is not a size") {
		t.Errorf("Decode(quota = 1.5) = %v; want a size error", err)
	}
}

func TestLimitsConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   LimitsConfig
		errs []string
	}{
		{"zero", LimitsConfig{}, nil},
		{"all set", LimitsConfig{MaxSessions: 3, DownloadRate: "2MiB", UploadRate: "1MB", Quota: "1GiB", QuotaFiles: 100,
			AllowedNetworks: []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"}, TotalDownloadRate: "100MiB", TotalUploadRate: "0"}, nil},
		{"bad rate", LimitsConfig{DownloadRate: "2 MB/s"}, []string{`limits.download_rate: "2 MB/s" is not a size`}},
		{"bad total", LimitsConfig{TotalUploadRate: "fast"}, []string{`limits.total_upload_rate: "fast" is not a size`}},
		{"negative sessions", LimitsConfig{MaxSessions: -1}, []string{"limits.max_sessions: -1: must not be negative"}},
		{"negative files", LimitsConfig{QuotaFiles: -2}, []string{"limits.quota_files: -2: must not be negative"}},
		{"bad network", LimitsConfig{AllowedNetworks: []string{"10.0.0.0/33"}}, []string{`limits.allowed_networks: "10.0.0.0/33" is not a CIDR`}},
		{"all reported", LimitsConfig{Quota: "x", UploadRate: "y", AllowedNetworks: []string{"nowhere"}},
			[]string{"limits.quota:", "limits.upload_rate:", "limits.allowed_networks:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testutil.AssertErrContains(t, "Validate()", tc.in.Validate(), tc.errs...)
		})
	}
}

// TestEffectiveLimits checks that a user's own keys replace the defaults
// of [limits], and unset keys take them.
func TestEffectiveLimits(t *testing.T) {
	t.Parallel()
	zero, two, files := 0, 2, int64(10)
	lc := LimitsConfig{MaxSessions: 5, DownloadRate: "1MiB", Quota: "1GiB", QuotaFiles: 1000,
		AllowedNetworks: []string{"10.0.0.0/8"}, TotalDownloadRate: "10MiB"}
	users := []UserConfig{
		{Name: "defaults"},
		{Name: "own", MaxSessions: &two, DownloadRate: "0", UploadRate: "500KB", Quota: "2GiB", QuotaFiles: &files,
			AllowedNetworks: []string{"192.0.2.0/24", "::ffff:198.51.100.1"}},
		{Name: "unlimited sessions", MaxSessions: &zero},
	}
	got := EffectiveLimits(lc, users)
	ten := netip.MustParsePrefix("10.0.0.0/8")
	want := []Limits{
		{MaxSessions: 5, DownloadRate: 1 << 20, QuotaBytes: 1 << 30, QuotaFiles: 1000, AllowedNetworks: []netip.Prefix{ten}},
		{MaxSessions: 2, UploadRate: 500_000, QuotaBytes: 2 << 30, QuotaFiles: 10,
			AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.1/32")}},
		{MaxSessions: 0, DownloadRate: 1 << 20, QuotaBytes: 1 << 30, QuotaFiles: 1000, AllowedNetworks: []netip.Prefix{ten}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EffectiveLimits =\n%+v\nwant\n%+v", got, want)
	}
	if caps := ServerCaps(lc); caps.DownloadRate != 10<<20 || caps.UploadRate != 0 {
		t.Errorf("ServerCaps = %+v", caps)
	}
	if s := got[1].String(); s != "sessions 2, download unlimited, upload 488.3KiB/s, quota 2GiB and 10 files, networks 192.0.2.0/24 198.51.100.1/32" {
		t.Errorf("String() = %q", s)
	}
	if s := (Limits{}).String(); s != "sessions unlimited, download unlimited, upload unlimited, quota none, networks any" {
		t.Errorf("zero String() = %q", s)
	}
}

func TestLimitsAllows(t *testing.T) {
	t.Parallel()
	l := Limits{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("fe80::/64")}}
	for ip, want := range map[string]bool{
		"127.0.0.1": true, "::ffff:127.0.0.1": true, "127.0.0.2": false, "2001:db8::5": true, "::1": false,
		"fe80::1%eth0": true, "fe80:0:0:1::1%eth0": false, // link-local clients carry a zone
	} {
		if got := l.Allows(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", ip, got, want)
		}
	}
	if !(Limits{}).Allows(netip.MustParseAddr("203.0.113.9")) {
		t.Error("no allowed_networks must allow every address")
	}
}

// TestAllowedNetworksAtLogin checks that a right password from outside
// the user's networks is refused as a wrong one and counts towards a ban.
func TestAllowedNetworksAtLogin(t *testing.T) {
	t.Parallel()
	cfg := Config{MaxFailures: 2, FailureDelay: 1}
	users := []UserConfig{{Name: "alice", PasswordHash: mustHash(t, "secret"), Home: t.TempDir(),
		AllowedNetworks: []string{"127.0.0.1/32"}}}
	s, err := New(cfg, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inside, outside := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	if u, err := s.Authenticate(ctx, "alice", "secret", inside); err != nil || u.Limits.AllowedNetworks[0].String() != "127.0.0.1/32" {
		t.Fatalf("login from inside: %v, %v", u, err)
	}
	_, err = s.Authenticate(ctx, "alice", "secret", outside)
	if !errors.Is(err, ErrInvalidCredentials) || !errors.Is(err, ErrNetworkRefused) {
		t.Fatalf("login from outside: %v; want ErrNetworkRefused, an ErrInvalidCredentials", err)
	}
	// The second failure reaches max_failures: banned, even with the right
	// password and from the same address.
	s.Authenticate(ctx, "alice", "secret", outside)
	if _, err := s.Authenticate(ctx, "alice", "secret", outside); !errors.Is(err, ErrBlocked) {
		t.Errorf("after 2 refusals: %v; want ErrBlocked", err)
	}
	if _, err := s.Authenticate(ctx, "alice", "secret", inside); err != nil {
		t.Errorf("inside after the ban of another address: %v", err)
	}
}
