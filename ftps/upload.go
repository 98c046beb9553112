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
	w      fileWriter // once open; STOU opens before its 150
}

// open creates or opens the target.
func (u *upload) open() (io.Writer, error) {
	if u.w != nil {
		return u.w, nil
	}
	w, err := u.st.Write(u.name, u.mode, u.offset)
	if err != nil {
		return nil, err
	}
	u.w = w
	return w, nil
}

// commit makes what was written the file and returns the file's size.
func (u *upload) commit() (int64, error) { return u.w.Commit() }

// cancel gives up: an atomic upload leaves the old file as it was; an
// in-place one keeps what arrived, so that the client can resume it.
func (u *upload) cancel() { u.w.Cancel() }

// atomic reports an upload that replaces an existing file: one that may
// be truncated is cancelled rather than committed.
func (u *upload) atomic() bool { return u.mode == writeReplace }

// receive runs an upload on an accepted data connection. It holds the
// close_notify policy: an upload whose TLS stream ends without
// close_notify may have been cut by an attacker who injected a FIN, or by
// a client that died. See settle for what becomes of it.
func (x *transfer) receive(dc *dataConn, up *upload) reply {
	w, err := up.open()
	if err != nil {
		x.log.Info("upload target not writable", "op", x.what, "err", err)
		return createFailed(err)
	}
	side := &fileSide{}
	n, err := copyData(trackedWriter{w, side}, dc)
	truncated := err == nil && dc.endedWithoutCloseNotify() ||
		errors.Is(err, io.ErrUnexpectedEOF) && side.err == nil
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
		log.Warn("upload ended without TLS close_notify: discarded, old file kept", "op", what, "bytes", n)
		return reply{426, "Upload ended without TLS close_notify; old file kept."}
	}
	size, err := up.commit()
	if err != nil {
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
		errors.Is(err, errors.ErrUnsupported), errors.As(err, new(replyError)):
		return errReply(err)
	}
	return reply{553, "Could not create file."}
}
