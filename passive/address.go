package passive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

const (
	// firstResolveWait bounds how long PassiveAddr waits for a host name
	// that has never been resolved before it falls back to the local address.
	firstResolveWait = time.Second
	// lookupTimeout bounds one background lookup.
	lookupTimeout = 10 * time.Second
	// maxRetryDelay bounds the wait before a failed lookup is retried.
	maxRetryDelay = 10 * time.Second
)

// PassiveAddr returns the IP address to advertise for this session's
// passive listeners: the control connection's local address for peers on
// loopback or in Config.LocalNetworks; otherwise Config.PublicAddress when
// set (a host name is served from a cache refreshed in the background); and
// the control connection's local address when it is not. It never blocks
// much longer than a second: a host name that has not resolved yet falls
// back to the local address (logged at Warn). The result is unmapped.
func (b *Binding) PassiveAddr(ctx context.Context) netip.Addr {
	m := b.m.settings()
	local := b.front // behind a balancer, its address, never this node's
	if m.isLocalPeer(b.remote.Addr()) {
		return local
	}
	switch {
	case m.public.IsValid():
		return m.public
	case m.resolver != nil:
		ip, err := m.resolver.get(ctx)
		if err != nil {
			b.logger().Warn("passive.public_address not resolved; advertising the local address",
				"host", m.resolver.host, "addr", local, "err", err)
			return local
		}
		return ip
	}
	return local
}

// isLocalPeer reports whether peer gets the local address: loopback or
// inside one of LocalNetworks.
func (m *settings) isLocalPeer(peer netip.Addr) bool {
	peer = peer.Unmap()
	if peer.IsLoopback() {
		return true
	}
	for _, p := range m.localNet {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// Warnings returns human-readable configuration warnings for start-up and
// check-config: an advertised address that is private while the control
// listener (listen) is public or unspecified, and a port range smaller than
// maxConnections (0 skips that check). An invalid listen counts as
// unspecified. For a host-name public_address it may wait up to about a
// second for the resolution.
func (mgr *Manager) Warnings(listen netip.AddrPort, maxConnections int) []string {
	var warns []string
	m := mgr.settings()
	la := listen.Addr().Unmap()
	listenPublic := !la.IsValid() || la.IsUnspecified() || !isPrivateAddr(la)
	switch {
	case m.public.IsValid():
		if listenPublic && isPrivateAddr(m.public) {
			warns = append(warns, fmt.Sprintf(
				"passive.public_address %s is a private address while the server listens on %s: clients outside that network cannot open data connections",
				m.public, listenString(listen)))
		}
	case m.resolver != nil:
		ctx, cancel := context.WithTimeout(context.Background(), firstResolveWait)
		ip, err := m.resolver.get(ctx)
		cancel()
		switch {
		case err != nil:
			warns = append(warns, fmt.Sprintf(
				"passive.public_address %q did not resolve (%v): PASV answers fall back to the control connection's local address",
				m.cfg.PublicAddress, err))
		case listenPublic && isPrivateAddr(ip):
			warns = append(warns, fmt.Sprintf(
				"passive.public_address %q resolves to the private address %s while the server listens on %s: clients outside that network cannot open data connections",
				m.cfg.PublicAddress, ip, listenString(listen)))
		}
	case listenPublic && (!la.IsValid() || la.IsUnspecified()):
		warns = append(warns, fmt.Sprintf(
			"passive.public_address is not set and the server listens on %s: PASV answers carry the control connection's local address, which clients behind NAT cannot reach",
			listenString(listen)))
	}
	if maxConnections > 0 && mgr.Size() < maxConnections {
		warns = append(warns, fmt.Sprintf(
			"passive.ports %q has %d ports, fewer than server.max_connections %d: transfers beyond that many at once get 425",
			m.cfg.Ports, mgr.Size(), maxConnections))
	}
	return warns
}

func listenString(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return fmt.Sprintf(":%d", ap.Port())
	}
	return ap.String()
}

// isPrivateAddr reports whether ip is unreachable from the public Internet:
// RFC 1918 / ULA, loopback, link-local, or shared address space (RFC 6598).
func isPrivateAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	cgnat := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, 0}), 10)
	return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || cgnat.Contains(ip)
}

// lookupFunc matches net.Resolver.LookupNetIP.
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// resolver caches the address of the PublicAddress host name. A stale value
// is served while a background lookup refreshes it.
type resolver struct {
	host     string
	interval time.Duration
	lookup   lookupFunc
	log      *slog.Logger

	ctx    context.Context // canceled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	addr    netip.Addr    // last good answer; invalid before the first
	err     error         // last lookup error, nil after a success
	due     time.Time     // when the next lookup is due
	running chan struct{} // closed when the running lookup ends; nil if none
	closed  bool
}

func newResolver(host string, interval time.Duration, lookup lookupFunc, log *slog.Logger) *resolver {
	ctx, cancel := context.WithCancel(context.Background())
	return &resolver{host: host, interval: interval, lookup: lookup, log: log, ctx: ctx, cancel: cancel}
}

// start begins the first lookup in the background.
func (r *resolver) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startLocked()
}

// startLocked starts a background lookup unless one is running or the
// resolver is closed. r.mu is held.
func (r *resolver) startLocked() {
	if r.running != nil || r.closed {
		return
	}
	done := make(chan struct{})
	r.running = done
	r.wg.Add(1)
	go r.refresh(done)
}

func (r *resolver) refresh(done chan struct{}) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, lookupTimeout)
	addrs, err := r.lookup(ctx, "ip", r.host)
	cancel()
	ip, err := pickAddr(addrs, err)

	r.mu.Lock()
	old := r.addr
	now := time.Now()
	if err == nil {
		r.addr, r.err = ip, nil
		r.due = now.Add(r.interval)
	} else {
		r.err = err
		r.due = now.Add(min(r.interval, maxRetryDelay))
	}
	r.running = nil
	close(done)
	r.mu.Unlock()

	switch {
	case err != nil && r.ctx.Err() == nil:
		r.log.Warn("resolving passive.public_address failed", "host", r.host, "err", err, "keep", old)
	case err == nil && ip != old:
		r.log.Info("passive.public_address resolved", "host", r.host, "addr", ip)
	}
}

// get returns the cached address, starting a background refresh when it is
// due. Before the first successful lookup it waits for a running lookup at
// most firstResolveWait (or until ctx ends).
func (r *resolver) get(ctx context.Context) (netip.Addr, error) {
	r.mu.Lock()
	if !time.Now().Before(r.due) {
		r.startLocked()
	}
	addr, err, done := r.addr, r.err, r.running
	r.mu.Unlock()
	if addr.IsValid() {
		return addr, nil
	}
	if done == nil { // the last lookup failed and the retry is not due yet
		if err == nil {
			err = ErrClosed
		}
		return netip.Addr{}, err
	}

	t := time.NewTimer(firstResolveWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	r.mu.Lock()
	addr, err = r.addr, r.err
	r.mu.Unlock()
	if addr.IsValid() {
		return addr, nil
	}
	if err == nil {
		err = errors.New("lookup still running")
	}
	return netip.Addr{}, err
}

// close stops a running lookup and waits for it; no lookup starts later.
func (r *resolver) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// pickAddr prefers the first IPv4 address (PASV can only carry IPv4).
func pickAddr(addrs []netip.Addr, err error) (netip.Addr, error) {
	if err != nil {
		return netip.Addr{}, err
	}
	var first netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			return a, nil
		}
		if !first.IsValid() {
			first = a
		}
	}
	if !first.IsValid() {
		return netip.Addr{}, errors.New("no addresses")
	}
	return first, nil
}
