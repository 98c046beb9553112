package ftps

import (
	"cmp"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// SessionInfo is a snapshot of one control session, for "ftpsd who".
type SessionInfo struct {
	ID       uint64
	User     string // empty before login
	Client   netip.AddrPort
	Since    time.Time     // when the connection was accepted
	Idle     time.Duration // since the last command line
	TLS      bool          // the control connection is encrypted
	Transfer *TransferInfo // the running transfer, or nil
}

// TransferInfo is the transfer a session is running.
type TransferInfo struct {
	Op      string // the command and its virtual path, e.g. "RETR /a.bin"
	Upload  bool
	Bytes   int64     // moved on the data connection so far
	Started time.Time // when its 150 went out
}

// whoState is what Sessions reads of a session from another goroutine;
// everything else about a session belongs to its control loop.
type whoState struct {
	lastCmd atomic.Int64             // UnixNano of the last command line
	secure  atomic.Bool              // TLS on the control connection
	xfer    atomic.Pointer[transfer] // the running transfer, nil when none
}

// Sessions returns a snapshot of every open control session, ordered by
// connection. It is safe to call from any goroutine.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	s.mu.Unlock()
	now := time.Now()
	out := make([]SessionInfo, 0, len(list))
	for _, sess := range list {
		out = append(out, sess.info(now))
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// info reads the session's immutable fields and its atomics only.
func (s *session) info(now time.Time) SessionInfo {
	in := SessionInfo{
		ID:     s.id,
		Client: s.remote,
		Since:  s.started,
		Idle:   now.Sub(time.Unix(0, s.who.lastCmd.Load())),
		TLS:    s.who.secure.Load(),
	}
	if u := s.account.Load(); u != nil {
		in.User = u.Name
	}
	// A transfer's what, file and started are set before it is published.
	if x := s.who.xfer.Load(); x != nil {
		in.Transfer = &TransferInfo{Op: x.what, Upload: x.file.upload, Bytes: x.bytes.Load(), Started: x.started}
	}
	return in
}
