package passive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// resumptionMode is Config.TLSResumption parsed.
type resumptionMode uint8

const (
	modeRequired resumptionMode = iota
	modeUser
	modeCompatible
	modeOff
)

func parseMode(s string) resumptionMode {
	switch s {
	case ResumptionUser:
		return modeUser
	case ResumptionCompatible:
		return modeCompatible
	case ResumptionOff:
		return modeOff
	}
	return modeRequired
}

func (m resumptionMode) String() string {
	return [...]string{ResumptionRequired, ResumptionUser, ResumptionCompatible, ResumptionOff}[m]
}

// Listener is one passive data port (one PASV/EPSV). It accepts exactly one
// connection, from the control connection's peer IP only, and then gives its
// port back.
type Listener struct {
	b    *Binding
	ln   *net.TCPListener
	port uint16
	id   uint64 // pool reservation

	releaseOnce sync.Once
	g           guard
}

// Port returns the listening port.
func (l *Listener) Port() uint16 { return l.port }

// Accept waits at most Config.AcceptTimeout (or until ctx ends, or Close)
// for the data connection. Connections from an IP other than the control
// peer's are closed, logged and ignored. The first matching connection is
// the only one: the listening socket is closed and the port released before
// Accept returns, whatever the outcome.
//
// With secure set, Accept runs the TLS server handshake with a data config
// of the session (its ticket keys and tag) under Config.HandshakeTimeout
// and applies the resumption policy; it returns a *tls.Conn, or
// ErrNotResumed after closing the connection. Otherwise it returns the raw
// connection.
//
// Errors: ErrAcceptTimeout, ErrClosed, ctx.Err(), ErrNotResumed, or a wrapped
// handshake or network error. A second call returns ErrClosed.
func (l *Listener) Accept(ctx context.Context, secure bool) (net.Conn, error) {
	if !l.g.begin() {
		return nil, ErrClosed
	}
	conn, err := l.acceptPeer(ctx)
	l.releasePort() // exactly one connection per listener
	if err != nil {
		return nil, err
	}
	return l.b.finish(ctx, &l.g, conn, secure, slog.Int("port", int(l.port)))
}

// acceptPeer waits for a connection from the control peer's IP.
func (l *Listener) acceptPeer(ctx context.Context) (net.Conn, error) {
	cfg := &l.b.m.settings().cfg
	if err := l.ln.SetDeadline(time.Now().Add(cfg.AcceptTimeout)); err != nil {
		return nil, l.acceptErr(ctx, err)
	}
	stop := context.AfterFunc(ctx, func() {
		l.ln.SetDeadline(time.Unix(1, 0)) // wake AcceptTCP
	})
	defer stop()

	want := l.b.remote.Addr()
	for {
		tc, err := l.ln.AcceptTCP()
		if err != nil {
			return nil, l.acceptErr(ctx, err)
		}
		c, peer, ok := l.unproxy(ctx, tc, cfg)
		if !ok {
			continue
		}
		if peer.Addr() != want {
			l.b.logger().Warn("data connection from a foreign address dropped",
				"peer", peer, "port", l.port)
			l.b.m.refused.add(RefusedForeignIP)
			c.Close()
			continue
		}
		return c, nil
	}
}

// unproxy applies server.trusted_proxies to an accepted data connection:
// it returns the connection and the client's address, which is the PROXY
// header's source when the connection came through a trusted balancer. A
// connection from another source, or without a valid header, or with a
// LOCAL one (no client behind it) is closed, logged and counted, and ok is
// false: the listener keeps waiting.
func (l *Listener) unproxy(ctx context.Context, tc *net.TCPConn, cfg *Config) (c net.Conn, peer netip.AddrPort, ok bool) {
	src, _ := tcpAddrPort(tc.RemoteAddr())
	if len(cfg.TrustedProxies) == 0 {
		return tc, src, true
	}
	// The header read must not outlive the accept: ctx and Close end it.
	if !l.g.setPending(tc) {
		tc.Close()
		return nil, netip.AddrPort{}, false
	}
	stop := context.AfterFunc(ctx, func() { tc.SetReadDeadline(time.Unix(1, 0)) })
	pc, h, err := cfg.TrustedProxies.Accept(tc, cfg.ProxyHeaderTimeout)
	stop()
	l.g.setPending(nil)
	switch {
	case err == nil && h.Command.IsLocal():
		err = errors.New("LOCAL PROXY header: no client behind it")
		fallthrough
	case err != nil:
		lvl := slog.LevelWarn
		if h != nil {
			lvl = slog.LevelDebug // a balancer's probe
		}
		l.b.logger().Log(ctx, lvl, "data connection refused: not through a trusted proxy (server.trusted_proxies)",
			"source", src, "port", l.port, "err", err)
		l.b.m.refused.add(RefusedProxy)
		tc.Close()
		return nil, netip.AddrPort{}, false
	}
	peer, _ = tcpAddrPort(pc.RemoteAddr())
	return pc, peer, true
}

// acceptErr says why AcceptTCP failed: Close, ctx, or the accept deadline.
func (l *Listener) acceptErr(ctx context.Context, err error) error {
	switch {
	case l.g.isClosed():
		return ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		l.b.m.refused.add(RefusedTimeout)
		return ErrAcceptTimeout
	}
	return fmt.Errorf("passive: accept: %w", err)
}

// releasePort closes the listening socket and gives the port back, once.
func (l *Listener) releasePort() {
	l.releaseOnce.Do(func() {
		l.ln.Close()
		l.b.m.pool.release(l.port, l.id)
		l.b.forget(l)
	})
}

// Close closes the listening socket, releases the port and aborts a pending
// Accept (which returns ErrClosed), including one in its TLS handshake. A
// connection Accept already returned is not affected. Close is idempotent.
func (l *Listener) Close() error {
	if p := l.g.close(); p != nil {
		p.Close()
	}
	l.releasePort()
	return nil
}
