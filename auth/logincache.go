package auth

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// loginCache remembers, for a short time, that a user logged in with a
// password, so that the same user and password logging in again skip the
// password hash (argon2id at the production cost is ~135 ms of CPU and
// 64 MiB; FileZilla logs in again on every transfer connection).
//
// What it keeps, per user name: the HMAC-SHA256, under a random secret
// made with the cache (at start and at each reload; never stored), of
// the name, the password and the user's encoded hash, and when the entry
// expires. Never the password, and nothing that verifies a password
// without the secret. Only a successful full verification adds an entry;
// a lookup compares MACs with hmac.Equal.
//
// Why a wrong password cannot pass: its MAC differs from the right
// password's (HMAC-SHA256 is a PRF), so it misses and goes through the
// full hash and failure_delay like any wrong password. Why a changed hash
// misses: the encoded hash is in the MAC, and a reload makes a new, empty
// cache anyway. Why answering a hit fast reveals nothing useful: only the
// right password hits, and the right password logs in, which the client
// sees anyway. The cases where a right password must not log in are kept
// out of the cache by Store.Authenticate: a banned address is refused
// before the lookup (and a ban that starts meanwhile answers ErrBlocked
// failure_delay after the call, as a ban found at the start does); a
// disabled or removed user is unknown to the set, and the set's cache,
// new with it, only ever holds entries of its own users; a login from outside the user's allowed_networks never uses a hit
// and pays the full hash, so its refusal takes as long as a wrong
// password's and cannot confirm the password. Every login, whoever it
// names, computes the MAC and looks it up before its hash, so that this
// step takes the same time for all of them. The cost: whoever can read
// the process's memory could test guesses against a cached MAC at
// SHA-256 speed rather than argon2id's; such a reader already sees
// passwords arrive in the TLS buffers, and entries expire after ttl.
type loginCache struct {
	secret [32]byte
	ttl    time.Duration
	size   int

	mu    sync.Mutex
	m     map[string]*list.Element // by user name; values are *cacheEntry
	order *list.List               // oldest first (insertion = expiry order)
}

type cacheEntry struct {
	name    string
	mac     [sha256.Size]byte
	expires time.Time
}

// newLoginCache returns a cache of at most size users whose entries live
// ttl, or nil (no cache) when ttl is 0.
func newLoginCache(ttl time.Duration, size int) (*loginCache, error) {
	if ttl <= 0 || size <= 0 {
		return nil, nil
	}
	c := &loginCache{ttl: ttl, size: size, m: make(map[string]*list.Element), order: list.New()}
	if _, err := rand.Read(c.secret[:]); err != nil {
		return nil, err
	}
	return c, nil
}

// sum is the MAC of one login: the name, the password and the encoded
// hash, each preceded by its length so that no two triples run together.
func (c *loginCache) sum(name, password, encoded string) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.secret[:])
	for _, s := range []string{name, password, encoded} {
		writeField(m, s)
	}
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

func writeField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// hit reports whether name has an entry with mac that has not expired at
// now. Expired entries are dropped.
func (c *loginCache) hit(name string, mac [sha256.Size]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	el, ok := c.m[name]
	if !ok {
		return false
	}
	e := el.Value.(*cacheEntry)
	return now.Before(e.expires) && hmac.Equal(e.mac[:], mac[:])
}

// add remembers a successful verification of name at now, replacing the
// user's previous entry; when full, the oldest entry goes.
func (c *loginCache) add(name string, mac [sha256.Size]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	if el, ok := c.m[name]; ok {
		c.removeLocked(el)
	}
	for c.order.Len() >= c.size {
		c.removeLocked(c.order.Front())
	}
	c.m[name] = c.order.PushBack(&cacheEntry{name: name, mac: mac, expires: now.Add(c.ttl)})
}

// pruneLocked drops the expired entries, which are the oldest: a MAC stays
// in memory no longer than it is useful.
func (c *loginCache) pruneLocked(now time.Time) {
	for el := c.order.Front(); el != nil && !now.Before(el.Value.(*cacheEntry).expires); el = c.order.Front() {
		c.removeLocked(el)
	}
}

func (c *loginCache) removeLocked(el *list.Element) {
	delete(c.m, el.Value.(*cacheEntry).name)
	c.order.Remove(el)
}

// len is the number of entries, expired ones not yet dropped included.
func (c *loginCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
