// Package passive owns FTPS data channels: the passive port pool, the
// address advertised to clients, one Binding per control session (its tagged
// control TLS config), one Listener per PASV/EPSV and one Active per
// PORT/EPRT, whose Accept hands back an already verified connection.
//
// The package knows nothing of FTP: it never formats 227/229 answers and
// never parses commands. It returns addresses and ports and leaves the
// wording to its caller.
package passive

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// Errors returned by Listen and Accept. Callers map them to FTP replies.
var (
	// ErrNoPorts means every port of the range is taken (or held by
	// another process); the client gets a 425, the server keeps going.
	ErrNoPorts = errors.New("no free passive port")
	// ErrNotResumed means a TLS data connection did not resume the TLS
	// session of its control connection; the connection has been closed.
	ErrNotResumed = errors.New("TLS session of data connection not resumed")
	// ErrAcceptTimeout means the client did not open the data connection
	// within Config.AcceptTimeout.
	ErrAcceptTimeout = errors.New("data connection not opened in time")
	// ErrClosed means the Listener (or its Binding or Manager) was closed.
	ErrClosed = errors.New("passive listener closed")
)

// Manager hands out passive listeners from one port range and decides the
// advertised address. One Manager serves the whole server; it is safe for
// concurrent use.
type Manager struct {
	set  atomic.Pointer[settings] // replaced as a whole by Reload
	pool *portPool
	log  *slog.Logger

	exhausted atomic.Uint64 // Listen calls that found no free port
	sessions  sessionSet    // open Bindings by ticket tag
	refused   refusals      // data connections refused, by reason (Stats)

	mu     sync.Mutex
	closed bool
}

// settings are the parts of a Manager that Reload can change.
type settings struct {
	cfg      Config
	mode     resumptionMode
	localNet []netip.Prefix
	public   netip.Addr // PublicAddress when it is an IP literal
	resolver *resolver  // PublicAddress when it is a host name, else nil
}

// Exhausted is the number of Listen calls that found no free port since
// New: a range too small for the load shows here (and in the log).
func (m *Manager) Exhausted() uint64 { return m.exhausted.Load() }

// New validates a copy of cfg and builds a Manager. log may be nil. When
// PublicAddress is a host name its first resolution starts in the
// background right away.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	first, last := cfg.PortRange()
	m := &Manager{pool: newPortPool(first, last), log: log}
	set, err := newSettings(cfg, log, nil)
	if err != nil {
		return nil, err
	}
	m.set.Store(set)
	return m, nil
}

// newSettings builds the settings of a validated cfg. When PublicAddress is
// a host name, prev (the resolver in force, or nil) is kept if it resolves
// the same name at the same interval, so that a reload does not forget the
// address; otherwise a new resolver starts in the background right away.
func newSettings(cfg Config, log *slog.Logger, prev *settings) (*settings, error) {
	cfg.LocalNetworks = append([]string(nil), cfg.LocalNetworks...)
	st := &settings{cfg: cfg, mode: parseMode(cfg.TLSResumption)}
	for _, s := range cfg.LocalNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil { // Validate checked it already
			return nil, err
		}
		st.localNet = append(st.localNet, p.Masked())
	}
	if cfg.PublicAddress != "" {
		if ip, err := netip.ParseAddr(cfg.PublicAddress); err == nil {
			st.public = ip.Unmap()
		} else if prev != nil && prev.resolver != nil && prev.cfg.PublicAddress == cfg.PublicAddress &&
			prev.cfg.ResolveInterval == cfg.ResolveInterval {
			st.resolver = prev.resolver
		} else {
			r := &net.Resolver{}
			st.resolver = newResolver(cfg.PublicAddress, cfg.ResolveInterval, r.LookupNetIP, log)
			st.resolver.start()
		}
	}
	return st, nil
}

// settings returns the settings in force.
func (m *Manager) settings() *settings { return m.set.Load() }

// Reload validates cfg and puts in force what can change while the server
// runs: the public address, the local networks, the resumption policy and
// the timeouts. New PASV/EPSV replies and data connections use it; the
// port range cannot change without a restart, and a cfg that changes it is
// refused as a whole.
func (m *Manager) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := m.settings()
	if cfg.Ports != old.cfg.Ports {
		return fmt.Errorf("passive.ports: cannot change without a restart (%q in force)", old.cfg.Ports)
	}
	if m.isClosed() {
		return ErrClosed
	}
	set, err := newSettings(cfg, m.log, old)
	if err != nil {
		return err
	}
	m.set.Store(set)
	if old.resolver != nil && old.resolver != set.resolver {
		// A PassiveAddr still holding old settings gets an error from the
		// closed resolver and falls back to the local address once.
		old.resolver.close()
	}
	return nil
}

// Close stops the background resolver. Listen on any Binding fails with
// ErrClosed afterwards; listeners already open stay usable until their
// Binding closes them. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	if r := m.settings().resolver; r != nil {
		r.close()
	}
	return nil
}

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Size returns the number of ports in the range.
func (m *Manager) Size() int { return m.pool.size() }

// InUse returns the number of ports currently held by open listeners.
func (m *Manager) InUse() int { return m.pool.inUse() }
