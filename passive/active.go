package passive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// Errors of active mode (PORT/EPRT). Callers map them to FTP replies.
var (
	// ErrForeignAddress means an active data address is not the control
	// connection's peer IP: connecting there would let a client aim the
	// server at a third host (FTP bounce, RFC 2577).
	ErrForeignAddress = errors.New("active data address is not the client's")
	// ErrPrivilegedPort means an active data port below 1024: those are
	// services (SMTP, SSH...), never an FTP client's data port (RFC 2577).
	ErrPrivilegedPort = errors.New("active data port below 1024")
	// ErrConnect means the server could not open the active data
	// connection to the client (refused, unreachable, or not within
	// Config.AcceptTimeout). It wraps the network error.
	ErrConnect = errors.New("cannot connect to the client's data port")
)

// MinActivePort is the lowest port an active data connection may go to.
const MinActivePort = 1024

// Active is one active-mode data channel (one PORT/EPRT): the server
// connects to the client. It has the shape of a Listener (Accept, Close)
// and the same rules once TCP is up: this server is the TLS server, and
// the data connection must resume the control session as Config's
// tls_resumption says (RFC 4217 keeps the FTP client the TLS client in
// active mode too).
//
// The connection leaves from the control connection's local IP and an
// ephemeral port chosen by the kernel, not from port 20 (the control port
// minus one): binding a port below 1024 needs privileges the service does
// not have, and nothing in RFC 959 requires it of a client.
type Active struct {
	b    *Binding
	addr netip.AddrPort
	g    guard

	// stop ends a dial in progress when Close is called.
	stop   context.Context
	cancel context.CancelFunc
}

// Active checks addr, the client's data address from PORT or EPRT, and
// returns the channel that connects to it when a transfer starts. The
// address must be the control connection's peer IP (ErrForeignAddress)
// and the port at least MinActivePort (ErrPrivilegedPort); nothing is
// connected before these checks pass. It returns ErrClosed after Close
// (of the Binding or the Manager).
func (b *Binding) Active(addr netip.AddrPort) (*Active, error) {
	ip := addr.Addr().Unmap()
	if ip.WithZone("") != b.remote.Addr().WithZone("") {
		b.logger().Warn("active data address refused: not the client's address", "addr", addr)
		b.m.refused.add(RefusedForeignIP)
		return nil, ErrForeignAddress
	}
	if addr.Port() < MinActivePort {
		b.logger().Warn("active data address refused: privileged port", "addr", addr)
		b.m.refused.add(RefusedPrivilegedPort)
		return nil, ErrPrivilegedPort
	}
	if b.m.isClosed() {
		return nil, ErrClosed
	}
	// The control peer's address keeps its zone (IPv6 link-local).
	a := &Active{b: b, addr: netip.AddrPortFrom(b.remote.Addr(), addr.Port())}
	a.stop, a.cancel = context.WithCancel(context.Background())
	if !b.track(a) {
		a.cancel()
		return nil, ErrClosed
	}
	return a, nil
}

// Addr returns the client's data address.
func (a *Active) Addr() netip.AddrPort { return a.addr }

// Accept connects to the client's data address from the control
// connection's local IP and an ephemeral port, within Config.AcceptTimeout
// (or until ctx ends, or Close), then, with secure set, runs the TLS server
// handshake and the resumption policy exactly as Listener.Accept does.
//
// Errors: ErrConnect (wrapping the network error), ErrClosed, ctx.Err(),
// ErrNotResumed, or a wrapped handshake error. A second call returns
// ErrClosed.
func (a *Active) Accept(ctx context.Context, secure bool) (net.Conn, error) {
	if !a.g.begin() {
		return nil, ErrClosed
	}
	defer a.b.forget(a)
	conn, err := a.dial(ctx)
	if err != nil {
		return nil, err
	}
	return a.b.finish(ctx, &a.g, conn, secure, slog.String("active", a.addr.String()))
}

func (a *Active) dial(ctx context.Context) (net.Conn, error) {
	timeout := a.b.m.settings().cfg.AcceptTimeout
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(a.stop, cancel)
	defer stop()

	d := net.Dialer{KeepAlive: -1} // as portPool.listen
	if l := a.b.local.Addr(); l.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(l, 0))
	}
	c, err := d.DialContext(dctx, "tcp", a.addr.String())
	if err != nil {
		switch {
		case a.g.isClosed():
			return nil, ErrClosed
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case dctx.Err() != nil:
			a.b.m.refused.add(RefusedTimeout)
		default:
			a.b.m.refused.add(RefusedConnect)
		}
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	if a.g.isClosed() {
		c.Close()
		return nil, ErrClosed
	}
	return c, nil
}

// Close aborts a pending Accept (which returns ErrClosed), including one
// dialling or in its TLS handshake. A connection Accept already returned
// is not affected. Close is idempotent.
func (a *Active) Close() error {
	if p := a.g.close(); p != nil {
		p.Close()
	}
	a.cancel()
	a.b.forget(a)
	return nil
}
