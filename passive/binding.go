package passive

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// tagPrefix starts every ticket tag; SessionState.Extra asks each layer to
// append only entries it can recognise.
const tagPrefix = "ftpsd/1/"

// TLS extension numbers looked for in the control ClientHello.
const (
	extSessionTicket  uint16 = 35 // TLS 1.2 session tickets (RFC 5077)
	extPSKKeyExchange uint16 = 45 // psk_key_exchange_modes, TLS 1.3 resumption
)

// Bits of Binding.offered.
const (
	offeredTLS12 uint32 = 1 << iota // control hello carried extension 35
	offeredTLS13                    // control hello carried extension 45
)

// Binding ties the data connections of one control session to it: it owns
// the session's TLS config, whose session tickets carry a random tag, and
// the session's data channels (passive listeners, active targets). Make one
// with Manager.Bind per control connection; it is safe for concurrent use.
type Binding struct {
	m      *Manager
	local  netip.AddrPort // control connection's local address, unmapped: where data listeners bind
	front  netip.Addr     // the address the client connected to (local's, or a balancer's)
	remote netip.AddrPort // control connection's peer, unmapped
	tag    []byte
	base   *tls.Config // the server's config; data connections clone it
	tls    *tls.Config // control side: every ticket carries the tag

	// offered records which ticket extensions the latest control
	// ClientHello carried (offeredTLS12|offeredTLS13).
	offered atomic.Uint32
	// controlVersion is the TLS version the control connection negotiated.
	controlVersion atomic.Uint32

	mu      sync.Mutex
	closed  bool
	user    string                 // set by SetUser; "" before login
	changed chan struct{}          // closed when user or closed changes; see state
	open    map[io.Closer]struct{} // *Listener and *Active not yet done
}

// Bind starts the data side of one control session. base is the server's
// TLS config; it must have explicit session ticket keys
// (SetSessionTicketKeys) so that its clones share them. local and remote are
// the control connection's local and peer addresses. Bind does not modify
// base; its GetConfigForClient, WrapSession and UnwrapSession are replaced
// in the session's clone. A nil base (plain FTP) gives a nil ControlTLS,
// and secure Accepts fail. Close must be called when the session ends.
func (m *Manager) Bind(base *tls.Config, local, remote netip.AddrPort) *Binding {
	return m.BindProxied(base, local, remote, local.Addr())
}

// BindProxied is Bind for a control connection that came through a
// balancer (a PROXY header): local is the socket's own address, where the
// data listeners bind; remote is the client's, from the header; front is
// the address the client connected to on the balancer (the header's
// destination), which PassiveAddr advertises where Bind would advertise
// local's.
func (m *Manager) BindProxied(base *tls.Config, local, remote netip.AddrPort, front netip.Addr) *Binding {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	var raw [16]byte
	rand.Read(raw[:]) // never fails (crypto/rand since Go 1.24)
	b := &Binding{
		m:      m,
		local:  local,
		front:  front.Unmap(),
		remote: remote,
		tag:    []byte(tagPrefix + hex.EncodeToString(raw[:])),
		open:   make(map[io.Closer]struct{}),
	}
	if base != nil {
		b.base = base
		b.tls = b.controlConfig(base)
	}
	m.sessions.add(b)
	return b
}

// controlConfig clones base and installs the ticket hooks of the control
// connection: every ticket it issues carries the tag (and no other
// session's), so that the session's data connections can tell its tickets
// from any other's. It resumes any ticket that base's keys decrypt: a
// client reconnecting (to this node, or to another node of a cluster that
// derives its keys from the same tls.ticket_key_file) saves a full
// handshake. That grants nothing: the login still follows, and the new
// tickets this connection issues carry this session's tag only (crypto/tls
// makes them from a fresh SessionState, without the resumed one's Extra),
// so data connections stay bound to this session. The clone encrypts and
// decrypts tickets itself: it shares base's explicit ticket keys. The data
// side is dataConfig.
func (b *Binding) controlConfig(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = slices.DeleteFunc(ss.Extra, func(e []byte) bool { return bytes.HasPrefix(e, []byte(tagPrefix)) })
		ss.Extra = append(ss.Extra, b.tag)
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			// Unreadable (other keys, expired): a full handshake.
			return nil, nil
		}
		return ss, nil
	}
	// Only observes the control hello; returning another config would
	// silently drop the hooks above.
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		b.observeHello(hello)
		return nil, nil
	}
	// Only records the negotiated version (for "compatible").
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		b.controlVersion.Store(uint32(cs.Version))
		return nil
	}
	return cfg
}

// logger is the manager's logger with the client's address. Made when
// something is logged rather than kept: most sessions never log here, and
// an idle session should cost little.
func (b *Binding) logger() *slog.Logger { return b.m.log.With("remote", b.remote) }

// observeHello records which ticket extensions a control ClientHello
// offered (data connections have their own config without this hook).
func (b *Binding) observeHello(hello *tls.ClientHelloInfo) {
	var bits uint32
	for _, ext := range hello.Extensions {
		switch ext {
		case extSessionTicket:
			bits |= offeredTLS12
		case extPSKKeyExchange:
			bits |= offeredTLS13
		}
	}
	b.offered.Store(bits)
}

// offeredTickets reports whether the control hello offered ticket
// resumption for TLS version vers.
func (b *Binding) offeredTickets(vers uint16) bool {
	bits := b.offered.Load()
	if vers >= tls.VersionTLS13 {
		return bits&offeredTLS13 != 0
	}
	return bits&offeredTLS12 != 0
}

// ControlTLS returns the session's tagged TLS config: use it for the control
// handshake (AUTH TLS, or implicit FTPS). Each data connection of this
// Binding gets its own config with the same keys (dataConfig), which tags
// only tickets of data connections that resumed. Do not modify it; Clone it
// if you must.
func (b *Binding) ControlTLS() *tls.Config { return b.tls }

// Listen binds a random free port of the range on the control connection's
// local IP. It returns ErrNoPorts when the range is exhausted and ErrClosed
// after Close (of the Binding or the Manager).
func (b *Binding) Listen() (*Listener, error) {
	if b.m.isClosed() {
		return nil, ErrClosed
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}

	ln, port, id, err := b.m.pool.listen(b.local.Addr())
	if err != nil {
		if ex := (*exhaustedError)(nil); errors.As(err, &ex) {
			b.m.exhausted.Add(1)
			b.logger().Warn("passive ports exhausted", "times", b.m.exhausted.Load(),
				"size", b.m.pool.size(), "in_use", b.m.pool.inUse(),
				"tried", ex.tried, "busy", ex.busy)
		}
		return nil, err
	}
	l := &Listener{b: b, ln: ln, port: port, id: id}

	b.mu.Lock()
	if b.closed { // closed while we were binding
		b.mu.Unlock()
		l.Close()
		return nil, ErrClosed
	}
	b.open[l] = struct{}{}
	b.mu.Unlock()
	return l, nil
}

// track registers a data channel so that Close reaches it; it reports
// false if the Binding is closed.
func (b *Binding) track(c io.Closer) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.open[c] = struct{}{}
	return true
}

func (b *Binding) forget(c io.Closer) {
	b.mu.Lock()
	delete(b.open, c)
	b.mu.Unlock()
}

// Close closes the open listeners and active targets of this binding
// (unblocking their Accept with ErrClosed); Listen and Active fail with
// ErrClosed afterwards. Data connections already returned by Accept belong
// to the caller and stay open.
func (b *Binding) Close() {
	b.m.sessions.remove(b)
	b.mu.Lock()
	b.closed = true
	b.notifyLocked()
	cs := make([]io.Closer, 0, len(b.open))
	for c := range b.open {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}
