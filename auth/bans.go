package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// bansVersion is the format version of the bans file.
const bansVersion = 1

// bansFile is what SaveBans writes: the running bans and failure windows.
type bansFile struct {
	Version int         `json:"version"`
	Saved   time.Time   `json:"saved"`
	Entries []banRecord `json:"entries"`
}

type banRecord struct {
	Client      string    `json:"client"` // an IPv4 /32 or IPv6 /64 (ClientKey)
	Failures    int       `json:"failures,omitempty"`
	WindowStart time.Time `json:"window_start,omitzero"`
	BannedUntil time.Time `json:"banned_until,omitzero"`
}

// SaveBans writes the running bans and failure counts to path (JSON,
// mode 0600, through a temporary file and a rename), so that a restart is
// not a way to reset a ban. Attempts in flight are not saved.
func (s *Store) SaveBans(path string) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	now := s.now()
	f := bansFile{Version: bansVersion, Saved: now.UTC(), Entries: []banRecord{}}
	t := s.throttle
	t.mu.Lock()
	for k, r := range t.m {
		r.inFlight = 0
		if r.idleAt(now, t.window) {
			continue
		}
		f.Entries = append(f.Entries, banRecord{Client: k.String(), Failures: r.failures,
			WindowStart: r.windowStart.UTC(), BannedUntil: r.bannedUntil.UTC()})
	}
	t.mu.Unlock()
	data, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(data, '\n'))
	if serr := tmp.Sync(); err == nil { // else a crash may leave an empty file renamed over the bans
		err = serr
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// LoadBans restores what SaveBans wrote, dropping what has expired since,
// and returns the number of entries restored. A missing file restores
// nothing and is no error. Entries merge with the counts in memory; a
// longer ban wins.
func (s *Store) LoadBans(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var f bansFile
	if err := json.Unmarshal(data, &f); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if f.Version != bansVersion {
		return 0, fmt.Errorf("%s: format version %d, want %d", path, f.Version, bansVersion)
	}
	now := s.now()
	t := s.throttle
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range f.Entries {
		k, err := netip.ParsePrefix(e.Client)
		if err != nil || k != ClientKey(k.Addr()) || e.Failures < 0 {
			continue // not something SaveBans writes
		}
		saved := ipRecord{failures: e.Failures, windowStart: e.WindowStart, bannedUntil: e.BannedUntil}
		if saved.idleAt(now, t.window) {
			continue
		}
		r, ok := t.m[k]
		if !ok && !t.makeRoomLocked(now) {
			break
		}
		if saved.bannedUntil.After(r.bannedUntil) {
			r.bannedUntil = saved.bannedUntil
		}
		if saved.failures > r.failures {
			r.failures, r.windowStart = saved.failures, saved.windowStart
		}
		t.m[k] = r
		n++
	}
	return n, nil
}

// mergeShared adds the bans and failure counts held in Redis to the
// node's own (the longer ban and the larger count win). A Redis that
// cannot be reached is logged and leaves the node's list.
func (s *Store) mergeShared(local []Ban) []Ban {
	c := s.cluster.Load()
	if c.down.Load() {
		return local // logged when the outage began
	}
	shared, err := c.list(context.Background())
	if err != nil {
		s.log.Warn("could not list the bans in redis: showing this node's only", "err", err)
		return local
	}
	for i, b := range local {
		if r, ok := shared[b.Client]; ok {
			if r.Until.After(b.Until) {
				local[i].Until = r.Until
			}
			local[i].Failures = max(b.Failures, r.Failures)
			delete(shared, b.Client)
		}
	}
	for _, b := range shared {
		if !b.Until.IsZero() || b.Failures > 0 {
			local = append(local, b)
		}
	}
	return local
}

// Ban is a client the login throttle holds: banned, or counting failures
// toward a ban.
type Ban struct {
	Client   netip.Prefix // ClientKey: an IPv4 address (/32) or an IPv6 /64
	Until    time.Time    // end of the ban; zero when not banned
	Failures int          // failed logins in the running failure_window
}

// Bans lists the clients that are banned or have failures counting in
// their window, bans first (ending soonest first), then by client.
func (s *Store) Bans() []Ban {
	now := s.now()
	t := s.throttle
	t.mu.Lock()
	var out []Ban
	for k, r := range t.m {
		b := Ban{Client: k}
		if now.Before(r.bannedUntil) {
			b.Until = r.bannedUntil
		}
		if r.failures > 0 && now.Sub(r.windowStart) < t.window {
			b.Failures = r.failures
		}
		if b.Until.IsZero() && b.Failures == 0 {
			continue // only attempts in flight
		}
		out = append(out, b)
	}
	t.mu.Unlock()
	if s.cluster.Load() != nil {
		out = s.mergeShared(out)
	}
	slices.SortFunc(out, func(a, b Ban) int {
		if a.Until.IsZero() != b.Until.IsZero() {
			if a.Until.IsZero() {
				return 1
			}
			return -1
		}
		if c := a.Until.Compare(b.Until); c != 0 {
			return c
		}
		if c := a.Client.Addr().Compare(b.Client.Addr()); c != 0 {
			return c
		}
		return a.Client.Bits() - b.Client.Bits()
	})
	return out
}

// Unban lifts the ban of ip's client (ClientKey(ip): an IPv6 address
// lifts its /64) and forgets its failures, on every node of the cluster
// when the Store shares its bans through Redis. It returns that key, and
// false when there was neither a ban nor a failure to forget. The caller
// saves the bans (SaveBans) to make it outlast a restart. Attempts in
// flight keep their reservations. A Redis that cannot be reached is
// logged; the ban is lifted on this node only.
func (s *Store) Unban(ip netip.Addr) (netip.Prefix, bool) {
	k := ClientKey(ip)
	ok := s.throttle.clear(k, s.now())
	if c := s.cluster.Load(); c != nil {
		shared, err := c.unban(context.Background(), k)
		if err != nil {
			s.log.Warn("could not lift the ban in redis: lifted on this node only", "client", k.String(), "err", err)
		}
		ok = ok || shared
	}
	return k, ok
}
