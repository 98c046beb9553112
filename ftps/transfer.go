package ftps

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ftpsd/ftpsd/passive"
)

// transfer is one data transfer: announced with 150 by its command, run in
// its own goroutine, ended with exactly one final reply (226, 425, 426, 451
// or 5xx) from that goroutine.
//
// Concurrency: the transfer goroutine runs while the control loop goes on
// (ABOR, STAT, NOOP, and after it ends any command: TYPE, OPTS MLST...).
// So everything it needs from the session is copied in here, as values,
// when the command prepares it: the storage handle, the user's name and
// rights, the MLST facts, the TYPE, the peer. It never reads the
// session's mutable fields; besides what is fixed when the session starts
// (srv, cfg, raw), it only writes its final reply through session.reply
// (under the writer lock) and adds to the atomic counters. Server.Sessions
// reads a running transfer's what, file, started (fixed before launch
// publishes it) and bytes (atomic) from another goroutine.
type transfer struct {
	what     string // for logs and STAT, e.g. "RETR /a.txt"
	file     fileOp // the file moved; zero for listings
	listener dataChannel
	secure   bool
	log      *slog.Logger
	user     string
	remote   netip.Addr
	binary   bool
	timeout  time.Duration // data stall timeout
	metrics  *Metrics      // may be nil
	// rates are the limiters a file transfer waits on: the user's and the
	// server's, for its direction (none for listings).
	rates []*rate.Limiter
	// run moves the data. It gets a connection that already passed the
	// peer and TLS-resumption checks, and returns the final reply.
	run func(x *transfer, dc *dataConn) reply
	// abandon releases what the command prepared (an open file) when the
	// data connection never came.
	abandon func()
	// job, when set, replaces the data connection and run: a command that
	// works like a transfer without one (HASH, see prepareJob).
	job func(x *transfer) reply

	ctx    context.Context
	cancel context.CancelFunc
	// finished closes just before the final reply is written, so the
	// client's next command always finds the transfer over; done closes
	// after it, so ABOR's 226 always follows the transfer's 426.
	finished chan struct{}
	done     chan struct{}
	bytes    atomic.Int64
	started  time.Time // set by launch, before Server.Sessions can see it
}

// prepareTransfer is called by a transfer command after its own checks. It
// takes the session's data channel (PASV/EPSV or PORT/EPRT) and returns the
// 150 reply with the transfer, which the control loop starts once that
// reply is written.
func (s *session) prepareTransfer(what string, file fileOp, text string, run func(*transfer, *dataConn) reply, abandon func()) result {
	var refuse reply
	switch {
	case s.data == nil:
		refuse = replyNeedPasv
	case s.prot != protPrivate && !s.cfg.AllowPlaintextData:
		refuse = replyDataProtection
	}
	if refuse != (reply{}) {
		if abandon != nil {
			abandon()
		}
		return say(refuse)
	}
	x := &transfer{
		what:     what,
		file:     file,
		listener: s.data,
		secure:   s.prot == protPrivate,
		log:      s.log,
		user:     s.user.Name,
		remote:   s.remote.Addr(),
		binary:   s.binary,
		timeout:  s.cfg.DataTimeout,
		metrics:  s.srv.deps.Metrics,
		rates:    s.rateLimiters(file),
		run:      run,
		abandon:  abandon,
		finished: make(chan struct{}),
		done:     make(chan struct{}),
	}
	x.ctx, x.cancel = context.WithCancel(s.ctx)
	s.data = nil
	return result{reply: reply{150, text}, xfer: x}
}

// rateLimiters are the limiters of a transfer of file: the user's rate
// and the server's cap for its direction. Listings are not throttled.
func (s *session) rateLimiters(file fileOp) []*rate.Limiter {
	switch {
	case file.path == "" || s.limits == nil:
		return nil
	case file.upload:
		return []*rate.Limiter{s.limits.up, s.srv.totalUp}
	}
	return s.downloadLimiters()
}

// downloadLimiters are what reading a file on the user's behalf waits on
// (RETR and HASH): the user's download rate and the server's cap.
func (s *session) downloadLimiters() []*rate.Limiter {
	if s.limits == nil {
		return nil
	}
	return []*rate.Limiter{s.limits.down, s.srv.totalDown}
}

// fileOp names the file a transfer moves, for the transfer log.
type fileOp struct {
	path   string // virtual path
	upload bool
}

// TransferRecord describes one file transfer that ended, completed or not,
// for a transfer log (Deps.OnTransfer). Listings are not transfers.
type TransferRecord struct {
	End      time.Time
	Duration time.Duration
	Remote   netip.Addr
	User     string
	Path     string // as the client sees it, "/"-rooted in the user's home
	Upload   bool   // STOR, APPE, STOU; else RETR
	Binary   bool   // TYPE I (else TYPE A)
	Bytes    int64  // bytes moved on the data connection
	Complete bool   // answered 226
}

// launch starts a prepared transfer.
func (s *session) launch(x *transfer) {
	s.xfer = x
	x.started = time.Now()
	s.who.xfer.Store(x)
	go func() {
		defer close(x.done)
		defer x.cancel()
		start := time.Now()
		r := executeSafely(x)
		dur := time.Since(start)
		if x.file.upload {
			s.bytesIn.Add(x.bytes.Load())
		} else if x.job == nil { // a job sends nothing
			s.bytesOut.Add(x.bytes.Load())
		}
		x.log.Info("transfer", "op", x.what, "code", r.code, "bytes", x.bytes.Load(),
			"dur", dur.Round(time.Millisecond))
		if x.job == nil { // a HASH is no transfer
			x.metrics.transfer(x.direction(), x.result(r), dur)
		}
		if x.file.path != "" && s.srv.deps.OnTransfer != nil {
			s.srv.deps.OnTransfer(TransferRecord{
				End: start.Add(dur), Duration: dur, Remote: x.remote, User: x.user,
				Path: x.file.path, Upload: x.file.upload, Binary: x.binary,
				Bytes: x.bytes.Load(), Complete: r.code == 226,
			})
		}
		// The control connection was idle while the data moved: restart
		// its idle clock now.
		s.applyReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		s.who.xfer.CompareAndSwap(x, nil)
		close(x.finished)
		s.reply(r)
	}()
}

// direction is the transfer's "direction" label.
func (x *transfer) direction() string {
	switch {
	case x.file.path == "":
		return DirListing
	case x.file.upload:
		return DirUpload
	}
	return DirDownload
}

// result is the "result" label of a transfer that ended with r. It runs
// before the transfer's deferred cancel: a cancelled context here means
// ABOR, a disconnect or shutdown.
func (x *transfer) result(r reply) string {
	switch {
	case r.code == 226:
		return ResultOK
	case x.ctx.Err() != nil:
		return ResultAborted
	}
	return ResultFailed
}

// executeSafely turns a panic in a transfer into a 451 for this session
// only: a goroutine's panic would otherwise end the whole server.
func executeSafely(x *transfer) (r reply) {
	defer func() {
		if v := recover(); v != nil {
			x.log.Error("transfer panic", "op", x.what, "panic", v, "stack", string(debug.Stack()))
			r = reply{451, "Internal error; transfer aborted."}
		}
	}()
	if x.job != nil {
		return x.job(x)
	}
	return execute(x)
}

func execute(x *transfer) reply {
	dc, err := x.listener.Accept(x.ctx, x.secure)
	x.listener.Close()
	if err != nil {
		if x.abandon != nil {
			x.abandon()
		}
		switch {
		case errors.Is(err, passive.ErrNotResumed):
			x.log.Warn("data connection refused: TLS session not resumed", "op", x.what)
			return errReply(err)
		case errors.Is(err, passive.ErrConnect):
			x.log.Info("active data connection failed", "op", x.what, "err", err)
			return errReply(err)
		case x.ctx.Err() != nil:
			return reply{426, "Transfer aborted."}
		default:
			x.log.Info("data connection failed", "op", x.what, "err", err)
			return replyDataFailed
		}
	}
	// ABOR or shutdown: make any blocked read or write return at once.
	stop := context.AfterFunc(x.ctx, func() { dc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r := x.run(x, &dataConn{Conn: dc, ctx: x.ctx, timeout: x.timeout, n: &x.bytes, metrics: x.metrics})
	if x.ctx.Err() != nil && r.code < 300 && !x.file.upload {
		// (An upload that answers 226 has been committed: it is stored,
		// and saying otherwise would make the client send it again.)
		r = reply{426, "Transfer aborted."}
	}
	if r.code == 226 {
		// Over TLS, Close sends close_notify (bounded by crypto/tls's own
		// 5 s deadline), without which FileZilla reports "GnuTLS error -110".
		dc.Close()
	} else {
		abandonData(dc)
	}
	return r
}

// abandonData ends a failed or aborted transfer's data connection at once:
// no close_notify, which would wait up to 5 s on a peer that stopped
// reading, and keep ABOR's reply (or a shutdown) waiting with it.
func abandonData(dc net.Conn) {
	if tc, ok := dc.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	dc.Close()
}

// transferRunning reports whether a transfer is announced or running.
func (s *session) transferRunning() bool {
	if s.xfer == nil {
		return false
	}
	select {
	case <-s.xfer.finished:
		return false
	default:
		return true
	}
}

// waitTransfer blocks until the running transfer (if any) has ended.
func (s *session) waitTransfer() {
	if s.xfer != nil {
		<-s.xfer.done
		s.xfer = nil
	}
}

// dataConn bounds every read and write with the stall timeout, stops at
// once when the transfer is aborted, and counts bytes.
type dataConn struct {
	net.Conn
	ctx     context.Context
	timeout time.Duration
	n       *atomic.Int64
	metrics *Metrics // may be nil
}

// endedWithoutCloseNotify reports an upload whose TLS stream ended
// without close_notify: the client may have died in the middle.
func (c *dataConn) endedWithoutCloseNotify() bool {
	return passive.EndedWithoutCloseNotify(c.Conn)
}

// Each operation checks the context after setting its deadline, too: an
// ABOR landing in between would otherwise have its past deadline replaced
// by a future one.
func (c *dataConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	c.metrics.addReceived(n)
	return n, err
}

func (c *dataConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	c.metrics.addSent(n)
	return n, err
}

// copyBufs recycles transfer buffers. The buffer sets how much a file
// read or write moves per system call; on the network side crypto/tls
// still writes each record of at most 16 KiB with its own write system
// call, eight per 128 KiB Write, and returns one record per Read.
// Gathering the records of a Write into one system call was tried and
// measured (docs/performance.md): the copy it adds costs as much CPU as
// the seven system calls it saves.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyBufSize is the size of the transfer buffers.
const copyBufSize = 128 << 10

// copyData copies src to dst through a pooled buffer. The reader and the
// writer are wrapped so that os.File's WriterTo/ReaderFrom cannot bypass
// the buffer (and with it the deadlines).
func copyData(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
}

// fullReader fills each Read's buffer from r before returning, unless r
// ends or fails first. crypto/tls returns one record (at most 16 KiB) per
// Read, so an upload would otherwise write its file 16 KiB at a time: eight
// write system calls per copy buffer instead of one.
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := f.r.Read(p[n:])
		n += m
		if err != nil || m == 0 {
			return n, err
		}
	}
	return n, nil
}

// failed maps a copy failure to the final reply: the client's side (426)
// or ours (451). localErr is the error of the file side, if any.
func (x *transfer) failed(err, localErr error) reply {
	var ne net.Error
	switch {
	case x.ctx.Err() != nil:
		return reply{426, "Transfer aborted."}
	case isStorageFailure(localErr):
		// Before the timeout case: a store's timeout is a net.Error too.
		x.log.Info("transfer aborted: object storage failed", "op", x.what)
		return errReply(localErr)
	case errors.As(err, &ne) && ne.Timeout():
		x.log.Info("data connection stalled", "op", x.what)
		return reply{426, "Data connection timed out; transfer aborted."}
	case errors.As(localErr, new(replyError)): // the writer decided (ALLO)
		x.log.Info("transfer refused", "op", x.what, "err", localErr)
		return errReply(localErr)
	case localErr != nil:
		x.log.Error("local I/O error during transfer", "op", x.what, "err", localErr)
		if noSpace(err) {
			return errReply(err)
		}
		return reply{451, "Local error; transfer aborted."}
	default:
		x.log.Info("data connection broken", "op", x.what, "err", err)
		return reply{426, "Data connection closed; transfer aborted."}
	}
}

// fileSide records the file's error in a copy: io.Copy returns the first
// error of either side, and this tells which side it was.
type fileSide struct {
	err error
}

// trackedReader and trackedWriter record errors from file I/O so a copy
// error can be attributed to the file (local) or to the network.
type trackedReader struct {
	r    io.Reader
	side *fileSide
}

func (t trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		t.side.err = err
	}
	return n, err
}

type trackedWriter struct {
	w    io.Writer
	side *fileSide
}

func (t trackedWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		t.side.err = err
	}
	return n, err
}
