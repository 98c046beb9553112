package ftps

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/passive"
)

// maxLineLen bounds one command line; longer lines get 500 and a close.
const maxLineLen = 8192

// writeTimeout bounds one reply write, so a client that stops reading
// cannot pin the session.
const writeTimeout = 30 * time.Second

var errLineTooLong = errors.New("command line too long")

// loginState is where a session stands in the USER/PASS exchange.
type loginState int

const (
	stateNeedUser loginState = iota
	stateNeedPass
	stateReady
)

// How far a session that has not logged in got: eviction takes the least
// advanced first (see Server.preloginVictimLocked).
const (
	stageConnected int32 = iota // no TLS yet
	stageTLS                    // TLS established
	stageUser                   // USER given
	stageChecking               // its password is being checked: never evicted
)

// protLevel is the RFC 4217 data protection level.
type protLevel byte

const (
	protClear   protLevel = 'C'
	protPrivate protLevel = 'P'
)

// session is one control connection. Its fields are owned by the control
// loop goroutine unless noted; the transfer goroutine only uses the reply
// writer, its own transfer value and the connection's deadline.
type session struct {
	srv     *Server
	cfg     *Config
	log     *slog.Logger
	id      uint64
	binding *passive.Binding
	local   netip.AddrPort
	remote  netip.AddrPort
	key     netip.Prefix // auth.ClientKey of remote: what per-client limits count
	started time.Time

	ctx    context.Context
	cancel context.CancelFunc

	implicit bool // TLS from the first byte (implicit FTPS)
	probe    bool // a balancer's health check (LOCAL PROXY header): log at Debug
	raw      net.Conn
	tlsConn  *tls.Conn // nil until AUTH TLS (or the implicit handshake)
	r        lineReader

	wmu  sync.Mutex // guards conn for writes and swaps
	conn net.Conn   // raw, or tlsConn after AUTH TLS

	state        loginState
	userName     string
	user         *auth.User
	st           storage    // the user's files, from login on
	limits       *userState // shared with the user's other sessions, from login on
	failedLogins int
	refusedPlain bool // a login was refused for want of TLS (counted once)
	active       bool // a command (or the implicit TLS handshake) came: log at Info

	pbsz       bool
	prot       protLevel
	binary     bool
	cwd        string // virtual, "/"-rooted
	restOffset int64
	allo       int64 // the size ALLO announced for the next upload
	renameFrom vpath // after RNFR, zero otherwise
	epsvAll    bool
	mlstFacts  factSet
	hashAlg    int // OPTS HASH: an index into hashAlgs, 0 (SHA-256) by default

	data dataChannel // from PASV/EPSV or PORT/EPRT, not yet used
	xfer *transfer   // running transfer, if any
	quit bool        // the session ends after this command

	closing   atomic.Bool               // set by Server.Shutdown
	stage     atomic.Int32              // how far a pre-login session got (stageConnected...), for eviction
	closedNow atomic.Bool               // set by closeNow
	account   atomic.Pointer[auth.User] // user, for other goroutines (CloseUsers)
	bytesIn   atomic.Int64              // data bytes received (uploads), for the log
	bytesOut  atomic.Int64              // data bytes sent (downloads and listings)
	who       whoState                  // for Server.Sessions
}

func newSession(ctx context.Context, srv *Server, cfg *Config, c net.Conn, id uint64) *session {
	// Through a balancer (a PROXY header) remote is the client and local
	// the balancer's address it connected to; the data listeners bind on
	// this node's own address, the socket's.
	local, remote := addrPortOf(c.LocalAddr()), addrPortOf(c.RemoteAddr())
	sock := addrPortOf(passive.SocketAddr(c))
	ctx, cancel := context.WithCancel(ctx)
	s := &session{
		ctx:       ctx,
		cancel:    cancel,
		srv:       srv,
		cfg:       cfg,
		log:       srv.log.With("session", id, "remote", remote.String()),
		id:        id,
		binding:   srv.deps.Passive.BindProxied(srv.deps.TLS, sock, remote, local.Addr()),
		local:     local,
		remote:    remote,
		key:       auth.ClientKey(remote.Addr()),
		started:   time.Now(),
		raw:       c,
		conn:      c,
		r:         lineReader{src: c, pool: &srv.readers},
		prot:      protClear,
		cwd:       "/",
		mlstFacts: allFacts,
	}
	s.who.lastCmd.Store(s.started.UnixNano())
	return s
}

// serve runs the session until QUIT, an error, a timeout or shutdown.
func (s *session) serve() {
	defer s.cleanup()
	defer func() {
		if v := recover(); v != nil {
			// Never tell the peer what went wrong inside.
			s.log.Error("session panic", "panic", v, "stack", string(debug.Stack()))
			s.reply(reply{421, "Internal error; closing control connection."})
		}
	}()

	// "session opened" waits for the first command (noteActive): health
	// probes and port scans connect and close without one, and must not
	// flood the log at Info.
	s.log.Debug("connection accepted", "local", s.local.String(), "implicit_tls", s.implicit)
	if s.implicit {
		if !s.startTLS("implicit") {
			return
		}
		s.pbsz, s.prot = true, protPrivate
	}
	s.reply(reply{220, s.cfg.Banner})
	for !s.quit {
		d := s.setReadDeadline()
		if s.closing.Load() && !s.transferRunning() {
			s.reply(reply{421, "Server shutting down; closing control connection."})
			return
		}
		if err := s.awaitCommand(d); err != nil {
			s.readFailed(err)
			return
		}
		line, err := s.readLine()
		if err != nil {
			s.readFailed(err)
			return
		}
		s.who.lastCmd.Store(time.Now().UnixNano())
		s.noteActive()
		s.act(s.dispatch(parseCommand(line)))
	}
}

// noteActive logs "session opened" at Info the first time the client
// shows it is one: a command, or a completed implicit TLS handshake.
func (s *session) noteActive() {
	if !s.active {
		s.active = true
		lvl := slog.LevelInfo
		if s.probe {
			lvl = slog.LevelDebug
		}
		s.log.Log(context.Background(), lvl, "session opened", "local", s.local.String(), "implicit_tls", s.implicit)
	}
}

// readFailed ends the session after a read error, with the reply the
// cause deserves.
func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		s.log.Warn("command line too long; closing")
		s.reply(reply{500, "Command line too long."})
	case errors.As(err, &ne) && ne.Timeout():
		if s.closing.Load() {
			s.cancelJob()
			s.waitTransfer()
			s.reply(reply{421, "Server shutting down; closing control connection."})
			return
		}
		if s.awaitingTLS() {
			s.log.Info("session timed out before AUTH TLS")
			s.reply(reply{421, "Timeout waiting for AUTH TLS; closing control connection."})
			return
		}
		s.log.Info("session timed out", "logged_in", s.state == stateReady)
		s.reply(reply{421, "Timeout; closing control connection."})
	case s.closedNow.Load():
		// closeNow has answered and closed.
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// The client went away.
	default:
		s.log.Debug("control read failed", "err", err)
	}
}

// setReadDeadline applies the login deadline before PASS, no deadline while
// a transfer runs (the transfer has its own), and the idle deadline
// otherwise, and returns it.
func (s *session) setReadDeadline() time.Time {
	var d time.Time
	switch {
	case s.state != stateReady:
		d = s.started.Add(s.cfg.LoginTimeout)
		if s.awaitingTLS() && s.tlsDeadline().Before(d) {
			d = s.tlsDeadline()
		}
	case s.transferRunning():
		// zero: no deadline
	default:
		d = time.Now().Add(s.cfg.IdleTimeout)
	}
	s.applyReadDeadline(d)
	return d
}

// applyReadDeadline sets the control connection's read deadline to d,
// unless Server.Shutdown has begun: then its wake-up (a deadline in the
// past, set by beginShutdown) stays, whichever goroutine sets d and when.
// Every read deadline but the wake-up itself goes through here.
func (s *session) applyReadDeadline(d time.Time) {
	s.raw.SetReadDeadline(d)
	if s.closing.Load() {
		s.raw.SetReadDeadline(time.Unix(1, 0))
	}
}

// awaitCommand waits, until deadline d, for the client to send something,
// where an idle session should wait: on a shallow stack and with no read
// buffer. The runtime halves a parked goroutine's stack at each collection
// while it uses under a quarter of it; blocked in a read through
// crypto/tls it uses too much to go below 8 KiB, parked here it goes to
// 4 KiB. Without a socket to wait on, or while a transfer runs (its
// goroutine restarts the idle clock), readLine just blocks.
func (s *session) awaitCommand(d time.Time) error {
	sc, ok := s.raw.(syscall.Conn)
	if !ok || s.r.Buffered() > 0 || s.r.pending || s.transferRunning() {
		return nil
	}
	if d.IsZero() && s.state == stateReady {
		// A transfer ended since the deadline was chosen (none while it
		// ran): its goroutine set the idle deadline before it finished,
		// and applying the stale zero below would undo it.
		d = s.setReadDeadline()
	}
	if s.tlsConn != nil {
		// crypto/tls may hold records that came with the last line: a
		// read that must not wait tells (a timeout leaves a tls.Conn
		// usable), without taking anything from the socket.
		s.raw.SetReadDeadline(time.Unix(1, 0))
		n, err := s.tlsConn.Read(s.r.first[:])
		s.applyReadDeadline(d)
		if n > 0 {
			s.r.pending = true
			return nil
		}
		if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	// Readable when a peek finds a byte, the end, or an error (which the
	// read then reports).
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), s.r.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}

// awaitingTLS reports whether the session must still start TLS before it
// can log in.
func (s *session) awaitingTLS() bool {
	return s.tlsConn == nil && !s.cfg.AllowPlaintextLogin
}

// tlsDeadline is when a session that has not completed its TLS handshake is
// closed (server.auth_tls_timeout).
func (s *session) tlsDeadline() time.Time {
	return s.started.Add(s.cfg.AuthTLSTimeout)
}

// readLine reads one command line, without its CR LF, with Telnet IAC
// sequences decoded (see decodeTelnet).
func (s *session) readLine() (string, error) {
	defer s.r.release()
	var line []byte
	for {
		chunk, err := s.r.ReadSlice('\n')
		if len(line)+len(chunk) > maxLineLen {
			return "", errLineTooLong
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return decodeTelnet(line), nil
}

// lineBufSize is the read buffer of a session while it reads a line.
const lineBufSize = 4096

// lineReader reads the command lines of a control connection. A session
// waiting for its next command holds no read buffer: most sessions are
// idle, and 4 KiB each adds up. The wait is a one-byte read; the buffer
// comes from the server's pool for the rest of the line and goes back as
// soon as nothing is left in it (release). Commands pipelined behind a
// line stay buffered, as with a plain bufio.Reader.
type lineReader struct {
	src     io.Reader // the connection: raw, then TLS
	pool    *sync.Pool
	br      *bufio.Reader // nil while idle
	first   [1]byte       // the byte the idle wait read
	pending bool          // first is not yet in br
	peek    [1]byte       // for awaitCommand's MSG_PEEK
}

// ReadSlice is bufio.Reader.ReadSlice.
func (l *lineReader) ReadSlice(delim byte) ([]byte, error) {
	if l.br == nil {
		if !l.pending {
			n, err := l.src.Read(l.first[:])
			if n == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return nil, err
			}
			l.pending = true
		}
		l.br = l.pool.Get().(*bufio.Reader)
		l.br.Reset(lineSource{l})
	}
	return l.br.ReadSlice(delim)
}

// lineSource is what br reads: the byte of the idle wait, then the
// connection.
type lineSource struct{ l *lineReader }

func (s lineSource) Read(p []byte) (int, error) {
	if l := s.l; l.pending && len(p) > 0 {
		p[0], l.pending = l.first[0], false
		return 1, nil
	}
	return s.l.src.Read(p)
}

// Buffered is the number of bytes read from the connection and not yet
// returned.
func (l *lineReader) Buffered() int {
	if l.br == nil {
		return 0
	}
	return l.br.Buffered()
}

// release gives the buffer back when nothing is left in it.
func (l *lineReader) release() {
	if l.br != nil && l.br.Buffered() == 0 && !l.pending {
		l.br.Reset(nil) // keeps no reference to this session
		l.pool.Put(l.br)
		l.br = nil
	}
}

// Reset reads from src from now on; what was buffered is dropped (AUTH
// refuses to upgrade when anything is).
func (l *lineReader) Reset(src io.Reader) {
	l.pending = false
	if l.br != nil {
		l.br.Reset(nil)
		l.pool.Put(l.br)
		l.br = nil
	}
	l.src = src
}

// Telnet bytes that can follow IAC (RFC 854).
const (
	telnetIAC  = 0xFF
	telnetWILL = 0xFB // WILL, WONT, DO and DONT (0xFB..0xFE) carry an option byte
	telnetDONT = 0xFE
)

// decodeTelnet applies RFC 854 to a command line: IAC IAC is one data
// byte 0xFF (a file name may contain it), IAC WILL/WONT/DO/DONT drops the
// option byte with the command, and any other IAC command (such as the
// IAC IP IAC DM some clients send before ABOR) is dropped.
func decodeTelnet(b []byte) string {
	if bytes.IndexByte(b, telnetIAC) < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != telnetIAC {
			out = append(out, b[i])
			continue
		}
		i++ // the command byte
		switch {
		case i >= len(b):
		case b[i] == telnetIAC:
			out = append(out, telnetIAC)
		case b[i] >= telnetWILL && b[i] <= telnetDONT:
			i++ // its option byte
		}
	}
	return string(out)
}

// parseCommand splits a line into an upper-case verb and its argument.
// The argument keeps inner and trailing spaces: they may be part of a name.
func parseCommand(line string) (verb, arg string) {
	line = strings.TrimLeft(line, " ")
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), arg
}

// reply writes r under the writer lock with a write deadline.
func (s *session) reply(r reply) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(s.conn, r.format()); err != nil {
		s.log.Debug("reply write failed", "code", r.code, "err", err)
	}
	s.log.Debug("reply", "code", r.code)
}

// beginShutdown is called by Server.Shutdown: wake the reader so an idle
// session answers 421 now; a busy one finishes its transfer first.
func (s *session) beginShutdown() {
	s.closing.Store(true)
	s.raw.SetReadDeadline(time.Unix(1, 0))
}

// evict closes a session that has not logged in, to make room for a new
// connection (see Server.startSession).
func (s *session) evict() {
	s.closeNow(reply{421, "Too many connections waiting to log in; closing control connection."},
		"pre-login connection evicted: too many connections waiting to log in")
}

// closeNow ends the session from another goroutine: it answers r (unless a
// reply is being written to a client that does not read: the close must
// not wait for it), cancels any transfer and closes the connection.
func (s *session) closeNow(r reply, why string) {
	s.closedNow.Store(true)
	s.log.Info(why)
	if s.wmu.TryLock() {
		s.raw.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(s.conn, r.format())
		s.wmu.Unlock()
	}
	s.cancel()
	s.raw.Close()
}

// loggedInAs returns the user name of a logged-in session. It may be called
// from any goroutine.
func (s *session) loggedInAs() (string, bool) {
	u := s.account.Load()
	if u == nil {
		return "", false
	}
	return u.Name, true
}

// forceClose cuts the session when the shutdown deadline has passed.
func (s *session) forceClose() {
	s.cancel()
	s.raw.Close()
}

func (s *session) cleanup() {
	if s.xfer != nil {
		s.xfer.cancel()
		s.waitTransfer()
	}
	s.cancel()
	s.dropData()
	s.binding.Close()
	if s.st != nil {
		s.st.Close()
	}
	if s.limits != nil {
		s.srv.releaseUser(s.limits)
	}
	if s.tlsConn != nil && s.quit && !s.closing.Load() {
		// A clean end gets close_notify (crypto/tls bounds it by 5 s);
		// timeouts, errors and shutdown just close the socket.
		s.tlsConn.Close()
	}
	s.raw.Close()
	level := slog.LevelInfo
	if !s.active || s.probe {
		level = slog.LevelDebug // closed before any command, or a balancer's check: a probe
	}
	s.log.Log(context.Background(), level, "session closed", "dur", time.Since(s.started).Round(time.Millisecond),
		"bytes_in", s.bytesIn.Load(), "bytes_out", s.bytesOut.Load())
}
