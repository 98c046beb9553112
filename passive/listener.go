package passive

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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

	mu        sync.Mutex
	closed    bool     // Close was called
	accepting bool     // Accept was called (it may run once)
	pending   net.Conn // accepted conn during its TLS handshake
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
	l.mu.Lock()
	if l.closed || l.accepting {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	l.accepting = true
	l.mu.Unlock()

	conn, err := l.acceptPeer(ctx)
	l.releasePort() // exactly one connection per listener
	if err != nil {
		return nil, err
	}
	if !secure {
		return l.handOver(conn, conn)
	}
	return l.handshake(ctx, conn)
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
		c, err := l.ln.AcceptTCP()
		if err != nil {
			return nil, l.acceptErr(ctx, err)
		}
		ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		peer := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if peer.Addr() != want {
			l.b.log.Warn("data connection from a foreign address dropped",
				"peer", peer, "port", l.port)
			l.b.m.refused.add(RefusedForeignIP)
			c.Close()
			continue
		}
		return c, nil
	}
}

// acceptErr says why AcceptTCP failed: Close, ctx, or the accept deadline.
func (l *Listener) acceptErr(ctx context.Context, err error) error {
	switch {
	case l.isClosed():
		return ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		l.b.m.refused.add(RefusedTimeout)
		return ErrAcceptTimeout
	}
	return fmt.Errorf("passive: accept: %w", err)
}

// handshake runs the TLS server handshake on conn and applies the
// resumption policy.
func (l *Listener) handshake(ctx context.Context, conn net.Conn) (net.Conn, error) {
	b := l.b
	conn = &eofConn{Conn: conn} // see EndedWithoutCloseNotify
	if b.tls == nil {
		conn.Close()
		return nil, errors.New("passive: secure data connection without a TLS config")
	}
	if !l.setPending(conn) {
		conn.Close()
		return nil, ErrClosed
	}
	set := b.m.settings()
	hctx, cancel := context.WithTimeout(ctx, set.cfg.HandshakeTimeout)
	defer cancel()
	// Half the handshake time at most goes to waiting for a sibling's
	// login ("user" mode), so that a refusal is still a clean one.
	wctx, wcancel := context.WithTimeout(hctx, set.cfg.HandshakeTimeout/2)
	defer wcancel()
	cfg, chk := b.dataConfig(wctx, set.mode)
	tc := tls.Server(conn, cfg)
	err := tc.HandshakeContext(hctx)
	if err != nil {
		if chk.noTicket {
			return l.refuse(tc, tc.ConnectionState(), set.mode, chk)
		}
		tc.Close()
		l.setPending(nil)
		switch {
		case l.isClosed():
			return nil, ErrClosed
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		b.log.Warn("data TLS handshake failed", "port", l.port, "err", err)
		b.m.refused.add(RefusedHandshake)
		return nil, fmt.Errorf("passive: data TLS handshake: %w", err)
	}

	st := tc.ConnectionState()
	if !st.DidResume {
		switch set.mode {
		case modeRequired, modeUser:
			return l.refuse(tc, st, set.mode, chk)
		case modeCompatible:
			// The data connection must use the control connection's
			// version: otherwise a client on the same IP could pick the
			// version whose ticket extension the control hello lacked
			// and skip the strict check.
			if cv := b.controlVersion.Load(); cv != uint32(st.Version) {
				b.log.Warn("data connection refused: TLS version differs from the control connection's",
					"port", l.port, "version", tls.VersionName(st.Version), "control_version", tls.VersionName(uint16(cv)))
				tc.Close()
				l.setPending(nil)
				b.m.refused.add(RefusedNotResumed)
				return nil, ErrNotResumed
			}
			if b.offeredTickets(st.Version) {
				return l.refuse(tc, st, set.mode, chk)
			}
			b.log.Info("data connection not resumed; resumption not checked: the control hello offered no session tickets",
				"port", l.port, "version", tls.VersionName(st.Version))
		case modeOff:
			b.log.Debug("data connection not resumed; resumption check off",
				"port", l.port, "version", tls.VersionName(st.Version))
		}
	} else if chk.ticket == ticketSibling {
		b.log.Debug("data connection resumed a sibling session's ticket (same user and address)",
			"port", l.port, "version", tls.VersionName(st.Version), "waited_for_login", chk.waited)
	}
	return l.handOver(tc, conn)
}

// hintUser ends the refusal log line in "required" mode, where a client
// with one ticket cache for all its connections fails.
const hintUser = `a client that shares one ticket cache across connections, such as rclone < 1.64, needs tls_resumption = "user"`

// refuse logs the refusal with the scope in force and what the client
// presented (ticket=sibling: another open session's of the same user and
// address), closes tc (with close_notify) and returns ErrNotResumed.
func (l *Listener) refuse(tc *tls.Conn, st tls.ConnectionState, mode resumptionMode, chk *dataCheck) (net.Conn, error) {
	args := []any{"port", l.port, "version", tls.VersionName(st.Version),
		"tls_resumption", mode.String(), "ticket", chk.ticket.String()}
	if chk.waited > 0 {
		args = append(args, "waited_for_login", chk.waited)
	}
	if mode == modeRequired {
		args = append(args, "hint", hintUser)
	}
	l.b.log.Warn("data connection refused: TLS session not resumed", args...)
	tc.Close()
	l.setPending(nil)
	l.b.m.refused.add(RefusedNotResumed)
	return nil, ErrNotResumed
}

// handOver gives c to the caller unless Close ran meanwhile. raw is the
// underlying TCP connection registered as pending, if any.
func (l *Listener) handOver(c, raw net.Conn) (net.Conn, error) {
	l.mu.Lock()
	closed := l.closed
	l.pending = nil
	l.mu.Unlock()
	if closed {
		c.Close()
		raw.Close()
		return nil, ErrClosed
	}
	return c, nil
}

// setPending records the conn in its handshake so that Close can abort it;
// it reports false if the Listener is already closed.
func (l *Listener) setPending(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c != nil && l.closed {
		return false
	}
	l.pending = c
	return true
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
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
	l.mu.Lock()
	l.closed = true
	p := l.pending
	l.pending = nil
	l.mu.Unlock()
	if p != nil {
		p.Close()
	}
	l.releasePort()
	return nil
}
