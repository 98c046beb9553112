package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// retryPause is how long a worker waits after a failure before it logs in
// again, so that a dead server is not hammered.
const retryPause = 200 * time.Millisecond

// idleNoop is how often an idle session sends NOOP (below any sensible
// server idle timeout).
const idleNoop = 30 * time.Second

// load runs cfg.conns workers until the duration, the operation budget or
// ctx ends, and merges what they measured. gate, if not nil, runs between
// the setup and the start of the clock.
func load(ctx context.Context, cfg *config, gate func()) (*result, error) {
	// kill closes every connection, whatever is in flight: when the setup
	// overruns -timeout, -timeout after the measured run ends, or at once
	// on a signal during the setup. A signal during the run only stops
	// new operations, so that the report still comes out.
	kill, cancelKill := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelKill()
	setupTimer := time.AfterFunc(cfg.timeout, cancelKill)
	stopSetupSignal := context.AfterFunc(ctx, cancelKill)

	// One login first, so that a wrong password or certificate is one
	// clear error rather than a flood of them (and an address ban).
	s, err := dialSession(kill, cfg)
	if err != nil {
		return nil, fmt.Errorf("first login to %s failed: %w", cfg.addr, err)
	}
	s.quit()

	// Setup, not measured: every worker logs in (and, for retr, uploads
	// its file) before the clock starts.
	token := strings.ToLower(rand.Text()[:8])
	var budget, idleIn atomic.Int64
	workers := make([]*worker, cfg.conns)
	var ready, done sync.WaitGroup
	begin := make(chan struct{})
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	for i := range workers {
		w := &worker{
			cfg: cfg, kill: kill, budget: &budget, idleIn: &idleIn,
			file: fmt.Sprintf("ftpsd-load-%s-%d.bin", token, i),
			st:   newStats(),
		}
		workers[i] = w
		ready.Add(1)
		done.Go(func() {
			w.prepare()
			ready.Done()
			<-begin
			w.run(runCtx)
		})
	}
	ready.Wait()
	setupOK := setupTimer.Stop() && stopSetupSignal()
	if !setupOK {
		cancelRun()
	} else if gate != nil {
		gate()
	}
	start := time.Now()
	stopRun := time.AfterFunc(cfg.duration, cancelRun)
	defer stopRun.Stop()
	stopKill := time.AfterFunc(cfg.duration+cfg.timeout, cancelKill)
	defer stopKill.Stop()
	close(begin)
	done.Wait()
	elapsed := time.Since(start)
	switch {
	case ctx.Err() != nil && !setupOK:
		return nil, ctx.Err()
	case !setupOK:
		return nil, fmt.Errorf("the setup (logins, and uploads for retr) took more than -timeout %s", cfg.timeout)
	}

	res := &result{cfg: cfg, elapsed: elapsed, stats: newStats()}
	for _, w := range workers {
		res.stats.merge(w.st)
	}
	switch {
	case ctx.Err() != nil:
		res.stopped = "signal"
	case budget.Load() >= cfg.maxOps:
		res.stopped = "max-ops"
	default:
		res.stopped = "duration"
	}
	return res, nil
}

// worker is one session's loop and its measurements (merged once the
// worker is done, so they need no lock).
type worker struct {
	cfg    *config
	kill   context.Context
	budget *atomic.Int64
	file   string // this worker's file for retr and stor
	sess   *session
	stored bool // file exists on the server
	st     *stats
	// newFiles are the files of -stor-new, deleted at the end.
	newFiles []string
	// idleIn counts the idle sessions logged in, shared by the workers.
	idleIn *atomic.Int64
	// claimed: this idle worker took its operation from the budget.
	claimed bool
}

// claim takes one operation from the shared budget.
func (w *worker) claim() bool { return w.budget.Add(1) <= w.cfg.maxOps }

func (w *worker) run(ctx context.Context) {
	defer w.finish()
	for ctx.Err() == nil {
		if w.cfg.op == opLogin || w.cfg.op == opSession {
			if !w.claim() {
				return
			}
			t0 := time.Now()
			n, items, err := w.wholeSession()
			w.record(string(w.cfg.op), time.Since(t0), n, items, err)
			if err != nil {
				pause(ctx)
			}
			continue
		}
		if w.sess == nil {
			// An idle session is one operation however many logins it
			// takes: a server refusing logins for a while must not use
			// up the budget and leave the run with fewer sessions.
			if w.cfg.op == opIdle && !w.claimed {
				if !w.claim() {
					return
				}
				w.claimed = true
			}
			t0 := time.Now()
			if err := w.connect(); err != nil {
				w.fail("login", err)
				pause(ctx)
				continue
			}
			if w.cfg.op == opIdle {
				w.record("login", time.Since(t0), 0, 0, nil)
				if w.idleIn != nil && w.idleIn.Add(1) == int64(w.cfg.conns) {
					w.cfg.idleReady()
				}
			}
		}
		if w.cfg.op == opIdle {
			w.idle(ctx)
			continue
		}
		if !w.claim() {
			return
		}
		t0 := time.Now()
		n, items, err := w.once()
		w.record(string(w.cfg.op), time.Since(t0), n, items, err)
		if err != nil {
			w.drop()
			pause(ctx)
		}
	}
}

// dial logs in, at most -login-parallel sessions at a time.
func (w *worker) dial() (*session, error) {
	if w.cfg.loginSlots != nil {
		select {
		case w.cfg.loginSlots <- struct{}{}:
		case <-w.kill.Done():
			return nil, w.kill.Err()
		}
		defer func() { <-w.cfg.loginSlots }()
	}
	return dialSession(w.kill, w.cfg)
}

// wholeSession runs one session of -op login or session: log in, for
// session list -dir with LIST, and quit.
func (w *worker) wholeSession() (int64, int, error) {
	s, err := w.dial()
	if err != nil {
		return 0, 0, err
	}
	w.st.controlTLS[s.control]++
	var n int64
	var items int
	if w.cfg.op == opSession {
		s.st = w.st
		if n, items, err = s.list("LIST", w.cfg.dir); err != nil {
			s.close()
			return n, items, err
		}
	}
	return n, items, s.quit()
}

// prepare opens the session of retr, stor and list before the clock
// starts. A failure is counted, and run tries again.
func (w *worker) prepare() {
	switch w.cfg.op {
	case opRetr, opStor, opList:
		if err := w.connect(); err != nil {
			w.fail("login", err)
		}
	}
}

// connect logs in and, for retr, uploads the file to download.
func (w *worker) connect() error {
	s, err := w.dial()
	if err != nil {
		return err
	}
	w.sess = s
	w.st.controlTLS[s.control]++
	if w.cfg.op == opRetr && w.cfg.file != "" {
		w.file = w.cfg.file // the caller's: neither uploaded nor deleted
	} else if w.cfg.op == opRetr && !w.stored {
		if _, err := s.stor(w.file, w.cfg.size, w.cfg.block); err != nil {
			w.drop()
			return fmt.Errorf("uploading the file to download: %w", err)
		}
		w.stored = true
	}
	s.st = w.st // count the data connections of measured operations only
	return nil
}

// once runs one operation on the open session and returns the payload
// bytes it moved and, for a listing, the entries.
func (w *worker) once() (int64, int, error) {
	switch w.cfg.op {
	case opRetr:
		n, err := w.sess.retr(w.file)
		if err == nil && n != w.cfg.size {
			err = fmt.Errorf("RETR %s: got %d bytes, want %d: %w", w.file, n, w.cfg.size, errShort)
		}
		return n, 0, err
	case opStor:
		name := w.file
		if w.cfg.storNew {
			name = fmt.Sprintf("%s.%d", w.file, len(w.newFiles))
			w.newFiles = append(w.newFiles, name) // even if it fails half-way
		}
		n, err := w.sess.stor(name, w.cfg.size, w.cfg.block)
		if err == nil && !w.cfg.storNew {
			w.stored = true
		}
		return n, 0, err
	case opList:
		return w.sess.list("MLSD", w.cfg.dir)
	}
	panic("unreachable: op " + w.cfg.op)
}

// idle holds the session until ctx ends, with a NOOP now and then.
func (w *worker) idle(ctx context.Context) {
	t := time.NewTicker(idleNoop)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.sess.noop(); err != nil {
				w.fail("noop", err)
				w.drop()
				pause(ctx)
				return
			}
		}
	}
}

// finish deletes the worker's file and logs out, best effort.
func (w *worker) finish() {
	if (w.stored || len(w.newFiles) > 0) && w.sess == nil && w.kill.Err() == nil {
		if err := w.connect(); err != nil { // only to delete the file
			w.fail("cleanup", err)
		}
	}
	if w.sess == nil {
		return
	}
	if w.stored {
		if err := w.sess.dele(w.file); err != nil {
			w.fail("cleanup", err)
		}
	}
	for _, name := range w.newFiles {
		if err := w.sess.dele(name); err != nil {
			w.fail("cleanup", err)
		}
	}
	w.sess.quit()
	w.sess = nil
}

// drop closes a session that failed: its state is unknown.
func (w *worker) drop() {
	if w.sess != nil {
		w.sess.close()
		w.sess = nil
	}
}

// record counts one finished operation.
func (w *worker) record(phase string, d time.Duration, n int64, items int, err error) {
	if err != nil {
		w.fail(phase, err)
		return
	}
	w.st.ok++
	w.st.bytes += n
	w.st.items += int64(items)
	w.st.latencies = append(w.st.latencies, d)
}

// fail counts an error unless it is the run's own doing (the kill).
func (w *worker) fail(phase string, err error) {
	if w.kill.Err() != nil {
		w.st.cut++
		return
	}
	w.st.addError(phase+" "+errorKind(err), err)
}

// pause waits retryPause or until ctx ends.
func pause(ctx context.Context) {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var errShort = errors.New("short transfer")

// errorKind names the class of err for the report: the FTP reply code, or
// timeout, tls, closed, short or other.
func errorKind(err error) string {
	var te *textproto.Error
	var ne net.Error
	var ve *tls.CertificateVerificationError
	var ae tls.AlertError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &te):
		return strconv.Itoa(te.Code)
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ve), errors.As(err, &ae), errors.As(err, &rh):
		return "tls"
	case errors.Is(err, errShort):
		return "short"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED):
		return "closed"
	}
	return "other"
}
