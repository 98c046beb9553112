package ftps

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

// cmdAUTH upgrades the control connection to TLS (RFC 4217 section 4).
func (s *session) cmdAUTH(arg string) reply {
	mech := strings.ToUpper(strings.TrimSpace(arg))
	if s.tlsConn != nil {
		return reply{503, "Already using TLS."}
	}
	switch mech {
	case "TLS", "TLS-C", "SSL", "TLS-P":
	default:
		return reply{504, "Unsupported AUTH mechanism; use AUTH TLS."}
	}
	if s.r.Buffered() > 0 {
		// Plaintext pipelined behind AUTH would otherwise be read as if it
		// had come over TLS (the STARTTLS injection class).
		s.log.Warn("plaintext data pipelined after AUTH; closing")
		s.quit = true
		return reply{503, "Data pipelined after AUTH; closing control connection."}
	}
	s.reply(reply{234, "AUTH " + mech + " successful."})
	if !s.startTLS("AUTH " + mech) {
		s.quit = true
		return noReply
	}
	if mech == "SSL" || mech == "TLS-P" {
		// Historic AUTH SSL implies protected data (RFC 4217 section 4).
		s.pbsz, s.prot = true, protPrivate
	}
	return noReply
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
		s.log.Warn("control TLS handshake failed", "via", how, "err", err)
		return false
	}
	s.wmu.Lock()
	s.tlsConn, s.conn = tc, tc
	s.wmu.Unlock()
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

func (s *session) cmdPBSZ(arg string) reply {
	if s.tlsConn == nil {
		return reply{503, "PBSZ requires AUTH TLS first."}
	}
	if _, err := strconv.ParseUint(strings.TrimSpace(arg), 10, 32); err != nil {
		return replySyntax
	}
	s.pbsz = true
	return reply{200, "PBSZ=0"}
}

func (s *session) cmdPROT(arg string) reply {
	if s.tlsConn == nil {
		return reply{503, "PROT requires AUTH TLS first."}
	}
	if !s.pbsz {
		return reply{503, "PROT requires PBSZ first."}
	}
	switch strings.ToUpper(strings.TrimSpace(arg)) {
	case "P":
		s.prot = protPrivate
		return reply{200, "Protection level set to P."}
	case "C":
		if !s.cfg.AllowPlaintextData {
			return reply{534, "PROT C refused: data connections must be encrypted."}
		}
		s.prot = protClear
		return reply{200, "Protection level set to C."}
	case "S", "E":
		return reply{536, "Protection level not supported; use PROT P."}
	default:
		return reply{504, "Unknown protection level."}
	}
}

func (s *session) cmdCCC(string) reply {
	return reply{534, "CCC refused: the control connection stays encrypted."}
}

func (s *session) cmdUSER(arg string) reply {
	if s.tlsRequiredForLogin() {
		return reply{530, "Login requires TLS: send AUTH TLS first."}
	}
	if s.state == stateReady {
		return reply{530, "Already logged in."}
	}
	s.userName = arg
	s.state = stateNeedPass
	s.stage.Store(stageUser)
	return reply{331, "Please specify the password."}
}

func (s *session) cmdPASS(arg string) reply {
	if s.tlsRequiredForLogin() {
		return reply{530, "Login requires TLS: send AUTH TLS first."}
	}
	if s.state == stateReady {
		return reply{230, "Already logged in."}
	}
	if s.state != stateNeedPass {
		return reply{503, "Login with USER first."}
	}
	s.state = stateNeedUser
	s.stage.Store(stageChecking)
	u, err := s.srv.deps.Auth.Authenticate(s.ctx, s.userName, arg, s.remote.Addr())
	s.stage.Store(stageTLS)
	switch {
	case errors.Is(err, auth.ErrBlocked):
		s.log.Warn("login refused: address blocked", "user", s.userName)
		s.quit = true
		return reply{421, "Too many failed logins; try again later."}
	case err != nil:
		if s.ctx.Err() != nil {
			s.quit = true
			return noReply
		}
		s.failedLogins++
		s.log.Info("login failed", "user", s.userName, "attempt", s.failedLogins)
		if s.failedLogins >= s.cfg.MaxLoginAttempts {
			s.quit = true
			return reply{421, "Too many failed login attempts; closing."}
		}
		return reply{530, "Login incorrect."}
	}
	root, err := os.OpenRoot(u.Home)
	if err != nil {
		s.log.Error("cannot open home directory", "user", u.Name, "home", u.Home, "err", err)
		return reply{530, "Home directory not available."}
	}
	if !s.srv.loggedIn(s) {
		root.Close() // evicted while the password was checked
		s.quit = true
		return noReply
	}
	s.user, s.root, s.state, s.cwd = u, root, stateReady, "/"
	s.log = s.log.With("user", u.Name) // before account: CloseUsers logs with it
	s.account.Store(u)
	if !s.srv.deps.Auth.Active(u.Name) {
		// A reload removed or disabled the user while its password was
		// checked. CloseUsers runs after the new users are in force, so
		// either it saw this session's account or this check sees them.
		s.log.Info("login refused: user removed or disabled meanwhile")
		s.quit = true
		return reply{421, "Your account was changed; log in again."}
	}
	s.log.Info("login", "tls", s.tlsConn != nil)
	return reply{230, "Login successful."}
}

func (s *session) cmdACCT(string) reply {
	return reply{202, "ACCT not needed."}
}
