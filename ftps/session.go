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
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
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
	binding *passive.Binding
	local   netip.AddrPort
	remote  netip.AddrPort
	started time.Time

	ctx    context.Context
	cancel context.CancelFunc

	implicit bool // TLS from the first byte (implicit FTPS)
	raw      net.Conn
	tlsConn  *tls.Conn // nil until AUTH TLS (or the implicit handshake)
	r        *bufio.Reader

	wmu  sync.Mutex // guards conn for writes and swaps
	conn net.Conn   // raw, or tlsConn after AUTH TLS

	state        loginState
	userName     string
	user         *auth.User
	root         *os.Root
	failedLogins int

	pbsz       bool
	prot       protLevel
	binary     bool
	cwd        string // virtual, "/"-rooted
	restOffset int64
	renameFrom string // root-relative name after RNFR, "" otherwise
	renameVirt string
	epsvAll    bool
	mlstFacts  factSet

	pasv    *passive.Listener // open PASV/EPSV listener, not yet used
	xfer    *transfer         // running transfer, if any
	pending *transfer         // announced by a handler; started after its 150
	quit    bool

	closing atomic.Bool // set by Server.Shutdown
}

func newSession(srv *Server, c net.Conn, id uint64) *session {
	local, remote := addrPortOf(c.LocalAddr()), addrPortOf(c.RemoteAddr())
	return &session{
		srv:       srv,
		cfg:       &srv.cfg,
		log:       srv.log.With("session", id, "remote", remote.String()),
		binding:   srv.deps.Passive.Bind(srv.deps.TLS, local, remote),
		local:     local,
		remote:    remote,
		started:   time.Now(),
		raw:       c,
		conn:      c,
		r:         bufio.NewReaderSize(c, 4096),
		prot:      protClear,
		cwd:       "/",
		mlstFacts: allFacts,
	}
}

// serve runs the session until QUIT, an error, a timeout or shutdown.
func (s *session) serve(ctx context.Context) {
	s.ctx, s.cancel = context.WithCancel(ctx)
	defer s.cleanup()
	defer func() {
		if v := recover(); v != nil {
			// Never tell the peer what went wrong inside.
			s.log.Error("session panic", "panic", v, "stack", string(debug.Stack()))
			s.reply(reply{421, "Internal error; closing control connection."})
		}
	}()

	s.log.Info("session opened", "local", s.local.String(), "implicit_tls", s.implicit)
	if s.implicit {
		if !s.startTLS("implicit") {
			return
		}
		s.pbsz, s.prot = true, protPrivate
	}
	s.reply(reply{220, s.cfg.Banner})
	for !s.quit {
		s.setReadDeadline()
		if s.closing.Load() && !s.transferRunning() {
			s.reply(reply{421, "Server shutting down; closing control connection."})
			return
		}
		line, err := s.readLine()
		if err != nil {
			s.readFailed(err)
			return
		}
		verb, arg := parseCommand(line)
		r := s.dispatch(verb, arg)
		if r != noReply {
			s.reply(r)
		}
		if s.pending != nil {
			s.launch(s.pending)
			s.pending = nil
		}
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
			s.waitTransfer()
			s.reply(reply{421, "Server shutting down; closing control connection."})
			return
		}
		s.log.Info("session timed out", "logged_in", s.state == stateReady)
		s.reply(reply{421, "Timeout; closing control connection."})
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// The client went away.
	default:
		s.log.Debug("control read failed", "err", err)
	}
}

// setReadDeadline applies the login deadline before PASS, no deadline while
// a transfer runs (the transfer has its own), and the idle deadline otherwise.
func (s *session) setReadDeadline() {
	var d time.Time
	switch {
	case s.state != stateReady:
		d = s.started.Add(s.cfg.LoginTimeout)
	case s.transferRunning():
		// zero: no deadline
	default:
		d = time.Now().Add(s.cfg.IdleTimeout)
	}
	s.raw.SetReadDeadline(d)
}

// readLine reads one command line, without its CR LF, with Telnet IAC
// sequences removed (some clients send IAC IP IAC DM before ABOR).
func (s *session) readLine() (string, error) {
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
	return stripTelnet(line), nil
}

// stripTelnet drops Telnet IAC (0xFF) sequences. 0xFF never occurs in
// UTF-8, so no path byte is lost.
func stripTelnet(b []byte) string {
	if bytes.IndexByte(b, 0xFF) < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == 0xFF {
			i++ // skip the command byte too
			continue
		}
		out = append(out, b[i])
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

// forceClose cuts the session when the shutdown deadline has passed.
func (s *session) forceClose() {
	if s.cancel != nil {
		s.cancel()
	}
	s.raw.Close()
}

func (s *session) cleanup() {
	if s.xfer != nil {
		s.xfer.cancel()
		s.waitTransfer()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.pasv != nil {
		s.pasv.Close()
	}
	s.binding.Close()
	if s.root != nil {
		s.root.Close()
	}
	if s.tlsConn != nil && s.quit && !s.closing.Load() {
		// A clean end gets close_notify (crypto/tls bounds it by 5 s);
		// timeouts, errors and shutdown just close the socket.
		s.tlsConn.Close()
	}
	s.raw.Close()
	s.log.Info("session closed", "dur", time.Since(s.started).Round(time.Millisecond).String())
}
