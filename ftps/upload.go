package ftps

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"syscall"
)

// upload is the target of one STOR, APPE or STOU: how it is written (a
// new file in place, an append or a write from an offset in place, or an
// atomic replace), opened only once the data connection has passed its
// checks (a refused connection must not touch the old file), then
// committed or cancelled.
type upload struct {
	st     storage
	name   string
	mode   writeMode
	offset int64
	size   int64      // announced with ALLO, 0 if not
	stream bool       // the size may be streamed to the store (no rate limit)
	w      fileWriter // once open; STOU opens before its 150

	// The user's quota (nil: none) and what this upload reserved in it.
	// old is the size of the file it writes over (0 for a new file);
	// created tells an upload that makes a new file.
	q        *quotaUsage
	old      int64
	created  bool
	written  int64
	reserved int64
	resFile  bool
}

// open creates or opens the target. With a quota, the writer reserves
// every byte the file would grow by before writing it, and stops with the
// 552 when the quota would be crossed.
func (u *upload) open() (io.Writer, error) {
	if u.q != nil && !u.resFile && u.created {
		if err := u.q.reserve(0, true); err != nil {
			if u.w != nil { // STOU: created before its 150
				u.w.Discard()
			}
			return nil, err
		}
		u.resFile = true
	}
	if u.w == nil {
		var w fileWriter
		var err error
		if ss, ok := u.st.(sizedStorage); ok && u.size > 0 && (u.mode == writeNew || u.mode == writeReplace) {
			w, err = ss.WriteSized(u.name, u.mode, u.size, u.stream)
		} else {
			w, err = u.st.Write(u.name, u.mode, u.offset)
		}
		if err != nil {
			u.release()
			return nil, err
		}
		u.w = w
	}
	if u.q != nil {
		return quotaWriter{u}, nil
	}
	return u.w, nil
}

// quotaWriter writes through an upload's writer within the quota.
type quotaWriter struct{ u *upload }

func (q quotaWriter) Write(p []byte) (int, error) {
	u := q.u
	if grow := u.start() + u.written + int64(len(p)) - u.old; grow > u.reserved {
		if err := u.q.reserve(grow-u.reserved, false); err != nil {
			return 0, err
		}
		u.reserved = grow
	}
	n, err := u.w.Write(p)
	u.written += int64(n)
	return n, err
}

// start is where the upload's first byte lands in the final file.
func (u *upload) start() int64 {
	switch u.mode {
	case writeAppend:
		return u.old
	case writeAt:
		return u.offset
	}
	return 0
}

// release gives the quota reservation back and applies the change of the
// file's size (dBytes) and of the count of files (dFiles).
func (u *upload) release(change ...int64) {
	if u.q == nil {
		return
	}
	var dBytes, dFiles int64
	if len(change) == 2 {
		dBytes, dFiles = change[0], change[1]
	}
	u.q.settle(u.reserved, u.resFile, dBytes, dFiles)
	u.reserved, u.resFile = 0, false
}

// newFiles is 1 when the upload added a file.
func (u *upload) newFiles() int64 {
	if u.created {
		return 1
	}
	return 0
}

// commit makes what was written the file and returns the file's size.
func (u *upload) commit() (int64, error) {
	size, err := u.w.Commit()
	if err != nil {
		u.release() // a failed commit changed nothing that counts
		return size, err
	}
	u.release(size-u.old, u.newFiles())
	return size, nil
}

// cancel gives up: an atomic upload leaves the old file as it was; an
// in-place one keeps what arrived, so that the client can resume it.
func (u *upload) cancel() {
	var size int64 = -1
	if u.q != nil && !u.atomic() {
		if fi, err := u.w.Stat(); err == nil {
			size = fi.Size()
		}
	}
	u.w.Cancel()
	if size >= 0 {
		u.release(size-u.old, u.newFiles())
	} else {
		u.release()
	}
}

// discard undoes the upload (the quota refused it): the old file stays as
// it was, a new file is removed.
func (u *upload) discard() {
	u.w.Discard()
	u.release()
}

// atomic reports an upload that shows nothing until its commit (one that
// replaces a file, any on an object store): one that may be truncated is
// cancelled rather than committed, and leaves no trace.
func (u *upload) atomic() bool { return !u.w.Resumable() }

// receive runs an upload on an accepted data connection. It holds the
// close_notify policy: an upload whose TLS stream ends without
// close_notify may have been cut by an attacker who injected a FIN, or by
// a client that died. See settle for what becomes of it.
func (x *transfer) receive(dc *dataConn, up *upload) reply {
	if up.q != nil {
		if err := up.q.wait(x.ctx); err != nil { // the first scan of the home
			if up.w != nil {
				up.w.Discard()
			}
			return reply{426, "Transfer aborted."}
		}
	}
	w, err := up.open()
	if err != nil {
		x.log.Info("upload target not writable", "op", x.what, "err", err)
		return createFailed(err)
	}
	side := &fileSide{}
	n, err := copyData(trackedWriter{w, side}, fullReader{throttle(x.ctx, dc, x.rates...)})
	truncated := err == nil && dc.endedWithoutCloseNotify() ||
		errors.Is(err, io.ErrUnexpectedEOF) && side.err == nil
	if isQuotaError(side.err) {
		// Stop here: no partial file, an overwritten file intact.
		up.discard()
		x.log.Info("upload refused: quota exceeded", "op", x.what, "bytes", n)
		return errReply(side.err)
	}
	if err != nil && !truncated {
		up.cancel()
		return x.failed(err, side.err)
	}
	return settle(x.log, x.what, up, n, truncated)
}

// settle ends an upload whose data has arrived (n bytes; truncated when it
// may be cut short). A truncated atomic upload is cancelled: the old file
// stays. A truncated in-place upload is committed, so that the client can
// resume it, but answered 426 all the same, never "226 complete".
func settle(log *slog.Logger, what string, up *upload, n int64, truncated bool) reply {
	if truncated && up.atomic() {
		up.cancel()
		if up.created {
			log.Warn("upload ended without TLS close_notify: discarded, nothing stored", "op", what, "bytes", n)
			return reply{426, "Upload ended without TLS close_notify; nothing stored."}
		}
		log.Warn("upload ended without TLS close_notify: discarded, old file kept", "op", what, "bytes", n)
		return reply{426, "Upload ended without TLS close_notify; old file kept."}
	}
	size, err := up.commit()
	if err != nil {
		if isStorageFailure(err) || errors.As(err, new(replyError)) {
			// The store's error is logged already; a refusal is the client's.
			log.Info("upload not stored", "op", what, "err", err)
			return errReply(err)
		}
		log.Error("upload commit failed", "op", what, "err", err)
		if noSpace(err) {
			return errReply(err)
		}
		return reply{451, "Local error; upload not stored."}
	}
	if truncated {
		log.Warn("upload ended without TLS close_notify: possibly truncated, bytes kept",
			"op", what, "bytes", n, "size", size)
		return reply{426, fmt.Sprintf("Upload ended without TLS close_notify, possibly truncated; "+
			"%d bytes received and kept (file size %d): resume with REST+STOR or APPE.", n, size)}
	}
	return reply{226, "Transfer complete."}
}

// createFailed is the reply to a target that could not be opened: the
// causes with a reply of their own keep it; any other refusal is 553.
func createFailed(err error) reply {
	switch {
	case errors.Is(err, fs.ErrExist), noSpace(err), errors.Is(err, syscall.ENAMETOOLONG),
		errors.Is(err, errors.ErrUnsupported), errors.As(err, new(replyError)), isStorageFailure(err):
		return errReply(err)
	}
	return reply{553, "Could not create file."}
}
