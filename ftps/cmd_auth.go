package ftps

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

// cmdAUTH upgrades the control connection to TLS (RFC 4217 section 4).
func (s *session) cmdAUTH(r request) result {
	mech := strings.ToUpper(strings.TrimSpace(r.arg))
	if s.tlsConn != nil {
		return say(reply{503, "Already using TLS."})
	}
	switch mech {
	case "TLS", "TLS-C", "SSL", "TLS-P":
	default:
		return say(reply{504, "Unsupported AUTH mechanism; use AUTH TLS."})
	}
	if s.r.Buffered() > 0 {
		// Plaintext pipelined behind AUTH would otherwise be read as if it
		// had come over TLS (the STARTTLS injection class).
		s.log.Warn("plaintext data pipelined after AUTH; closing")
		return result{reply: reply{503, "Data pipelined after AUTH; closing control connection."}, quit: true}
	}
	return result{reply: reply{234, "AUTH " + mech + " successful."}, upgrade: mech}
}

// upgrade starts TLS after AUTH's 234 has gone out in clear. It reports
// false when the handshake failed and the session must end.
func (s *session) upgrade(mech string) bool {
	if !s.startTLS("AUTH " + mech) {
		return false
	}
	if mech == "SSL" || mech == "TLS-P" {
		// Historic AUTH SSL implies protected data (RFC 4217 section 4).
		s.pbsz, s.prot = true, protPrivate
	}
	return true
}

// startTLS runs the server handshake on the control connection with the
// session's tagged config, under the handshake timeout, and switches the
// reader and writer to it.
func (s *session) startTLS(how string) bool {
	tc := tls.Server(s.raw, s.binding.ControlTLS())
	deadline := time.Now().Add(s.cfg.TLSHandshakeTimeout)
	if (s.implicit || s.awaitingTLS()) && s.tlsDeadline().Before(deadline) {
		deadline = s.tlsDeadline() // server.auth_tls_timeout counts from connect
	}
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		level := slog.LevelWarn
		if s.implicit && errors.Is(err, io.EOF) || s.probe {
			level = slog.LevelDebug // closed without a byte, or a balancer's check: a probe of the implicit port
		}
		s.log.Log(s.ctx, level, "control TLS handshake failed", "via", how, "err", err)
		return false
	}
	if s.implicit {
		s.noteActive()
	}
	s.wmu.Lock()
	s.tlsConn, s.conn = tc, tc
	s.wmu.Unlock()
	s.who.secure.Store(true)
	s.stage.Store(stageTLS)
	s.r.Reset(tc)
	st := tc.ConnectionState()
	s.log.Info("control TLS established", "via", how, "version", tls.VersionName(st.Version),
		"cipher", tls.CipherSuiteName(st.CipherSuite), "alpn", st.NegotiatedProtocol, "sni", st.ServerName)
	return true
}

// tlsRequiredForLogin reports whether USER/PASS must wait for AUTH TLS.
func (s *session) tlsRequiredForLogin() bool {
	return s.tlsConn == nil && !s.cfg.AllowPlaintextLogin
}

func (s *session) cmdPBSZ(r request) result {
	if s.tlsConn == nil {
		return say(reply{503, "PBSZ requires AUTH TLS first."})
	}
	if _, err := strconv.ParseUint(strings.TrimSpace(r.arg), 10, 32); err != nil {
		return say(replySyntax)
	}
	s.pbsz = true
	return say(reply{200, "PBSZ=0"})
}

func (s *session) cmdPROT(r request) result {
	if s.tlsConn == nil {
		return say(reply{503, "PROT requires AUTH TLS first."})
	}
	if !s.pbsz {
		return say(reply{503, "PROT requires PBSZ first."})
	}
	switch strings.ToUpper(strings.TrimSpace(r.arg)) {
	case "P":
		s.prot = protPrivate
		return say(reply{200, "Protection level set to P."})
	case "C":
		if !s.cfg.AllowPlaintextData {
			return say(reply{534, "PROT C refused: data connections must be encrypted."})
		}
		s.prot = protClear
		return say(reply{200, "Protection level set to C."})
	case "S", "E":
		return say(reply{536, "Protection level not supported; use PROT P."})
	default:
		return say(reply{504, "Unknown protection level."})
	}
}

func (s *session) cmdCCC(request) result {
	return say(reply{534, "CCC refused: the control connection stays encrypted."})
}

// loginGate is the check USER and PASS share: TLS first where it is
// required, and nothing to do once logged in (USER answers that with 530,
// PASS with 230).
func (s *session) loginGate(loggedIn int) error {
	if s.tlsRequiredForLogin() {
		s.plaintextRefused()
		return replyError{reply{530, "Login requires TLS: send AUTH TLS first."}}
	}
	if s.state == stateReady {
		return replyError{reply{loggedIn, "Already logged in."}}
	}
	return nil
}

func (s *session) cmdUSER(r request) result {
	if err := s.loginGate(530); err != nil {
		return fail(err)
	}
	s.userName = r.arg
	s.state = stateNeedPass
	s.stage.Store(stageUser)
	return say(reply{331, "Please specify the password."})
}

// plaintextRefused counts a login refused for want of TLS, once per
// session (a client sends USER and then PASS).
func (s *session) plaintextRefused() {
	if !s.refusedPlain {
		s.refusedPlain = true
		s.srv.deps.Metrics.login(LoginPlaintextRefused, 0)
	}
}

func (s *session) cmdPASS(r request) result {
	if err := s.loginGate(230); err != nil {
		return fail(err)
	}
	if s.state != stateNeedPass {
		return say(reply{503, "Login with USER first."})
	}
	s.state = stateNeedUser
	s.stage.Store(stageChecking)
	start := time.Now()
	// counted records the attempt; the answer follows at once.
	counted := func(result string) { s.srv.deps.Metrics.login(result, time.Since(start)) }
	u, err := s.srv.deps.Auth.Authenticate(s.ctx, s.userName, r.arg, s.remote.Addr())
	s.stage.Store(stageTLS)
	if err != nil {
		return s.loginFailed(err, counted)
	}
	return s.completeLogin(u, counted)
}

// loginFailed answers a refused PASS.
func (s *session) loginFailed(err error, counted func(string)) result {
	switch {
	case errors.Is(err, auth.ErrBlocked):
		counted(LoginBanned)
		s.log.Warn("login refused: address blocked", "user", s.userName)
		return result{err: err, quit: true}
	case s.ctx.Err() != nil:
		return result{quit: true}
	}
	// Told apart for the metrics only, after the answer's delay has
	// passed: the client sees one reply for both.
	if s.srv.deps.Auth.Active(s.userName) {
		counted(LoginBadPassword)
	} else {
		counted(LoginUnknownUser)
	}
	s.failedLogins++
	s.log.Info("login failed", "user", s.userName, "attempt", s.failedLogins)
	if s.failedLogins >= s.cfg.MaxLoginAttempts {
		return result{reply: reply{421, "Too many failed login attempts; closing."}, quit: true}
	}
	// Whatever went wrong reads as a wrong password to the client.
	return fail(auth.ErrInvalidCredentials)
}

// completeLogin completes a login whose password was right: the user's session
// limit, its home, and the checks against eviction and reload that ran
// while the password was being checked.
func (s *session) completeLogin(u *auth.User, counted func(string)) result {
	// Over max_sessions: 421, and the connection closes. FileZilla takes a
	// 421 as temporary and reconnects later (a 530 would read as a wrong
	// password, stop its queue and ask for the password again). It is not
	// a login failure: the password was right.
	limits, err := s.srv.acquireUser(u)
	if err != nil {
		s.log.Info("login refused: too many sessions", "user", u.Name, "max", u.Limits.MaxSessions)
		return result{reply: reply{421, err.Error()}, quit: true}
	}
	st, err := s.srv.openHome(s.ctx, s.log.With("user", u.Name), limits, u.Home)
	if err != nil {
		s.srv.releaseUser(limits)
		s.log.Error("cannot open home directory", "user", u.Name, "home", u.Home, "err", err)
		counted(LoginError)
		return say(reply{530, "Home directory not available."})
	}
	if !s.srv.loggedIn(s) {
		s.srv.releaseUser(limits)
		st.Close() // evicted while the password was checked
		return result{quit: true}
	}
	s.user, s.st, s.state, s.cwd, s.limits = u, st, stateReady, "/", limits
	s.log = s.log.With("user", u.Name) // before account: CloseUsers logs with it
	s.account.Store(u)
	if !s.srv.deps.Auth.Active(u.Name) {
		// A reload removed or disabled the user while its password was
		// checked. CloseUsers runs after the new users are in force, so
		// either it saw this session's account or this check sees them.
		s.log.Info("login refused: user removed or disabled meanwhile")
		return result{reply: reply{421, "Your account was changed; log in again."}, quit: true}
	}
	// Other sessions of this user from this address may now resume this
	// session's tickets on their data connections, and it theirs, when
	// passive.tls_resumption is "user".
	s.binding.SetUser(u.Name)
	s.log.Info("login", "tls", s.tlsConn != nil)
	counted(LoginOK)
	return say(reply{230, "Login successful."})
}

func (s *session) cmdACCT(request) result {
	return say(reply{202, "ACCT not needed."})
}
