package passive

import "sync/atomic"

// RefusalReason says why a data connection was refused.
type RefusalReason int

// The reasons counted in Stats.Refused.
const (
	// RefusedNotResumed: its TLS session did not resume the control
	// connection's (ErrNotResumed).
	RefusedNotResumed RefusalReason = iota
	// RefusedForeignIP: it came from another IP than the control
	// connection's peer (dropped; the listener keeps waiting).
	RefusedForeignIP
	// RefusedHandshake: its TLS handshake failed or timed out.
	RefusedHandshake
	// RefusedTimeout: no connection came within accept_timeout (in active
	// mode: connecting to the client did not finish in that time).
	RefusedTimeout
	// RefusedPrivilegedPort: PORT/EPRT named a port below 1024 (FTP
	// bounce, RFC 2577); nothing was connected. A foreign address there
	// counts as RefusedForeignIP.
	RefusedPrivilegedPort
	// RefusedConnect: active mode, the client refused the connection or
	// could not be reached.
	RefusedConnect
	// RefusedProxy: with server.trusted_proxies set, it came from another
	// source, or without a valid PROXY header (or with a LOCAL one).
	RefusedProxy

	numRefusalReasons
)

// String is the reason's name in metrics: not_resumed, foreign_ip,
// handshake_failure, timeout, privileged_port, connect_failure, proxy.
func (r RefusalReason) String() string {
	switch r {
	case RefusedNotResumed:
		return "not_resumed"
	case RefusedForeignIP:
		return "foreign_ip"
	case RefusedHandshake:
		return "handshake_failure"
	case RefusedTimeout:
		return "timeout"
	case RefusedPrivilegedPort:
		return "privileged_port"
	case RefusedConnect:
		return "connect_failure"
	case RefusedProxy:
		return "proxy"
	}
	return "unknown"
}

// RefusalReasons lists every reason, in order.
func RefusalReasons() []RefusalReason {
	return []RefusalReason{RefusedNotResumed, RefusedForeignIP, RefusedHandshake, RefusedTimeout,
		RefusedPrivilegedPort, RefusedConnect, RefusedProxy}
}

// Stats is a snapshot of a Manager's counters, for metrics.
type Stats struct {
	PoolSize  int    // ports in the range
	InUse     int    // ports held by open listeners
	Exhausted uint64 // Listen calls that found no free port
	// Refused counts refused data connections by reason (index by
	// RefusalReason) since the Manager started.
	Refused [numRefusalReasons]uint64
}

// refusals counts refused data connections by reason.
type refusals [numRefusalReasons]atomic.Uint64

func (r *refusals) add(why RefusalReason) { r[why].Add(1) }

// Stats returns the pool's occupancy and the counters since New. It is
// cheap and safe for concurrent use.
func (m *Manager) Stats() Stats {
	st := Stats{PoolSize: m.pool.size(), InUse: m.pool.inUse(), Exhausted: m.exhausted.Load()}
	for i := range st.Refused {
		st.Refused[i] = m.refused[i].Load()
	}
	return st
}
