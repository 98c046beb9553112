package ftps

import (
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
)

// noBlock is added to every open of an existing path: opening a FIFO (or
// some device) a user placed in a home would otherwise block the session
// until someone writes to it, beyond the reach of any timeout. Regular
// files and directories ignore it; anything else is refused after Stat.
const noBlock = syscall.O_NONBLOCK

// rootStorage is the default storage: the user's home opened as an
// os.Root, so that "..", absolute paths and symbolic links cannot leave it.
// A session's root is shared with the other sessions of its user (see
// Server.openHome); Close ends this storage's use of it, once.
type rootStorage struct {
	root  *os.Root
	close func() error
}

// openRootStorage opens home as a storage of its own (the quota scan's);
// Close closes the root.
func openRootStorage(home string) (*rootStorage, error) {
	r, err := os.OpenRoot(home)
	if err != nil {
		return nil, err
	}
	return &rootStorage{root: r, close: sync.OnceValue(r.Close)}, nil
}

func (s *rootStorage) Stat(name string) (fs.FileInfo, error)  { return s.root.Stat(name) }
func (s *rootStorage) Lstat(name string) (fs.FileInfo, error) { return s.root.Lstat(name) }
func (s *rootStorage) Rename(from, to string) error           { return s.root.Rename(from, to) }
func (s *rootStorage) Remove(name string) error               { return s.root.Remove(name) }
func (s *rootStorage) Mkdir(name string) error                { return s.root.Mkdir(name, 0o755) }
func (s *rootStorage) Close() error                           { return s.close() }

func (s *rootStorage) Chtimes(name string, mtime time.Time) error {
	return s.root.Chtimes(name, mtime, mtime)
}

func (s *rootStorage) Rmdir(name string) error {
	fi, err := s.root.Lstat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: name, Err: syscall.ENOTDIR}
	}
	return s.root.Remove(name)
}

func (s *rootStorage) Open(name string, offset int64) (io.ReadCloser, fs.FileInfo, error) {
	f, err := s.root.OpenFile(name, os.O_RDONLY|noBlock, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil || !fi.Mode().IsRegular():
		err = errNotRegular
	case offset > fi.Size():
		err = errBeyondEnd
	default:
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

func (s *rootStorage) ReadDir(name string) (dirLister, error) {
	d, err := s.root.OpenFile(name, os.O_RDONLY|noBlock, 0)
	if err != nil {
		return nil, err
	}
	return &rootLister{root: s.root, dir: name, f: d}, nil
}

// rootLister lists a directory in chunks, so memory stays bounded.
type rootLister struct {
	root *os.Root
	dir  string
	f    *os.File
}

func (l *rootLister) Next(n int) ([]fs.FileInfo, error) {
	for {
		entries, err := l.f.ReadDir(n)
		infos := make([]fs.FileInfo, 0, len(entries))
		for _, e := range entries {
			if isTempName(e.Name()) {
				continue // an upload in progress, or one an old crash left
			}
			fi, ierr := e.Info()
			if ierr != nil {
				continue
			}
			if fi.Mode()&fs.ModeSymlink != 0 {
				// Through the root: a link out of the home fails, and is left out.
				if fi, ierr = l.root.Stat(path.Join(l.dir, e.Name())); ierr != nil {
					continue
				}
				fi = namedInfo{fi, e.Name()} // the link's name, not its target's
			}
			infos = append(infos, fi)
		}
		if len(entries) == 0 && err == nil {
			err = io.EOF
		}
		// A chunk of nothing but hidden entries is not the end.
		if len(infos) > 0 || err != nil {
			return infos, err
		}
	}
}

func (l *rootLister) Close() error { return l.f.Close() }

// namedInfo is a file's information under another name.
type namedInfo struct {
	fs.FileInfo
	name string
}

func (n namedInfo) Name() string { return n.name }

func (s *rootStorage) Write(name string, mode writeMode, offset int64) (fileWriter, error) {
	switch mode {
	case writeNew:
		f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, err
		}
		return &rootWriter{f: f, root: s.root, name: name, created: true}, nil
	case writeAppend:
		f, created, err := s.openAppend(name)
		if err != nil {
			return nil, err
		}
		w := &rootWriter{f: f, root: s.root, name: name, created: created, appending: true}
		if fi, err := f.Stat(); err == nil {
			w.orig = fi.Size()
		}
		return w, nil
	case writeAt:
		f, err := s.root.OpenFile(name, os.O_WRONLY|noBlock, 0)
		if err != nil {
			return nil, err
		}
		w := &rootWriter{f: f, root: s.root, name: name, truncate: true}
		fi, err := f.Stat()
		if err == nil {
			w.orig = fi.Size()
			_, err = f.Seek(offset, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		return w, nil
	default:
		return s.replace(name)
	}
}

// openAppend opens name for appending, creating it if missing, and tells
// whether it did (Discard removes only a file it created).
func (s *rootStorage) openAppend(name string) (f *os.File, created bool, err error) {
	for range 2 {
		f, err = s.root.OpenFile(name, os.O_WRONLY|os.O_APPEND|noBlock, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, false, err
		}
		f, err = s.root.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) { // else created meanwhile: open it
			return f, err == nil, err
		}
	}
	return nil, false, err
}

// rootWriter writes a file in place.
type rootWriter struct {
	f    *os.File
	root *os.Root
	name string
	// created: the write made the file (Discard removes it); else orig is
	// the size it had (Discard cuts it back to that).
	created bool
	orig    int64
	// appending writes go to the end of the file, whatever the offset
	// says: the size is the file's.
	appending bool
	// truncate drops an old tail beyond what was written (REST+STOR).
	truncate bool
}

func (w *rootWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
func (w *rootWriter) Stat() (fs.FileInfo, error)  { return w.f.Stat() }
func (w *rootWriter) Cancel()                     { w.f.Close() }
func (w *rootWriter) Resumable() bool             { return true }

// Cannot: a directory on disk can do all of it.
func (s *rootStorage) Cannot(operation) error { return nil }

func (w *rootWriter) Discard() {
	if !w.created {
		w.f.Truncate(w.orig)
		w.f.Close()
		return
	}
	// Remove the name only if it still is this file: another session of
	// the account may have put a file there meanwhile.
	mine, err1 := w.f.Stat()
	w.f.Close()
	now, err2 := w.root.Lstat(w.name)
	if err1 == nil && err2 == nil && os.SameFile(mine, now) {
		w.root.Remove(w.name)
	}
}
func (w *rootWriter) Commit() (size int64, err error) {
	size, _ = w.f.Seek(0, io.SeekCurrent) // the end of what was written
	if w.appending {
		if fi, err := w.f.Stat(); err == nil {
			size = fi.Size()
		}
	}
	if w.truncate {
		err = w.f.Truncate(size)
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return size, err
}

// replace writes a temporary file beside name, renamed over it on Commit.
// Both happen through a handle on the parent directory, opened once with
// the temporary file: if the directory's path is replaced meanwhile (by a
// symlink, say), the rename and the clean-up still reach the directory
// that holds the temporary file, and none is left behind.
func (s *rootStorage) replace(name string) (fileWriter, error) {
	dir, err := s.root.OpenRoot(path.Dir(name))
	if err != nil {
		return nil, err
	}
	base := path.Base(name)
	perm := fs.FileMode(0o644)
	if fi, err := dir.Stat(base); err == nil {
		perm = fi.Mode().Perm()
	}
	tmp := tempName()
	f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		dir.Close()
		return nil, err
	}
	return &replaceWriter{dir: dir, f: f, tmp: tmp, base: base}, nil
}

type replaceWriter struct {
	dir       *os.Root
	f         *os.File
	tmp, base string
}

func (w *replaceWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
func (w *replaceWriter) Stat() (fs.FileInfo, error)  { return w.f.Stat() }

func (w *replaceWriter) Commit() (int64, error) {
	defer w.dir.Close()
	size, _ := w.f.Seek(0, io.SeekCurrent)
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.dir.Rename(w.tmp, w.base)
	}
	if err != nil {
		w.dir.Remove(w.tmp)
	}
	return size, err
}

func (w *replaceWriter) Discard()        { w.Cancel() }
func (w *replaceWriter) Resumable() bool { return false }

func (w *replaceWriter) Cancel() {
	w.f.Close()
	w.dir.Remove(w.tmp)
	w.dir.Close()
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
