package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestClusterConfigValidate(t *testing.T) {
	t.Parallel()
	pw := filepath.Join(t.TempDir(), "redis.pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     ClusterConfig
		wantErr string
	}{
		{name: "empty", cfg: ClusterConfig{}},
		{name: "url", cfg: ClusterConfig{Redis: "redis://127.0.0.1:6379/0"}},
		{name: "tls url and password file", cfg: ClusterConfig{Redis: "rediss://redis.example:6380/1", RedisPasswordFile: pw}},
		{name: "not redis", cfg: ClusterConfig{Redis: "http://127.0.0.1/"}, wantErr: "cluster.redis: "},
		{name: "bad port", cfg: ClusterConfig{Redis: "redis://:hunter2@127.0.0.1:notaport/"}, wantErr: "cluster.redis: not a redis:// or rediss:// URL"},
		{name: "missing password file", cfg: ClusterConfig{Redis: "redis://127.0.0.1/", RedisPasswordFile: filepath.Join(t.TempDir(), "nope")}, wantErr: "cluster.redis_password_file: "},
		{name: "password file without redis", cfg: ClusterConfig{RedisPasswordFile: pw}, wantErr: "cluster.redis_password_file: only used with cluster.redis"},
		{name: "negative timeout", cfg: ClusterConfig{Timeout: -time.Second}, wantErr: "cluster.timeout: -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				testutil.AssertErrContains(t, "Validate", err)
				return
			}
			testutil.AssertErrContains(t, "Validate", err, tt.wantErr)
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats the password of the URL", err)
			}
		})
	}
	if c := (ClusterConfig{Redis: "redis://:hunter2@127.0.0.1/"}); !c.PasswordInURL() {
		t.Error("PasswordInURL = false for a URL with a password")
	}
}

// clusterNode is a Store sharing its bans through Redis, on the real clock
// (Redis TTLs run on real time).
type clusterNode struct {
	*Store
	logs *testutil.LogBuffer
}

func newClusterNode(t *testing.T, r *testutil.Redis, users []UserConfig, cfg Config) clusterNode {
	t.Helper()
	if cfg.FailureDelay == 0 {
		cfg.FailureDelay = time.Millisecond
	}
	log, logs := testutil.NewLogger()
	s, err := New(cfg, users, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.JoinCluster(ClusterConfig{Redis: r.URL()}); err != nil {
		t.Fatalf("JoinCluster: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return clusterNode{s, logs}
}

// waitBanned polls until n holds a ban of k, and returns how long it took.
func waitBanned(t *testing.T, n clusterNode, k netip.Prefix, since time.Time) time.Duration {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if n.throttle.blocked(k, time.Now()) {
			return time.Since(since)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s not banned on the other node after 5s", k)
	return 0
}

// TestClusterBans: with a real redis-server, a brute force through node A
// bans the address on node B (announced at once; B refuses the right
// password too); failures spread over both nodes add up to a ban;
// never_ban still applies; "ban list" on B shows the ban and "ban remove"
// on B lifts it on A.
func TestClusterBans(t *testing.T) {
	r := testutil.StartRedis(t)
	users := testUsers(t)
	cfg := Config{MaxFailures: 3, BanDuration: time.Minute}
	a := newClusterNode(t, r, users, cfg)
	never := cfg
	never.NeverBan = []string{"198.51.100.0/24"}
	b := newClusterNode(t, r, users, never)
	ctx := t.Context()
	fail := func(n clusterNode, ip netip.Addr) error {
		_, err := n.Authenticate(ctx, "alice", "wrong", ip)
		return err
	}

	t.Run("brute force on A bans on B", func(t *testing.T) {
		ip := netip.MustParseAddr("192.0.2.10")
		var start time.Time
		for i := range cfg.MaxFailures {
			start = time.Now()
			if err := fail(a, ip); i < cfg.MaxFailures-1 && !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
		}
		took := waitBanned(t, b, ClientKey(ip), start)
		t.Logf("ban reached node B %v after the failure that started it on A", took)
		if _, err := b.Authenticate(ctx, "alice", "alice-pw", ip); !errors.Is(err, ErrBlocked) {
			t.Fatalf("right password on B during the ban: %v, want ErrBlocked", err)
		}
	})

	t.Run("failures spread over nodes add up", func(t *testing.T) {
		ip := netip.MustParseAddr("192.0.2.11")
		for i, n := range []clusterNode{a, b, a} {
			err := fail(n, ip)
			if i < 2 && !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
			if i == 2 && !errors.Is(err, ErrBlocked) {
				t.Fatalf("third failure (the cluster's) = %v, want ErrBlocked", err)
			}
		}
		waitBanned(t, b, ClientKey(ip), time.Now())
		if _, err := b.Authenticate(ctx, "bob", "bob-pw", ip); !errors.Is(err, ErrBlocked) {
			t.Fatalf("B after the spread brute force: %v, want ErrBlocked", err)
		}
	})

	t.Run("never_ban on B", func(t *testing.T) {
		ip := netip.MustParseAddr("198.51.100.7")
		for range cfg.MaxFailures {
			fail(a, ip)
		}
		waitBanned(t, b, ClientKey(ip), time.Now()) // recorded, but ignored
		if _, err := b.Authenticate(ctx, "alice", "alice-pw", ip); err != nil {
			t.Fatalf("never_ban address on B: %v", err)
		}
	})

	t.Run("ban list and remove", func(t *testing.T) {
		ip := netip.MustParseAddr("192.0.2.12")
		for range cfg.MaxFailures {
			fail(a, ip)
		}
		waitBanned(t, b, ClientKey(ip), time.Now())
		c := newClusterNode(t, r, users, cfg) // a node that saw nothing
		found := false
		for _, ban := range c.Bans() {
			found = found || (ban.Client == ClientKey(ip) && !ban.Until.IsZero())
		}
		if !found {
			t.Fatalf("Bans on a third node = %v, want %s banned", c.Bans(), ip)
		}
		if _, ok := b.Unban(ip); !ok {
			t.Fatal("Unban on B: nothing to lift")
		}
		for deadline := time.Now().Add(5 * time.Second); a.throttle.blocked(ClientKey(ip), time.Now()); {
			if time.Now().After(deadline) {
				t.Fatal("still banned on A 5s after ban remove on B")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := a.Authenticate(ctx, "alice", "alice-pw", ip); err != nil {
			t.Fatalf("A after the unban: %v", err)
		}
	})
}

// TestClusterRedisOutage: with Redis stopped, right passwords log in on
// both nodes within the request timeout and a brute force is still banned
// per node; the outage is logged once; when Redis is back on the same
// port, the recovery is logged and bans are shared again.
func TestClusterRedisOutage(t *testing.T) {
	r := testutil.StartRedis(t)
	users := testUsers(t)
	cfg := Config{MaxFailures: 3, BanDuration: time.Minute}
	a, b := newClusterNode(t, r, users, cfg), newClusterNode(t, r, users, cfg)
	ctx := t.Context()
	r.Stop()

	ip := netip.MustParseAddr("192.0.2.20")
	for i, n := range []clusterNode{a, b, a, b} {
		start := time.Now()
		if _, err := n.Authenticate(ctx, "alice", "alice-pw", ip); err != nil {
			t.Fatalf("login %d with Redis down: %v", i+1, err)
		}
		// 200ms is the request timeout; a refused connection fails faster.
		if took := time.Since(start); took > time.Second {
			t.Errorf("login %d with Redis down took %v", i+1, took)
		} else {
			t.Logf("login %d with Redis down took %v", i+1, took)
		}
	}
	a.logs.Wait(t, "redis unreachable", 1, 5*time.Second)
	// Per-node memory still bans.
	bad := netip.MustParseAddr("192.0.2.21")
	for range cfg.MaxFailures {
		a.Authenticate(ctx, "alice", "wrong", bad)
	}
	if !a.throttle.blocked(ClientKey(bad), time.Now()) {
		t.Fatal("A did not ban a brute force while Redis was down")
	}
	if n := a.logs.Count("redis unreachable"); n != 1 {
		t.Errorf("outage logged %d times on A, want once", n)
	}

	r.Start()
	a.logs.Wait(t, "redis reachable again", 1, 10*time.Second)
	b.logs.Wait(t, "redis reachable again", 1, 10*time.Second)
	if !a.ClusterUp() || !b.ClusterUp() {
		t.Fatal("ClusterUp false after the recovery")
	}
	// The ban made during the outage was copied; B finds it at its next login.
	if _, err := b.Authenticate(ctx, "alice", "alice-pw", bad); !errors.Is(err, ErrBlocked) {
		t.Fatalf("B after the recovery, for the ban A made during the outage: %v, want ErrBlocked", err)
	}
	// Sharing resumed: a new brute force on A reaches B. The subscription
	// may need a moment to come back after the restart.
	next := netip.MustParseAddr("192.0.2.22")
	for range cfg.MaxFailures {
		a.Authenticate(ctx, "alice", "wrong", next)
	}
	if _, err := b.Authenticate(context.Background(), "alice", "alice-pw", next); !errors.Is(err, ErrBlocked) {
		t.Fatalf("B after the recovery: %v, want ErrBlocked", err)
	}
	took := waitBanned(t, b, ClientKey(next), time.Now())
	t.Logf("after the recovery, ban on B within %v", took)
}

// TestClusterRedisSilent: a Redis that accepts connections but never
// answers (a hung server, a black-holed route) delays the first login of
// the outage by cluster.timeout at most; later logins skip Redis until a
// health check reaches it.
func TestClusterRedisSilent(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // never answered
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	log, logs := testutil.NewLogger()
	s, err := New(Config{FailureDelay: time.Millisecond}, testUsers(t), log)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	if err := s.JoinCluster(ClusterConfig{Redis: "redis://" + ln.Addr().String(), Timeout: timeout}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ip := netip.MustParseAddr("192.0.2.30")
	for i := range 3 {
		start := time.Now()
		if _, err := s.Authenticate(t.Context(), "alice", "alice-pw", ip); err != nil {
			t.Fatalf("login %d: %v", i+1, err)
		}
		took := time.Since(start)
		t.Logf("login %d with a silent Redis took %v", i+1, took)
		if took > timeout+time.Second {
			t.Errorf("login %d took %v, more than cluster.timeout (%v) and a second of slack", i+1, took, timeout)
		}
	}
	if n := logs.Count("redis unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
}

// TestClusterReviewFixes: a ban held in Redis refuses on a node whose
// table is full (it cannot record the ban); a ban lifted on one node while
// another was cut off from Redis does not come back when that node
// recovers; a ban announced with an end years away is cut to
// ban_duration.
func TestClusterReviewFixes(t *testing.T) {
	r := testutil.StartRedis(t)
	users := testUsers(t)
	cfg := Config{MaxFailures: 3, BanDuration: time.Minute}
	ctx := t.Context()

	t.Run("full table", func(t *testing.T) {
		a := newClusterNode(t, r, users, cfg)
		b := newClusterNode(t, r, users, cfg)
		ip := netip.MustParseAddr("192.0.2.60")
		for range cfg.MaxFailures {
			a.Authenticate(ctx, "alice", "wrong", ip)
		}
		b.throttle.mu.Lock()
		b.throttle.limit = 3
		b.throttle.mu.Unlock()
		now := time.Now()
		for i := 1; i <= 3; i++ {
			b.throttle.merge(ClientKey(netip.AddrFrom4([4]byte{192, 0, 2, byte(200 + i)})), now, now.Add(time.Hour), 0, time.Time{})
		}
		b.throttle.clear(ClientKey(ip), now) // B's table has no room for it
		if _, err := b.Authenticate(ctx, "alice", "alice-pw", ip); !errors.Is(err, ErrBlocked) {
			t.Fatalf("right password on B, table full, banned in Redis: %v, want ErrBlocked", err)
		}
	})

	t.Run("lifted ban stays lifted", func(t *testing.T) {
		a := newClusterNode(t, r, users, cfg)
		b := newClusterNode(t, r, users, cfg)
		ip := netip.MustParseAddr("192.0.2.61")
		for range cfg.MaxFailures {
			a.Authenticate(ctx, "alice", "wrong", ip)
		}
		waitBanned(t, b, ClientKey(ip), time.Now()) // B has the announcement
		ca := a.cluster.Load()
		ca.down.Store(true) // A is cut off and misses the unban
		if _, ok := b.Unban(ip); !ok {
			t.Fatal("unban on B")
		}
		now := time.Now()
		a.throttle.merge(ClientKey(ip), now, now.Add(time.Minute), 0, time.Time{}) // A still holds it
		if n := ca.pushBans(ctx); n != 0 {
			t.Errorf("A copied %d bans to Redis on recovery; it started none while down", n)
		}
		ca.down.Store(false)
		if _, err := b.Authenticate(ctx, "alice", "alice-pw", ip); err != nil {
			t.Fatalf("right password on B after A's recovery: %v (the lifted ban came back)", err)
		}
	})

	t.Run("announced ban is bounded", func(t *testing.T) {
		a := newClusterNode(t, r, users, cfg)
		ca := a.cluster.Load()
		k := ClientKey(netip.MustParseAddr("192.0.2.62"))
		ca.apply(fmt.Sprintf("ban %s %d", k, time.Now().Add(100*365*24*time.Hour).UnixMilli()))
		a.throttle.mu.Lock()
		until := a.throttle.m[k].bannedUntil
		a.throttle.mu.Unlock()
		if limit := time.Now().Add(cfg.BanDuration + time.Minute); !until.After(time.Now()) || until.After(limit) {
			t.Errorf("announced ban ends %v, want a running ban of at most ban_duration + 1m from now", until)
		}
	})
}
