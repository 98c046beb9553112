package ftps

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/passive"
)

// openPassive replaces the session's passive listener with a new one.
func (s *session) openPassive() (*passive.Listener, reply, bool) {
	if s.pasv != nil {
		s.pasv.Close()
		s.pasv = nil
	}
	l, err := s.binding.Listen()
	if err != nil {
		if errors.Is(err, passive.ErrNoPorts) {
			s.log.Warn("passive ports exhausted")
			return nil, reply{425, "No free passive port; try again later."}, false
		}
		s.log.Error("passive listen failed", "err", err)
		return nil, reply{425, "Cannot open passive connection."}, false
	}
	s.pasv = l
	return l, noReply, true
}

func (s *session) cmdPASV(string) reply {
	if s.epsvAll {
		return reply{503, "EPSV ALL in effect; use EPSV."}
	}
	addr := s.binding.PassiveAddr(s.ctx)
	if !addr.Is4() || !s.remote.Addr().Is4() {
		return reply{522, "PASV is IPv4 only; use EPSV."}
	}
	l, r, ok := s.openPassive()
	if !ok {
		return r
	}
	a, p := addr.As4(), l.Port()
	return reply{227, fmt.Sprintf("Entering Passive Mode (%d,%d,%d,%d,%d,%d).", a[0], a[1], a[2], a[3], p>>8, p&0xFF)}
}

func (s *session) cmdEPSV(arg string) reply {
	switch strings.ToUpper(strings.TrimSpace(arg)) {
	case "":
	case "ALL":
		s.epsvAll = true
		return reply{200, "EPSV ALL ok."}
	case "1":
		if !s.local.Addr().Is4() {
			return reply{522, "Network protocol not supported, use (2)"}
		}
	case "2":
		if !s.local.Addr().Is6() {
			return reply{522, "Network protocol not supported, use (1)"}
		}
	default:
		return replySyntax
	}
	l, r, ok := s.openPassive()
	if !ok {
		return r
	}
	return reply{229, fmt.Sprintf("Entering Extended Passive Mode (|||%d|).", l.Port())}
}

// cmdPORT refuses active mode: the server would have to connect out,
// which NAT and firewalls rarely allow and which invites FTP bounce abuse.
func (s *session) cmdPORT(string) reply {
	return reply{502, "Active mode is not supported; use PASV or EPSV."}
}

func (s *session) cmdREST(arg string) reply {
	n, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
	if err != nil || n < 0 {
		return replySyntax
	}
	s.restOffset = n
	return reply{350, "Restarting at " + strconv.FormatInt(n, 10) + ". Send STOR or RETR."}
}

// takeRest returns the REST offset and clears it: it applies to one
// transfer only.
func (s *session) takeRest() int64 {
	n := s.restOffset
	s.restOffset = 0
	return n
}

func (s *session) cmdABOR(string) reply {
	if x := s.xfer; x != nil {
		x.cancel()
		s.waitTransfer() // its 426 (or 226) goes out before ours
		return reply{226, "ABOR successful."}
	}
	if s.pasv != nil {
		s.pasv.Close()
		s.pasv = nil
	}
	return reply{225, "No transfer to abort."}
}

func (s *session) modeName() string {
	if s.binary {
		return "BINARY"
	}
	return "ASCII"
}

func (s *session) cmdRETR(arg string) reply {
	if !s.allowed(auth.PermRead, "RETR") {
		return replyNoPerm
	}
	offset := s.takeRest()
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	f, err := s.root.OpenFile(rel, os.O_RDONLY|noBlock, 0)
	if err != nil {
		return fsReply(err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return reply{550, "Not a regular file."}
	}
	if offset > fi.Size() {
		f.Close()
		return reply{554, "Restart offset is beyond the end of the file."}
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return fsReply(err)
	}
	what := "RETR " + virt
	run := func(ctx context.Context, dc *dataConn) reply {
		defer f.Close()
		side := &fileSide{}
		if _, err := copyData(dc, trackedFile{f, side}); err != nil {
			return s.transferError(ctx, what, err, side.err)
		}
		return reply{226, "Transfer complete."}
	}
	text := fmt.Sprintf("Opening %s mode data connection for %s (%d bytes).", s.modeName(), virt, fi.Size()-offset)
	return s.prepareTransfer(what, fileOp{path: virt}, text, run, func() { f.Close() })
}

// storeMode says how an upload meets an existing file.
type storeMode int

const (
	storeReplace storeMode = iota // STOR
	storeAppend                   // APPE
	storeUnique                   // STOU
)

// String is the FTP command of the mode, for logs.
func (m storeMode) String() string {
	return [...]string{storeReplace: "STOR", storeAppend: "APPE", storeUnique: "STOU"}[m]
}

func (s *session) cmdSTOR(arg string) reply { return s.store(arg, storeReplace) }
func (s *session) cmdAPPE(arg string) reply { return s.store(arg, storeAppend) }
func (s *session) cmdSTOU(arg string) reply { return s.store(arg, storeUnique) }

// upload is how one upload writes its file: opened only once the data
// connection passed its checks, then committed or discarded.
type upload struct {
	open    func() (*os.File, error)
	commit  func(f *os.File, end int64) error
	discard func(f *os.File)
	// atomic uploads replace an existing file; they must not commit data
	// that may be truncated.
	atomic bool
	// appending uploads (APPE) write at the end of the file, whatever
	// their file offset says.
	appending bool
}

// store implements STOR and APPE. An overwriting STOR writes a temporary
// file beside the target and renames it over the target only after a
// complete transfer, so an aborted upload leaves the old version. A new
// file, APPE and REST+STOR write in place, so an interrupted upload can be
// resumed.
func (s *session) store(arg string, mode storeMode) reply {
	if !s.allowed(auth.PermWrite, mode.String()) {
		return replyNoPerm
	}
	offset := s.takeRest()
	if mode == storeUnique {
		return s.storeUnique(arg)
	}
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	if rel == "." || isTempName(path.Base(rel)) {
		return reply{553, "File name not allowed."}
	}
	if fi, err := s.root.Stat(path.Dir(rel)); err != nil || !fi.IsDir() {
		return reply{553, "Directory does not exist."}
	}
	fi, err := s.root.Stat(rel)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fsReply(err)
	}
	if exists && !fi.Mode().IsRegular() {
		return reply{550, "Not a regular file."}
	}
	if offset > 0 && mode == storeReplace && (!exists || offset > fi.Size()) {
		return reply{554, "Restart offset is beyond the end of the file."}
	}

	up := s.plan(rel, mode, offset, exists, fi)
	what := mode.String() + " " + virt
	run := func(ctx context.Context, dc *dataConn) reply {
		return s.receive(ctx, dc, what, up)
	}
	return s.prepareTransfer(what, fileOp{path: virt, upload: true}, "Ok to send data.", run, nil)
}

// receive runs an upload on an accepted data connection. An upload whose
// TLS stream ends without close_notify may have been cut by an attacker
// who injected a FIN, or by a client that died: an atomic overwrite is
// discarded (the old file stays); an in-place upload keeps what arrived, so
// that the client can resume it, but is answered 426 all the same, never
// "226 complete".
func (s *session) receive(ctx context.Context, dc *dataConn, what string, up upload) reply {
	f, err := up.open()
	if err != nil {
		s.log.Info("upload target not writable", "op", what, "err", err)
		if r := fsReply(err); r.code != 550 || errors.Is(err, fs.ErrExist) {
			return r
		}
		return reply{553, "Could not create file."}
	}
	side := &fileSide{}
	n, err := copyData(trackedFile{f, side}, dc)
	truncated := err == nil && dc.endedWithoutCloseNotify() ||
		errors.Is(err, io.ErrUnexpectedEOF) && side.err == nil
	if err != nil && !truncated {
		up.discard(f)
		return s.transferError(ctx, what, err, side.err)
	}
	if truncated && up.atomic {
		up.discard(f)
		s.log.Warn("upload ended without TLS close_notify: discarded, old file kept", "op", what, "bytes", n)
		return reply{426, "Upload ended without TLS close_notify; old file kept."}
	}
	end, _ := f.Seek(0, io.SeekCurrent) // the end of what was written
	size := end
	if fi, err := f.Stat(); err == nil && up.appending {
		size = fi.Size()
	}
	if err := up.commit(f, end); err != nil {
		s.log.Error("upload commit failed", "op", what, "err", err)
		if r := fsReply(err); r.code == 452 {
			return r
		}
		return reply{451, "Local error; upload not stored."}
	}
	if truncated {
		s.log.Warn("upload ended without TLS close_notify: possibly truncated, bytes kept",
			"op", what, "bytes", n, "size", size)
		return reply{426, fmt.Sprintf("Upload ended without TLS close_notify, possibly truncated; "+
			"%d bytes received and kept (file size %d): resume with REST+STOR or APPE.", n, size)}
	}
	return reply{226, "Transfer complete."}
}

// plan decides how an upload writes its target.
func (s *session) plan(rel string, mode storeMode, offset int64, exists bool, fi fs.FileInfo) upload {
	closeOnly := func(f *os.File) { f.Close() }
	commitClose := func(f *os.File, _ int64) error { return f.Close() }
	switch {
	case mode == storeAppend:
		return upload{
			open: func() (*os.File, error) {
				return s.root.OpenFile(rel, os.O_WRONLY|os.O_APPEND|os.O_CREATE|noBlock, 0o644)
			},
			commit: commitClose, discard: closeOnly, appending: true,
		}
	case !exists:
		return upload{
			open: func() (*os.File, error) {
				return s.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			},
			commit: commitClose, discard: closeOnly,
		}
	case offset > 0:
		return upload{
			open: func() (*os.File, error) {
				f, err := s.root.OpenFile(rel, os.O_WRONLY|noBlock, 0)
				if err == nil {
					if _, err = f.Seek(offset, io.SeekStart); err != nil {
						f.Close()
					}
				}
				return f, err
			},
			commit: func(f *os.File, end int64) error {
				// Drop any old tail beyond what the client sent.
				err := f.Truncate(end)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				return err
			},
			discard: closeOnly,
		}
	default:
		return s.planReplace(rel, fi.Mode().Perm())
	}
}

// planReplace writes a temporary file beside rel and renames it over rel on
// commit. Both happen through a handle on the parent directory, opened once
// with the temporary file: if the directory's path is replaced meanwhile
// (by a symlink, say), the rename and the clean-up still reach the
// directory that holds the temporary file, and none is left behind.
func (s *session) planReplace(rel string, perm fs.FileMode) upload {
	var dir *os.Root
	tmp, base := tempName(), path.Base(rel)
	return upload{
		atomic: true,
		open: func() (*os.File, error) {
			var err error
			if dir, err = s.root.OpenRoot(path.Dir(rel)); err != nil {
				return nil, err
			}
			f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
			if err != nil {
				dir.Close()
			}
			return f, err
		},
		commit: func(f *os.File, _ int64) error {
			defer dir.Close()
			err := f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = dir.Rename(tmp, base)
			}
			if err != nil {
				dir.Remove(tmp)
			}
			return err
		},
		discard: func(f *os.File) {
			f.Close()
			dir.Remove(tmp)
			dir.Close()
		},
	}
}

// Temporary upload files are named ".ftpsd-XXXXXXXXXXXX.part"; listings
// hide them.
const (
	tempPrefix = ".ftpsd-"
	tempSuffix = ".part"
	tempRand   = 12
)

func tempName() string { return tempPrefix + rand.Text()[:tempRand] + tempSuffix }

// isTempName reports whether name is a temporary upload file of ours.
func isTempName(name string) bool {
	return len(name) == len(tempPrefix)+tempRand+len(tempSuffix) &&
		strings.HasPrefix(name, tempPrefix) && strings.HasSuffix(name, tempSuffix)
}

// storeUnique implements STOU: the name is chosen and the file created in
// one step (O_EXCL), before the 150 announces it, so two concurrent STOUs
// can never be promised the same name.
func (s *session) storeUnique(arg string) reply {
	base := strings.TrimSpace(arg)
	if base == "" {
		base = "ftpsd-upload"
	}
	var virt, rel string
	var f *os.File
	for i := range 100 {
		name := base
		if i > 0 {
			name = base + "." + strconv.Itoa(i)
		}
		var r reply
		var ok bool
		if virt, rel, r, ok = s.path(name); !ok {
			return r
		}
		if rel == "." || isTempName(path.Base(rel)) {
			return reply{553, "File name not allowed."}
		}
		var err error
		f, err = s.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			if errors.Is(err, fs.ErrNotExist) {
				return reply{553, "Directory does not exist."}
			}
			return fsReply(err)
		}
	}
	if f == nil {
		return reply{553, "Could not find a unique file name."}
	}
	closeOnly := func(f *os.File) { f.Close() }
	up := upload{
		open:    func() (*os.File, error) { return f, nil },
		commit:  func(f *os.File, _ int64) error { return f.Close() },
		discard: closeOnly,
	}
	what := "STOU " + virt
	run := func(ctx context.Context, dc *dataConn) reply {
		return s.receive(ctx, dc, what, up)
	}
	abandon := func() {
		// No data connection came: the empty file is not an upload. It is
		// removed only if it is still ours and empty: another session of
		// the account may have put a file under the name meanwhile.
		mine, err1 := f.Stat()
		now, err2 := s.root.Lstat(rel)
		f.Close()
		if err1 == nil && err2 == nil && os.SameFile(mine, now) && now.Size() == 0 {
			s.root.Remove(rel)
		}
	}
	return s.prepareTransfer(what, fileOp{path: virt, upload: true}, "FILE: "+path.Base(virt), run, abandon)
}

func (s *session) cmdLIST(arg string) reply { return s.list(listArg(arg), formatLIST) }
func (s *session) cmdNLST(arg string) reply { return s.list(listArg(arg), formatNLST) }
func (s *session) cmdMLSD(arg string) reply { return s.list(arg, formatMLSD) }

func (s *session) list(arg string, format listFormat) reply {
	if !s.allowed(auth.PermList, "LIST") {
		return replyNoPerm
	}
	s.takeRest()
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	fi, err := s.root.Stat(rel)
	if err != nil {
		return fsReply(err)
	}
	if !fi.IsDir() && format == formatMLSD {
		return reply{501, "Not a directory; use MLST."}
	}
	what := "LIST " + virt
	run := func(ctx context.Context, dc *dataConn) reply {
		bw := bufio.NewWriterSize(dc, 32<<10)
		var err error
		if fi.IsDir() {
			err = s.writeListing(ctx, bw, rel, format)
		} else if format == formatNLST {
			_, err = io.WriteString(bw, printable(virt)+"\r\n")
		} else {
			_, err = io.WriteString(bw, listLine(fi, printable(path.Base(virt)), time.Now())+"\r\n")
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			var pe *fs.PathError
			var localErr error
			if errors.As(err, &pe) {
				localErr = err
			}
			return s.transferError(ctx, what, err, localErr)
		}
		return reply{226, "Directory send OK."}
	}
	return s.prepareTransfer(what, fileOp{}, "Here comes the directory listing.", run, nil)
}
