// Package ftps is the FTPS control layer: the server, one session per
// control connection, the command table, replies, the user's virtual paths
// over a storage (an os.Root jail by default), transfers and listings.
//
// It receives its base *tls.Config, its users and its passive manager from
// the caller and never builds any of them itself.
package ftps

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/passive"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("ftps: server closed")

// Deps are the collaborators a Server needs; all are required but Log.
type Deps struct {
	// TLS is the base config; each session uses a tagged clone of it made
	// by Passive.Bind, so that data connections can be tied to the session.
	TLS     *tls.Config
	Auth    *auth.Store
	Passive *passive.Manager
	Log     *slog.Logger
	// OnTransfer, if set, is called once for every file transfer that
	// ended (a transfer log). It runs on the transfer's goroutine and must
	// not block for long.
	OnTransfer func(TransferRecord)
	// Metrics, if set, are updated by sessions, logins and transfers.
	Metrics *Metrics
}

// Server accepts explicit-FTPS control connections.
type Server struct {
	// cfg is replaced as a whole by Reload; each session keeps the one it
	// started with.
	cfg  atomic.Pointer[Config]
	deps Deps
	// s3 is the client of the S3 homes, made at the first such login and
	// again when a reload changes [storage.s3].
	s3  atomic.Pointer[s3Conn]
	log *slog.Logger

	help string // the HELP text, built from the command table

	// readers are the line buffers of sessions reading a command (see
	// lineReader): idle sessions hold none.
	readers sync.Pool

	inShutdown atomic.Bool
	nextID     atomic.Uint64
	hashing    atomic.Int32 // HASH commands running (server.max_hashes)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	prelogin  map[*session]struct{} // the sessions not logged in yet
	perIP     map[netip.Prefix]int  // by auth.ClientKey
	wg        sync.WaitGroup

	// The per-user limits (limits.go): the users logged in now, by name,
	// under umu; the server-wide rate caps; the quota usage.
	umu       sync.Mutex
	users     map[string]*userState
	totalDown *rate.Limiter
	totalUp   *rate.Limiter
	quotas    *quotaStore
}

// New checks the config and dependencies and returns a Server that is not
// yet listening.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.TLS == nil || deps.Auth == nil || deps.Passive == nil {
		return nil, errors.New("ftps: Deps.TLS, Deps.Auth and Deps.Passive are required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.AllowPlaintextLogin {
		deps.Log.Warn("server.allow_plaintext_login is on: passwords may cross the network unencrypted")
	}
	if cfg.AllowPlaintextData {
		deps.Log.Warn("server.allow_plaintext_data is on: clients may transfer files unencrypted (PROT C)")
	}
	s := &Server{
		readers:   sync.Pool{New: func() any { return bufio.NewReaderSize(nil, lineBufSize) }},
		help:      helpText(),
		deps:      deps,
		log:       deps.Log,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
		prelogin:  make(map[*session]struct{}),
		perIP:     make(map[netip.Prefix]int),
		users:     make(map[string]*userState),
	}
	s.quotas = newQuotaStore(cfg.StateDir, deps.Log, s.countHome)
	caps := deps.Auth.ServerLimits()
	s.totalDown, s.totalUp = newLimiter(caps.DownloadRate), newLimiter(caps.UploadRate)
	s.cfg.Store(&cfg)
	return s, nil
}

// config is the configuration in force.
func (s *Server) config() *Config { return s.cfg.Load() }

// Reload validates cfg and puts it in force for new connections and new
// sessions: limits and timeouts. Running sessions keep the settings they
// started with. The listener addresses cannot change without a restart;
// a cfg that changes them is refused.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := s.config()
	if cfg.Listen != old.Listen {
		return fmt.Errorf("server.listen: cannot change without a restart (%q in force)", old.Listen)
	}
	if cfg.ImplicitListen != old.ImplicitListen {
		return fmt.Errorf("server.implicit_listen: cannot change without a restart (%q in force)", old.ImplicitListen)
	}
	s.cfg.Store(&cfg)
	// The next S3 session makes a new client, reading the secret file
	// again: a rotated secret takes effect with the reload.
	s.s3.Store(nil)
	return nil
}

// CloseUsers ends at once, with a 421, every session logged in as one of
// the names for which gone reports true (users removed or disabled by a
// reload), cutting their transfers. It returns how many were closed.
func (s *Server) CloseUsers(gone func(name string) bool) int {
	s.mu.Lock()
	var victims []*session
	for sess := range s.sessions {
		if name, ok := sess.loggedInAs(); ok && gone(name) {
			victims = append(victims, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range victims {
		sess.closeNow(reply{421, "Your account was changed; log in again."}, "session closed: user removed or disabled")
	}
	return len(victims)
}

// Serve accepts explicit-FTPS connections on ln until Shutdown (then it
// returns ErrServerClosed) or a permanent accept error. Cancelling ctx ends
// the sessions' contexts but does not drain them: use Shutdown for that.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, explicitTLS)
}

// ServeImplicit is Serve for implicit FTPS: every connection starts with
// the TLS handshake, before the greeting, and data protection defaults to
// PROT P.
func (s *Server) ServeImplicit(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, implicitTLS)
}

// tlsStart says how a listener's sessions get to TLS.
type tlsStart int

const (
	explicitTLS tlsStart = iota // plain greeting, then AUTH TLS
	implicitTLS                 // TLS handshake first
)

func (s *Server) serve(ctx context.Context, ln net.Listener, start tlsStart) error {
	if !s.trackListener(ln, true) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.trackListener(ln, false)
	defer ln.Close()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Anything else (EMFILE, ECONNABORTED, ...) is taken as
			// transient, as net/http does, so a descriptor storm does
			// not stop the server.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "delay", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if cfg := s.config(); len(cfg.proxies) > 0 {
			// The header may take a while: read it off the accept loop.
			go s.startProxied(ctx, c, start, cfg)
			continue
		}
		s.startSession(ctx, c, start, false)
	}
}

// startProxied applies server.trusted_proxies to an accepted connection:
// one from another source is closed without a byte (a node behind
// balancers serves them only); one from a trusted proxy must bring a valid
// PROXY header in time, whose source address becomes the session's client.
// A LOCAL header (HAProxy's health checks send one) gives a probe session
// with the balancer's own address, logged at Debug.
func (s *Server) startProxied(ctx context.Context, c net.Conn, start tlsStart, cfg *Config) {
	pc, h, err := cfg.proxies.Accept(c, cfg.ProxyHeaderTimeout)
	if err != nil {
		msg := "connection refused: no valid PROXY header from a trusted proxy"
		if errors.Is(err, passive.ErrUntrustedProxy) {
			msg = "connection refused: not from a trusted proxy (server.trusted_proxies)"
		}
		s.log.Warn(msg, "source", addrPortOf(c.RemoteAddr()), "err", err)
		c.Close()
		return
	}
	s.startSession(ctx, pc, start, h.Command.IsLocal())
}

func (s *Server) trackListener(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		s.listeners[ln] = struct{}{}
		return true
	}
	delete(s.listeners, ln)
	return true
}

// startSession applies the connection limits before the greeting and starts
// the session goroutine. When the server is full, or holds its maximum of
// connections that have not logged in, a pre-login connection is evicted to
// make room (see preloginVictimLocked): connections that never log in must
// not be able to lock real users out. Logged-in sessions are never evicted.
//
// probe marks a balancer's health check (a LOCAL PROXY header): its
// session logs at Debug only.
func (s *Server) startSession(ctx context.Context, c net.Conn, start tlsStart, probe bool) {
	remote := addrPortOf(c.RemoteAddr())
	ip := auth.ClientKey(remote.Addr())

	cfg := s.config()
	s.mu.Lock()
	total, fromIP := len(s.sessions), s.perIP[ip]
	closing := s.inShutdown.Load() // accepted just before the listener closed
	full := fromIP >= cfg.MaxConnectionsPerIP
	var victim *session
	if !full && (total >= cfg.MaxConnections || len(s.prelogin) >= cfg.MaxPreloginConnections) {
		if victim = s.preloginVictimLocked(); victim != nil {
			s.untrackLocked(victim)
		} else {
			full = true
		}
	}
	var sess *session
	if !full && !closing {
		sess = newSession(ctx, s, cfg, c, s.nextID.Add(1))
		sess.implicit = start == implicitTLS
		sess.probe = probe
		s.sessions[sess] = struct{}{}
		s.prelogin[sess] = struct{}{}
		s.perIP[ip]++
		s.wg.Add(1)
		if !probe { // a balancer's checks are not sessions in the metrics
			s.deps.Metrics.sessionOpened()
		}
	}
	s.mu.Unlock()

	if victim != nil {
		go victim.evict()
	}
	if full || closing {
		r := reply{421, "Server shutting down."}
		if !closing {
			r = reply{421, "Too many connections; try again later."}
			s.log.Warn("connection refused: limit reached", "remote", remote, "sessions", total, "from_client", fromIP)
		}
		if start == explicitTLS { // an implicit-TLS client could not read a plain reply
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte(r.format()))
		}
		c.Close()
		return
	}
	go func() {
		defer s.wg.Done()
		defer s.untrack(sess)
		sess.serve()
	}()
}

// preloginVictimLocked picks the pre-login session to evict, or nil. It
// takes the least advanced first (no TLS yet, then no USER yet), so that
// idle or slow connections go before clients in the middle of logging in;
// a session whose password is being checked is never taken. Among equals
// it takes the oldest connection of the client that holds the most, so an
// attacker holding many loses its own first. Clients are grouped by IPv4
// address or IPv6 /48 here: one IPv6 attacker easily holds many /64s.
func (s *Server) preloginVictimLocked() *session {
	group := func(sess *session) netip.Prefix {
		if a := sess.remote.Addr(); a.Is6() {
			p, _ := a.Prefix(48)
			return p
		}
		return sess.key
	}
	count := make(map[netip.Prefix]int)
	for p := range s.prelogin {
		count[group(p)]++
	}
	var victim *session
	var vStage int32
	for p := range s.prelogin {
		st := p.stage.Load()
		if st >= stageChecking {
			continue
		}
		switch {
		case victim == nil, st < vStage:
		case st > vStage:
			continue
		case count[group(p)] > count[group(victim)]:
		case count[group(p)] == count[group(victim)] && p.started.Before(victim.started):
		default:
			continue
		}
		victim, vStage = p, st
	}
	return victim
}

// loggedIn moves sess out of the pre-login set. It reports false when sess
// was evicted meanwhile (its connection is being closed).
func (s *Server) loggedIn(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.prelogin[sess]; !ok {
		return false
	}
	delete(s.prelogin, sess)
	return true
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.untrackLocked(sess)
}

// untrackLocked removes sess from the counts; a second call (for an
// evicted session that has now ended) does nothing.
func (s *Server) untrackLocked(sess *session) {
	if _, ok := s.sessions[sess]; !ok {
		return
	}
	delete(s.sessions, sess)
	delete(s.prelogin, sess)
	if !sess.probe {
		s.deps.Metrics.sessionClosed()
	}
	if s.perIP[sess.key]--; s.perIP[sess.key] <= 0 {
		delete(s.perIP, sess.key)
	}
}

// Shutdown stops accepting, tells idle sessions "421" at once, lets running
// transfers finish, and waits for every session to end or ctx to expire,
// after which the remaining connections are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.beginShutdown()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer s.quotas.flush()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for sess := range s.sessions {
			sess.forceClose()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// Listeners is the number of listeners serving now (Serve and
// ServeImplicit calls that have not returned), for a health check.
func (s *Server) Listeners() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.listeners)
}

// addrPortOf converts a net.Addr to an unmapped netip.AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
