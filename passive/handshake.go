package passive

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
)

// guard is the state one data connection in the making shares with Close,
// which may come from another goroutine: a Listener's or an Active's single
// Accept, and the connection in its TLS handshake, which Close aborts.
type guard struct {
	mu        sync.Mutex
	closed    bool     // Close was called
	accepting bool     // Accept was called (it may run once)
	pending   net.Conn // the connection during its TLS handshake
}

// begin marks the one Accept; it reports false after Close or a first
// Accept.
func (g *guard) begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.accepting {
		return false
	}
	g.accepting = true
	return true
}

// setPending records the conn in its handshake so that Close can abort it;
// it reports false if Close has already run.
func (g *guard) setPending(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c != nil && g.closed {
		return false
	}
	g.pending = c
	return true
}

func (g *guard) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// close marks the guard closed and returns the pending conn, if any, for
// the caller to close.
func (g *guard) close() net.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	p := g.pending
	g.pending = nil
	return p
}

// handOver gives c to the caller unless Close ran meanwhile. raw is the
// underlying TCP connection registered as pending, if any.
func (g *guard) handOver(c, raw net.Conn) (net.Conn, error) {
	g.mu.Lock()
	closed := g.closed
	g.pending = nil
	g.mu.Unlock()
	if closed {
		c.Close()
		raw.Close()
		return nil, ErrClosed
	}
	return c, nil
}

// errHandshakeTimeout is the cause of a data handshake's own timeout.
var errHandshakeTimeout = errors.New("data TLS handshake timed out")

// finish turns the TCP connection of a data channel, accepted (passive) or
// dialled (active), into the connection a transfer uses. The checks are
// the same whichever side opened TCP: with secure set, this server is the
// TLS server (RFC 4217: the FTP client stays the TLS client in active mode
// too) and the resumption policy applies. where names the channel in logs.
func (b *Binding) finish(ctx context.Context, g *guard, conn net.Conn, secure bool, where slog.Attr) (net.Conn, error) {
	if !secure {
		return g.handOver(conn, conn)
	}
	return b.handshake(ctx, g, conn, where)
}

// handshake runs the TLS server handshake on conn with a data config of
// the session and applies the resumption policy.
func (b *Binding) handshake(ctx context.Context, g *guard, conn net.Conn, where slog.Attr) (net.Conn, error) {
	conn = &eofConn{Conn: conn} // see EndedWithoutCloseNotify
	if b.tls == nil {
		conn.Close()
		return nil, errors.New("passive: secure data connection without a TLS config")
	}
	if !g.setPending(conn) {
		conn.Close()
		return nil, ErrClosed
	}
	set := b.m.settings()
	hctx, cancel := context.WithTimeoutCause(ctx, set.cfg.HandshakeTimeout, errHandshakeTimeout)
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
			return b.refuse(g, tc, tc.ConnectionState(), where, set.mode, chk)
		}
		tc.Close()
		g.setPending(nil)
		switch {
		case g.isClosed():
			return nil, ErrClosed
		case ctx.Err() != nil && context.Cause(hctx) != errHandshakeTimeout:
			// Cancelled first. When the handshake timed out first, the
			// client often leaves at once (Go closes the connection), and
			// the cancellation that follows must not hide the timeout.
			return nil, ctx.Err()
		}
		b.logger().Warn("data TLS handshake failed", where, "err", err)
		b.m.refused.add(RefusedHandshake)
		return nil, fmt.Errorf("passive: data TLS handshake: %w", err)
	}

	st := tc.ConnectionState()
	if !st.DidResume {
		switch set.mode {
		case modeRequired, modeUser:
			return b.refuse(g, tc, st, where, set.mode, chk)
		case modeCompatible:
			// The data connection must use the control connection's
			// version: otherwise a client on the same IP could pick the
			// version whose ticket extension the control hello lacked
			// and skip the strict check.
			if cv := b.controlVersion.Load(); cv != uint32(st.Version) {
				b.logger().Warn("data connection refused: TLS version differs from the control connection's",
					where, "version", tls.VersionName(st.Version), "control_version", tls.VersionName(uint16(cv)))
				tc.Close()
				g.setPending(nil)
				b.m.refused.add(RefusedNotResumed)
				return nil, ErrNotResumed
			}
			if b.offeredTickets(st.Version) {
				return b.refuse(g, tc, st, where, set.mode, chk)
			}
			b.logger().Info("data connection not resumed; resumption not checked: the control hello offered no session tickets",
				where, "version", tls.VersionName(st.Version))
		case modeOff:
			b.logger().Debug("data connection not resumed; resumption check off",
				where, "version", tls.VersionName(st.Version))
		}
	} else if chk.ticket == ticketSibling {
		b.logger().Debug("data connection resumed a sibling session's ticket (same user and address)",
			where, "version", tls.VersionName(st.Version), "waited_for_login", chk.waited)
	}
	return g.handOver(tc, conn)
}

// hintUser ends the refusal log line in "required" mode, where a client
// with one ticket cache for all its connections fails.
const hintUser = `a client that shares one ticket cache across connections, such as rclone < 1.64, needs tls_resumption = "user"`

// refuse logs the refusal with the scope in force and what the client
// presented (ticket=sibling: another open session's of the same user and
// address), closes tc (with close_notify) and returns ErrNotResumed.
func (b *Binding) refuse(g *guard, tc *tls.Conn, st tls.ConnectionState, where slog.Attr, mode resumptionMode, chk *dataCheck) (net.Conn, error) {
	args := []any{where, "version", tls.VersionName(st.Version),
		"tls_resumption", mode.String(), "ticket", chk.ticket.String()}
	if chk.waited > 0 {
		args = append(args, "waited_for_login", chk.waited)
	}
	if mode == modeRequired {
		args = append(args, "hint", hintUser)
	}
	b.logger().Warn("data connection refused: TLS session not resumed", args...)
	tc.Close()
	g.setPending(nil)
	b.m.refused.add(RefusedNotResumed)
	return nil, ErrNotResumed
}
