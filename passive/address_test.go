package passive

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestPassiveAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		public        string
		localNetworks []string
		local, remote string // control connection's addresses
		want          string
	}{
		{name: "no public address", local: "192.0.2.10:21", remote: "203.0.113.5:40000", want: "192.0.2.10"},
		{name: "public IP", public: "198.51.100.7", local: "10.0.0.2:21", remote: "203.0.113.5:40000",
			want: "198.51.100.7"},
		{name: "public IPv6", public: "2001:db8::7", local: "[fd00::2]:21", remote: "[2001:db8:1::5]:40000",
			want: "2001:db8::7"},
		{name: "loopback peer gets local", public: "198.51.100.7", local: "127.0.0.1:21", remote: "127.0.0.1:40000",
			want: "127.0.0.1"},
		{name: "IPv6 loopback peer", public: "198.51.100.7", local: "[::1]:21", remote: "[::1]:40000", want: "::1"},
		{name: "peer in local network", public: "198.51.100.7", localNetworks: []string{"192.168.0.0/16", "10.0.0.0/8"},
			local: "10.0.0.2:21", remote: "10.1.2.3:40000", want: "10.0.0.2"},
		{name: "peer outside local networks", public: "198.51.100.7", localNetworks: []string{"10.0.0.0/8"},
			local: "10.0.0.2:21", remote: "203.0.113.5:40000", want: "198.51.100.7"},
		{name: "mapped peer in local network", public: "198.51.100.7", localNetworks: []string{"10.0.0.0/8"},
			local: "[::ffff:10.0.0.2]:21", remote: "[::ffff:10.1.2.3]:40000", want: "10.0.0.2"},
		{name: "IPv6 local network", public: "198.51.100.7", localNetworks: []string{"fd00::/8"},
			local: "[fd00::2]:21", remote: "[fd00::1:5]:40000", want: "fd00::2"},
		{name: "mapped addresses unmapped", local: "[::ffff:192.0.2.10]:21", remote: "[::ffff:203.0.113.5]:40000",
			want: "192.0.2.10"},
		{name: "mapped public IP unmapped", public: "::ffff:198.51.100.7", local: "10.0.0.2:21",
			remote: "203.0.113.5:40000", want: "198.51.100.7"},
		{name: "host name localhost", public: "localhost", local: "10.0.0.2:21", remote: "203.0.113.5:40000",
			want: "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newTestManager(t, Config{PublicAddress: tt.public, LocalNetworks: tt.localNetworks}, nil)
			b := m.Bind(nil, mustAddrPort(t, tt.local), mustAddrPort(t, tt.remote))
			defer b.Close()
			got := b.PassiveAddr(t.Context())
			if got != netip.MustParseAddr(tt.want) {
				t.Fatalf("PassiveAddr() = %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeLookup answers lookups from a script; a step with a gate waits for
// it (or the lookup's ctx) before answering.
type fakeLookup struct {
	mu    sync.Mutex
	calls int
	steps []lookupStep
}

type lookupStep struct {
	addrs []netip.Addr
	err   error
	gate  chan struct{}
}

func (f *fakeLookup) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	i := min(f.calls, len(f.steps)-1)
	f.calls++
	s := f.steps[i]
	f.mu.Unlock()
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.addrs, s.err
}

func (f *fakeLookup) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// hostBinding builds a Manager whose public_address is a host name answered
// by f, and a binding for a public peer.
func hostBinding(t *testing.T, f *fakeLookup, interval time.Duration) (*Manager, *Binding, *testutil.LogBuffer) {
	t.Helper()
	log, logs := testutil.NewLogger()
	m := newTestManager(t, Config{ResolveInterval: interval}, log)
	set := *m.settings()
	set.cfg.PublicAddress = "ftp.example.com"
	set.resolver = newResolver("ftp.example.com", set.cfg.ResolveInterval, f.lookup, log)
	set.resolver.start()
	m.set.Store(&set)
	b := m.Bind(nil, mustAddrPort(t, "10.0.0.2:21"), mustAddrPort(t, "203.0.113.5:40000"))
	t.Cleanup(b.Close)
	return m, b, logs
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestPassiveAddrStaleWhileRefreshing(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	f := &fakeLookup{steps: []lookupStep{
		{addrs: addrs("198.51.100.1")},
		{addrs: addrs("198.51.100.2"), gate: gate},
	}}
	_, b, _ := hostBinding(t, f, 50*time.Millisecond)
	if got := b.PassiveAddr(t.Context()); got != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("first PassiveAddr() = %v", got)
	}
	time.Sleep(100 * time.Millisecond) // the cached value is stale now
	start := time.Now()
	for range 3 {
		if got := b.PassiveAddr(t.Context()); got != netip.MustParseAddr("198.51.100.1") {
			t.Fatalf("stale PassiveAddr() = %v, want the stale 198.51.100.1", got)
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("stale PassiveAddr blocked for %v", d)
	}
	testutil.WaitFor(t, 5*time.Second, "a second lookup", func() bool { return f.count() >= 2 })
	if n := f.count(); n != 2 {
		t.Fatalf("%d lookups, want 2 (one refresh at a time)", n)
	}
	close(gate)
	testutil.WaitFor(t, 5*time.Second, "the refreshed address", func() bool { return b.PassiveAddr(t.Context()) == netip.MustParseAddr("198.51.100.2") })
}

func TestPassiveAddrFirstResolutionBounded(t *testing.T) {
	t.Parallel()
	f := &fakeLookup{steps: []lookupStep{{gate: make(chan struct{})}}} // hangs until ctx ends
	m, b, logs := hostBinding(t, f, time.Minute)
	start := time.Now()
	got := b.PassiveAddr(t.Context())
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("PassiveAddr blocked for %v", d)
	}
	if got != netip.MustParseAddr("10.0.0.2") {
		t.Fatalf("PassiveAddr() = %v, want the local 10.0.0.2", got)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "not resolved") {
		t.Errorf("fallback not logged at Warn:\n%s", logs)
	}
	// Close cancels the hanging lookup and waits for it.
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Manager.Close did not stop the resolver")
	}
	if got := b.PassiveAddr(t.Context()); got != netip.MustParseAddr("10.0.0.2") {
		t.Fatalf("PassiveAddr() after Close = %v", got)
	}
}

func TestPassiveAddrLookupFails(t *testing.T) {
	t.Parallel()
	f := &fakeLookup{steps: []lookupStep{{err: errors.New("no such host")}}}
	_, b, logs := hostBinding(t, f, time.Minute)
	for range 3 {
		if got := b.PassiveAddr(t.Context()); got != netip.MustParseAddr("10.0.0.2") {
			t.Fatalf("PassiveAddr() = %v, want the local 10.0.0.2", got)
		}
	}
	if n := f.count(); n != 1 {
		t.Errorf("%d lookups, want 1 (retry waits)", n)
	}
	if !strings.Contains(logs.String(), "no such host") {
		t.Errorf("lookup error not logged:\n%s", logs)
	}
}

func TestPickAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []netip.Addr
		want string // "" = error
	}{
		{"IPv4 preferred", addrs("2001:db8::1", "198.51.100.2"), "198.51.100.2"},
		{"mapped IPv4 preferred", addrs("2001:db8::1", "::ffff:198.51.100.2"), "198.51.100.2"},
		{"first IPv4", addrs("198.51.100.3", "198.51.100.2"), "198.51.100.3"},
		{"IPv6 only", addrs("2001:db8::1", "2001:db8::2"), "2001:db8::1"},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := pickAddr(tt.in, nil)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("pickAddr() = %v, want an error", got)
				}
				return
			}
			if err != nil || got != netip.MustParseAddr(tt.want) {
				t.Fatalf("pickAddr() = %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		listen  string // "" = zero AddrPort
		maxConn int
		want    []string // substrings, one per warning, in order
	}{
		{name: "public IP, public listener", cfg: Config{Ports: "50000-50100", PublicAddress: "198.51.100.7"},
			listen: "0.0.0.0:21", maxConn: 100},
		{name: "private public_address, unspecified listener",
			cfg:    Config{Ports: "50000-50100", PublicAddress: "192.168.1.10"},
			listen: "0.0.0.0:21", maxConn: 10,
			want: []string{"passive.public_address 192.168.1.10 is a private address while the server listens on 0.0.0.0:21"}},
		{name: "private public_address, public listener",
			cfg:    Config{Ports: "50000-50100", PublicAddress: "100.64.1.1"},
			listen: "198.51.100.7:21",
			want:   []string{"100.64.1.1 is a private address"}},
		{name: "private public_address, private listener",
			cfg:    Config{Ports: "50000-50100", PublicAddress: "10.0.0.5"},
			listen: "10.0.0.5:21"},
		{name: "no public_address, unspecified listener", cfg: Config{Ports: "50000-50100"},
			listen: "[::]:21", want: []string{"passive.public_address is not set and the server listens on [::]:21"}},
		{name: "no public_address, zero listener", cfg: Config{Ports: "50000-50100"},
			want: []string{"passive.public_address is not set"}},
		{name: "no public_address, public listener", cfg: Config{Ports: "50000-50100"},
			listen: "198.51.100.7:21"},
		{name: "host resolving to loopback", cfg: Config{Ports: "50000-50100", PublicAddress: "localhost"},
			listen: "0.0.0.0:21", want: []string{`"localhost" resolves to the private address 127.0.0.1`}},
		{name: "small range", cfg: Config{Ports: "50000-50009", PublicAddress: "198.51.100.7"},
			listen: "0.0.0.0:21", maxConn: 200,
			want: []string{`passive.ports "50000-50009" has 10 ports, fewer than server.max_connections 200`}},
		{name: "both", cfg: Config{Ports: "50000", PublicAddress: "10.1.1.1"}, listen: "0.0.0.0:21", maxConn: 2,
			want: []string{"10.1.1.1 is a private address", "has 1 ports"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newTestManager(t, tt.cfg, nil)
			var listen netip.AddrPort
			if tt.listen != "" {
				listen = mustAddrPort(t, tt.listen)
			}
			got := m.Warnings(listen, tt.maxConn)
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings() = %q, want %d warnings", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
