package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
)

// logFileMode is the mode of log files ftpsd creates: readable by the
// service's group (an admin or a log shipper), not by everyone, since the
// log names users and client addresses.
const logFileMode = 0o640

// reopenFile is an append-only file that can be opened again under the
// same name, after logrotate moved it away (SIGUSR1 or a reload). Writes
// and reopening are serialised, so a record is never split across files.
type reopenFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openReopenFile(key, path string) (*reopenFile, error) {
	r := &reopenFile{path: path}
	if err := r.Reopen(); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return r, nil
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

// Reopen opens the path again and closes the previous file. If the open
// fails, the previous file stays in use.
func (r *reopenFile) Reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logFileMode)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// logOutputs are the daemon's log destinations: standard error always, and
// the [log] file and xferlog when set.
type logOutputs struct {
	stderr  io.Writer
	file    *reopenFile // nil when [log] file is empty
	xferlog *reopenFile // nil when [log] xferlog is empty
}

// openLogs opens the log files of a validated [log] section.
func openLogs(c logConfig, stderr io.Writer) (*logOutputs, error) {
	out := &logOutputs{stderr: stderr}
	var err error
	if c.File != "" {
		if out.file, err = openReopenFile("log.file", c.File); err != nil {
			return nil, err
		}
	}
	if c.Xferlog != "" {
		if out.xferlog, err = openReopenFile("log.xferlog", c.Xferlog); err != nil {
			out.Close()
			return nil, err
		}
	}
	return out, nil
}

// Writer is where the daemon's log records go.
func (o *logOutputs) Writer() io.Writer {
	if o.file == nil {
		return o.stderr
	}
	return io.MultiWriter(o.stderr, o.file)
}

// Reopen opens the log files again (for logrotate), reporting the first
// failure; a file that cannot be reopened keeps being written.
func (o *logOutputs) Reopen() error {
	var first error
	for _, f := range []*reopenFile{o.file, o.xferlog} {
		if f == nil {
			continue
		}
		if err := f.Reopen(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Close closes the log files.
func (o *logOutputs) Close() {
	for _, f := range []*reopenFile{o.file, o.xferlog} {
		if f != nil {
			f.Close()
		}
	}
}

// Transfer writes one xferlog line, if an xferlog is configured.
func (o *logOutputs) Transfer(r ftps.TransferRecord) {
	if o.xferlog == nil {
		return
	}
	io.WriteString(o.xferlog, xferlogLine(r))
}

// xferlogLine renders a transfer in the xferlog(5) format that wu-ftpd
// defined and vsftpd (xferlog_std_format) and ProFTPD (TransferLog) write,
// so that tools written for them read it unchanged:
//
//	current-time transfer-time remote-host file-size filename transfer-type
//	special-action-flag direction access-mode username service-name
//	authentication-method authenticated-user-id completion-status
//
// The time is local, in ctime(3) form; the transfer time is in whole
// seconds, at least 1; the filename is the path the user sees, with spaces
// and control characters as '_' so that every line splits into the same 14
// fields.
func xferlogLine(r ftps.TransferRecord) string {
	secs := max(int64(r.Duration.Round(time.Second)/time.Second), 1)
	typ, dir, status := 'a', 'o', 'i'
	if r.Binary {
		typ = 'b'
	}
	if r.Upload {
		dir = 'i'
	}
	if r.Complete {
		status = 'c'
	}
	name := strings.Map(func(c rune) rune {
		if c <= ' ' || c == 0x7f {
			return '_'
		}
		return c
	}, r.Path)
	user := strings.Map(func(c rune) rune {
		if c <= ' ' || c == 0x7f {
			return '_'
		}
		return c
	}, r.User)
	return fmt.Sprintf("%s %d %s %d %s %c _ %c r %s ftp 0 * %c\n",
		r.End.Local().Format(time.ANSIC), secs, r.Remote.String(), r.Bytes, name, typ, dir, user, status)
}

// newLogger builds the daemon's logger on w from a validated [log] section.
// Its level can be changed later (a reload) through the returned LevelVar.
// In JSON every duration is a number of seconds, on every line.
func newLogger(c logConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	if lvl, err := c.level(); err == nil {
		level.Set(lvl)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.Float64Value(a.Value.Duration().Seconds())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}
