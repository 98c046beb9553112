// Package passive owns FTPS data channels: the passive port pool, the
// address advertised to clients, one Binding per control session (its tagged
// control TLS config) and one Listener per PASV/EPSV whose Accept hands back
// an already verified connection.
//
// The package knows nothing of FTP: it never formats 227/229 answers and
// never parses commands. It returns addresses and ports and leaves the
// wording to its caller.
package passive

import (
	"errors"
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
	cfg      Config
	mode     resumptionMode
	localNet []netip.Prefix
	public   netip.Addr // PublicAddress when it is an IP literal
	resolver *resolver  // PublicAddress when it is a host name, else nil
	pool     *portPool
	log      *slog.Logger

	exhausted atomic.Uint64 // Listen calls that found no free port

	mu     sync.Mutex
	closed bool
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
	cfg.LocalNetworks = append([]string(nil), cfg.LocalNetworks...)
	first, last := cfg.PortRange()
	m := &Manager{
		cfg:  cfg,
		mode: parseMode(cfg.TLSResumption),
		pool: newPortPool(first, last),
		log:  log,
	}
	for _, s := range cfg.LocalNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil { // Validate checked it already
			return nil, err
		}
		m.localNet = append(m.localNet, p.Masked())
	}
	if cfg.PublicAddress != "" {
		if ip, err := netip.ParseAddr(cfg.PublicAddress); err == nil {
			m.public = ip.Unmap()
		} else {
			r := &net.Resolver{}
			m.resolver = newResolver(cfg.PublicAddress, cfg.ResolveInterval, r.LookupNetIP, log)
			m.resolver.start()
		}
	}
	return m, nil
}

// Close stops the background resolver. Listen on any Binding fails with
// ErrClosed afterwards; listeners already open stay usable until their
// Binding closes them. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	if m.resolver != nil {
		m.resolver.close()
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
