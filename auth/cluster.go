package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys and channel of the shared login throttle. A client key
// (ClientKey, e.g. "192.0.2.7/32") follows the prefixes.
const (
	redisFailPrefix = "ftpsd:fail:" // failures in the running window; TTL failure_window
	redisBanPrefix  = "ftpsd:ban:"  // a running ban; TTL ban_duration
	redisChannel    = "ftpsd:bans"  // "ban <key> <until unix ms>", "unban <key>"
	defaultTimeout  = 200 * time.Millisecond
	healthInterval  = time.Second // how often an unreachable Redis is tried again
	adminTimeout    = 2 * time.Second
)

// ClusterConfig is the [cluster] section: state shared by the nodes of a
// cluster. Empty, every node keeps its bans and failure counts in memory.
type ClusterConfig struct {
	// Redis is the URL of the Redis server that shares bans and failure
	// counts: redis://host:6379/0, rediss:// for TLS. A password in it is
	// accepted with a warning; prefer RedisPasswordFile.
	Redis string `toml:"redis"`
	// RedisPasswordFile holds the Redis password (AUTH), trimmed of
	// surrounding white space; it overrides one in the URL.
	RedisPasswordFile string `toml:"redis_password_file"`
	// Timeout bounds each Redis request made for a login; past it (or on
	// any error) the node decides from its own memory. Default 200ms.
	Timeout time.Duration `toml:"timeout"`
}

// Validate fills in defaults and checks the section, naming the key.
func (c *ClusterConfig) Validate() error {
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Timeout < 0 {
		return fmt.Errorf("cluster.timeout: %s (want a positive duration)", c.Timeout)
	}
	if c.Redis == "" {
		if c.RedisPasswordFile != "" {
			return errors.New("cluster.redis_password_file: only used with cluster.redis")
		}
		return nil
	}
	_, err := c.options()
	return err
}

// PasswordInURL reports whether the redis URL carries a password, which
// cmd warns about (the configuration file is often readable by many).
func (c *ClusterConfig) PasswordInURL() bool {
	o, err := redis.ParseURL(c.Redis)
	return err == nil && o.Password != "" && c.RedisPasswordFile == ""
}

// options parses the URL and reads the password file. Errors never repeat
// the URL: it may hold a password.
func (c *ClusterConfig) options() (*redis.Options, error) {
	o, err := redis.ParseURL(c.Redis)
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, c.Redis) || strings.Contains(msg, "@") {
			msg = "not a redis:// or rediss:// URL"
		}
		return nil, fmt.Errorf("cluster.redis: %s", msg)
	}
	if c.RedisPasswordFile != "" {
		b, err := os.ReadFile(c.RedisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.redis_password_file: %v", err)
		}
		o.Password = strings.TrimSpace(string(b))
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = c.Timeout, c.Timeout, c.Timeout, c.Timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1 // no retry: the node falls back to its memory instead
	o.DialerRetries = 1
	o.DisableIdentity = true
	return o, nil
}

// SetRedisLogger sends go-redis's own log lines (reconnections of the
// subscription) to log at Debug level. go-redis has one logger per
// process, so cmd calls this once; the outage and recovery lines of a
// Store are logged by the Store itself.
func SetRedisLogger(log *slog.Logger) {
	redis.SetLogger(redisLogger{log})
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "redis")
}

// failScript counts one failure of a client across the cluster and starts
// the shared ban when the count reaches max_failures, atomically. KEYS:
// fail key, ban key. ARGV: window ms, max_failures, ban ms, channel,
// message. Returns the count, or -1 when it started a ban.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
	redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
	redis.call('DEL', KEYS[1])
	redis.call('PUBLISH', ARGV[4], ARGV[5])
	return -1
end
return n
`)

// cluster shares the login throttle of a Store through Redis. Every call
// is bounded by timeout; on an error the node goes on with its memory,
// logs the outage once, skips Redis until a health check reaches it again,
// and then logs the recovery and copies the bans it made meanwhile.
type cluster struct {
	rdb     *redis.Client
	t       *throttle
	log     *slog.Logger
	timeout time.Duration
	now     func() time.Time

	down   atomic.Bool
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// offline holds the bans this node started while Redis was down, for
	// pushBans: only these go to Redis on recovery, so a ban lifted
	// meanwhile on another node (whose unban this node missed) does not
	// come back.
	offMu   sync.Mutex
	offline map[netip.Prefix]time.Time
}

// maxOffline bounds the bans remembered during an outage.
const maxOffline = 10000

// JoinCluster shares the Store's bans and failure counts through the Redis
// server of cfg until Close. It fails only on a bad configuration: an
// unreachable Redis is logged and tried again in the background, and the
// Store works from its memory meanwhile. A Store joins at most once.
func (s *Store) JoinCluster(cfg ClusterConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Redis == "" {
		return nil
	}
	if s.cluster.Load() != nil {
		return errors.New("auth: already in a cluster")
	}
	o, err := cfg.options()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{rdb: redis.NewClient(o), t: s.throttle, log: s.log, timeout: cfg.Timeout, now: s.now, cancel: cancel}
	pctx, pcancel := context.WithTimeout(ctx, cfg.Timeout)
	err = c.rdb.Ping(pctx).Err()
	pcancel()
	if err != nil {
		c.markDown(err)
	} else {
		s.log.Info("sharing login bans through redis", "addr", o.Addr)
	}
	c.wg.Go(func() { c.subscribe(ctx) })
	c.wg.Go(func() { c.health(ctx) })
	if !s.cluster.CompareAndSwap(nil, c) {
		cancel()
		c.rdb.Close()
		c.wg.Wait()
		return errors.New("auth: already in a cluster")
	}
	return nil
}

// Close stops the cluster connection, if any. The Store keeps working
// from its memory.
func (s *Store) Close() error {
	c := s.cluster.Swap(nil)
	if c == nil {
		return nil
	}
	c.cancel()
	err := c.rdb.Close()
	c.wg.Wait()
	return err
}

// ClusterUp reports whether the Store shares its throttle through Redis
// now: false without [cluster] redis, and during an outage.
func (s *Store) ClusterUp() bool {
	c := s.cluster.Load()
	return c != nil && !c.down.Load()
}

// markDown records an outage; only its first error is logged.
func (c *cluster) markDown(err error) {
	if c.down.CompareAndSwap(false, true) {
		c.log.Warn("redis unreachable: login bans and failure counts are kept per node until it is back", "err", err)
	}
}

// call runs f under the request timeout, unless Redis is down, and
// records an outage on error. It reports whether f succeeded.
func (c *cluster) call(parent context.Context, f func(context.Context) error) bool {
	if c.down.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	err := f(ctx)
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return true
	case parent.Err() != nil:
		return false // the caller gave up (the client left): no outage
	}
	c.markDown(err)
	return false
}

// health tries an unreachable Redis every second; when it answers again,
// the recovery is logged and the bans started meanwhile are copied to it.
func (c *cluster) health(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.down.Load() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, c.timeout)
		err := c.rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			continue
		}
		n := c.pushBans(ctx)
		c.down.Store(false)
		c.log.Info("redis reachable again: login bans are shared again", "bans_copied", n)
	}
}

// pushBans copies the node's running bans to Redis (keeping a ban already
// there), and returns how many it sent.
func (c *cluster) pushBans(ctx context.Context) int {
	now := c.now()
	c.offMu.Lock()
	offline := c.offline
	c.offline = nil
	c.offMu.Unlock()
	c.t.mu.Lock()
	bans := make(map[netip.Prefix]time.Duration)
	for k := range offline {
		// Still banned here: an unban announced meanwhile cleared it.
		if r, ok := c.t.m[k]; ok && now.Before(r.bannedUntil) {
			bans[k] = r.bannedUntil.Sub(now)
		}
	}
	c.t.mu.Unlock()
	if len(bans) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, d := range bans {
			p.SetNX(ctx, redisBanPrefix+k.String(), 1, d)
		}
		return nil
	})
	if err != nil {
		c.log.Warn("copying login bans to redis", "err", err)
		return 0
	}
	return len(bans)
}

// subscribe applies the bans and unbans other nodes announce. go-redis
// reconnects and subscribes again by itself after an outage.
func (c *cluster) subscribe(ctx context.Context) {
	ps := c.rdb.Subscribe(ctx, redisChannel)
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			c.apply(m.Payload)
		}
	}
}

// apply handles one message of the channel; malformed ones are ignored.
func (c *cluster) apply(msg string) {
	f := strings.Fields(msg)
	if len(f) < 2 {
		return
	}
	k, err := netip.ParsePrefix(f[1])
	if err != nil || k != ClientKey(k.Addr()) {
		return
	}
	now := c.now()
	switch {
	case f[0] == "ban" && len(f) == 3:
		ms, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return
		}
		c.t.merge(k, now, c.clampBan(now, time.UnixMilli(ms)), 0, time.Time{})
	case f[0] == "unban":
		c.t.clear(k, now)
	}
}

// sync merges k's shared ban and failure count into the node's memory
// before a login is judged.
//
// It reports whether Redis holds a running ban of k: the login is then
// refused even when the node's memory has no room to record the ban.
func (c *cluster) sync(ctx context.Context, k netip.Prefix) (banned bool) {
	var banTTL, failTTL *redis.DurationCmd
	var fails *redis.StringCmd
	key := k.String()
	if !c.call(ctx, func(ctx context.Context) error {
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			banTTL = p.PTTL(ctx, redisBanPrefix+key)
			fails = p.Get(ctx, redisFailPrefix+key)
			failTTL = p.PTTL(ctx, redisFailPrefix+key)
			return nil
		})
		return err
	}) {
		return false
	}
	now := c.now()
	var until, windowStart time.Time
	if d := banTTL.Val(); d > 0 {
		until = c.clampBan(now, now.Add(d))
	}
	n, _ := fails.Int()
	if d := failTTL.Val(); n > 0 && d > 0 {
		c.t.mu.Lock()
		window := c.t.window
		c.t.mu.Unlock()
		windowStart = now.Add(d - window)
	} else {
		n = 0
	}
	if !until.IsZero() || n > 0 {
		c.t.merge(k, now, until, n, windowStart)
	}
	return !until.IsZero()
}

// clampBan bounds the end of a ban learned from Redis to ban_duration
// from now (plus a minute of clock skew between nodes): whoever else can
// write to the Redis server cannot ban an address for years.
func (c *cluster) clampBan(now, until time.Time) time.Time {
	_, ban := c.t.limits()
	if limit := now.Add(ban + time.Minute); until.After(limit) {
		return limit
	}
	return until
}

// fail counts a failed login of k in Redis and reports whether it started
// the shared ban (announced to every node).
func (c *cluster) fail(ctx context.Context, k netip.Prefix) bool {
	maxFailures, ban := c.t.limits()
	c.t.mu.Lock()
	window := c.t.window
	c.t.mu.Unlock()
	key := k.String()
	until := c.now().Add(ban)
	var started bool
	c.call(ctx, func(ctx context.Context) error {
		n, err := failScript.Run(ctx, c.rdb, []string{redisFailPrefix + key, redisBanPrefix + key},
			window.Milliseconds(), maxFailures, ban.Milliseconds(), redisChannel,
			fmt.Sprintf("ban %s %d", key, until.UnixMilli())).Int64()
		started = n == -1
		return err
	})
	if started {
		c.t.merge(k, c.now(), until, 0, time.Time{})
	}
	return started
}

// ban shares a ban the node started by itself.
func (c *cluster) ban(ctx context.Context, k netip.Prefix, until time.Time) {
	key := k.String()
	shared := c.call(ctx, func(ctx context.Context) error {
		_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, redisBanPrefix+key, 1, time.Until(until))
			p.Del(ctx, redisFailPrefix+key)
			p.Publish(ctx, redisChannel, fmt.Sprintf("ban %s %d", key, until.UnixMilli()))
			return nil
		})
		return err
	})
	if !shared {
		c.offMu.Lock()
		if c.offline == nil {
			c.offline = make(map[netip.Prefix]time.Time)
		}
		if len(c.offline) < maxOffline {
			c.offline[k] = until
		}
		c.offMu.Unlock()
	}
}

// list returns the shared bans and failure counts.
func (c *cluster) list(ctx context.Context) (map[netip.Prefix]Ban, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	out := make(map[netip.Prefix]Ban)
	now := c.now()
	for _, prefix := range []string{redisBanPrefix, redisFailPrefix} {
		var keys []string
		iter := c.rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return nil, err
		}
		for _, rk := range keys {
			k, err := netip.ParsePrefix(strings.TrimPrefix(rk, prefix))
			if err != nil {
				continue
			}
			b := out[k]
			b.Client = k
			if prefix == redisBanPrefix {
				d, err := c.rdb.PTTL(ctx, rk).Result()
				if err != nil || d <= 0 {
					continue
				}
				b.Until = now.Add(d)
			} else {
				n, err := c.rdb.Get(ctx, rk).Int()
				if err != nil || n <= 0 {
					continue
				}
				b.Failures = n
			}
			out[k] = b
		}
	}
	return out, nil
}

// unban lifts k's shared ban and failures on every node, and reports
// whether Redis had any.
func (c *cluster) unban(ctx context.Context, k netip.Prefix) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	key := k.String()
	var del *redis.IntCmd
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, redisBanPrefix+key, redisFailPrefix+key)
		p.Publish(ctx, redisChannel, "unban "+key)
		return nil
	})
	if err != nil {
		return false, err
	}
	return del.Val() > 0, nil
}
