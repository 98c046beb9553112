package ftps

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/time/rate"

	"github.com/ftpsd/ftpsd/auth"
)

// minBurst is the smallest burst of a rate limiter: the largest piece a
// throttled transfer moves at once. Larger rates get rate/10, so that a
// fast limit does not cost a timer per 64 KiB.
const minBurst = 64 << 10

// newLimiter returns a limiter of bps bytes per second (0: unlimited).
func newLimiter(bps int64) *rate.Limiter {
	l := rate.NewLimiter(rate.Inf, minBurst)
	setRate(l, bps)
	return l
}

// setRate changes l to bps bytes per second (0: unlimited). Transfers
// waiting on l take the new rate from their next piece on.
func setRate(l *rate.Limiter, bps int64) {
	if bps <= 0 {
		l.SetLimit(rate.Inf)
		return
	}
	l.SetBurst(int(max(minBurst, bps/10)))
	l.SetLimit(rate.Limit(bps))
}

// throttledReader reads from r no faster than every one of its limiters
// allows: each Read asks for at most the smallest burst, then waits for
// the bytes it got (WaitN: a timer, no spinning). The bytes are passed on
// unchanged. ctx ends a wait at once (ABOR, a closed session).
//
// Downloads read their file through it, uploads their data connection;
// anything else that reads on a user's behalf (HASH) should too.
type throttledReader struct {
	ctx  context.Context
	r    io.Reader
	lims []*rate.Limiter
}

// throttle wraps r in a throttledReader, or returns r when there is no
// limiter.
func throttle(ctx context.Context, r io.Reader, lims ...*rate.Limiter) io.Reader {
	var use []*rate.Limiter
	for _, l := range lims {
		if l != nil {
			use = append(use, l)
		}
	}
	if len(use) == 0 {
		return r
	}
	return &throttledReader{ctx: ctx, r: r, lims: use}
}

func (t *throttledReader) Read(p []byte) (int, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	n := len(p)
	for _, l := range t.lims {
		if l.Limit() != rate.Inf {
			n = min(n, l.Burst())
		}
	}
	n, err := t.r.Read(p[:n])
	if n > 0 {
		for _, l := range t.lims {
			if werr := waitN(t.ctx, l, n); werr != nil {
				return n, werr
			}
		}
	}
	return n, err
}

// waitN waits on l for n bytes, in pieces no larger than its burst (WaitN
// refuses more). A reload may shrink the burst between the Read and the
// wait: the pieces are cut again then.
func waitN(ctx context.Context, l *rate.Limiter, n int) error {
	for n > 0 {
		k := n
		if l.Limit() != rate.Inf {
			k = min(n, l.Burst())
		}
		if err := l.WaitN(ctx, k); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if k <= l.Burst() || l.Limit() == rate.Inf {
				return err
			}
			continue // the burst shrank meanwhile
		}
		n -= k
	}
	return nil
}

// userState is what the sessions of one user share while at least one is
// logged in: their count, the user's rate limiters, its quota usage and
// its home directory's root (homes.go). The fields are guarded by
// Server.umu, except the limiters and the quota, which are safe for
// concurrent use.
type userState struct {
	name     string
	sessions int
	down, up *rate.Limiter
	quota    *quotaUsage // nil when the user has no quota
	home     *homeRoot   // the root new sessions share; nil before the first
}

// errTooManySessions refuses a login over the user's max_sessions.
type errTooManySessions struct{ max int }

func (e errTooManySessions) Error() string {
	return fmt.Sprintf("Too many sessions for this user (max %d).", e.max)
}

// acquireUser counts a new session of u, or refuses it when u already has
// max_sessions. It puts u's current limits in force for all of its
// sessions (a reload may have changed them), and returns the state the
// session keeps until releaseUser.
func (s *Server) acquireUser(u *auth.User) (*userState, error) {
	s.umu.Lock()
	defer s.umu.Unlock()
	st := s.users[u.Name]
	if st == nil {
		st = &userState{name: u.Name, down: newLimiter(0), up: newLimiter(0)}
	}
	if m := u.Limits.MaxSessions; m > 0 && st.sessions >= m {
		return nil, errTooManySessions{m}
	}
	st.sessions++
	s.users[u.Name] = st
	s.applyLocked(st, u)
	return st, nil
}

// applyLocked puts u's limits in force on st.
func (s *Server) applyLocked(st *userState, u *auth.User) {
	setRate(st.down, u.Limits.DownloadRate)
	setRate(st.up, u.Limits.UploadRate)
	st.quota = nil
	if u.Limits.HasQuota() {
		st.quota = s.quotas.forUser(u.Name, u.Home, u.Limits.QuotaBytes, u.Limits.QuotaFiles)
	}
}

// releaseUser ends the count of a session of st's user.
func (s *Server) releaseUser(st *userState) {
	s.umu.Lock()
	defer s.umu.Unlock()
	if st.sessions--; st.sessions <= 0 {
		delete(s.users, st.name)
	}
}

// ApplyLimits puts the limits in force in the auth store (after a reload)
// on the users logged in now: rates change for running transfers too,
// from their next piece on; max_sessions applies to the next login; a
// changed quota is rescanned. The server-wide caps change at once.
func (s *Server) ApplyLimits() {
	caps := s.deps.Auth.ServerLimits()
	setRate(s.totalDown, caps.DownloadRate)
	setRate(s.totalUp, caps.UploadRate)
	s.umu.Lock()
	defer s.umu.Unlock()
	for name, st := range s.users {
		if u, ok := s.deps.Auth.Lookup(name); ok {
			s.applyLocked(st, u)
		}
	}
}

// UserUsage is what one user uses now, for "ftpsd who" and reports.
type UserUsage struct {
	Sessions int         // sessions logged in now
	Limits   auth.Limits // the limits in force
	// QuotaBytes and QuotaFiles are the usage under the home, when the
	// user has a quota and its home has been scanned (Scanned).
	QuotaBytes, QuotaFiles int64
	Scanned                bool
}

// String is a one-line summary: "2 logged in; quota used 1.5MiB and 3
// files; sessions 3, download 2MiB/s, ...".
func (u UserUsage) String() string {
	used := ""
	switch {
	case u.Limits.HasQuota() && u.Scanned:
		used = fmt.Sprintf("quota used %s and %d files; ", auth.FormatSize(u.QuotaBytes), u.QuotaFiles)
	case u.Limits.HasQuota():
		used = "quota usage being scanned; "
	}
	return fmt.Sprintf("%d logged in; %s%s", u.Sessions, used, u.Limits)
}

// UserUsage describes the user name (known to the auth store) with its
// limits and, while it is logged in, its sessions and quota usage.
func (s *Server) UserUsage(name string) (UserUsage, bool) {
	u, ok := s.deps.Auth.Lookup(name)
	if !ok {
		return UserUsage{}, false
	}
	out := UserUsage{Limits: u.Limits}
	s.umu.Lock()
	if st := s.users[name]; st != nil {
		out.Sessions = st.sessions
	}
	s.umu.Unlock()
	if u.Limits.HasQuota() {
		if q := s.quotas.peek(name); q != nil {
			out.QuotaBytes, out.QuotaFiles, out.Scanned = q.usage()
		}
	}
	return out, true
}

// quota is the session's user's quota usage, or nil when it has none.
func (s *session) quota() *quotaUsage {
	if s.limits == nil {
		return nil
	}
	s.srv.umu.Lock()
	defer s.srv.umu.Unlock()
	return s.limits.quota
}
