package ftps

import (
	"errors"
	"io"
	"io/fs"
	"time"
)

// storage is the file system of one logged-in session. Names are relative
// to the user's home, slash-separated and clean ("." is the home itself);
// vpath.go makes them. An implementation keeps every name inside the home.
//
// The os.Root jail (storage_root.go) is the default. A backend that cannot
// do an operation (an object store cannot append, say) returns an error
// wrapping errors.ErrUnsupported, which the client sees as a clear 502,
// never a partial emulation.
type storage interface {
	// Stat follows a symbolic link; Lstat does not.
	Stat(name string) (fs.FileInfo, error)
	Lstat(name string) (fs.FileInfo, error)
	// ReadDir streams the entries of a directory: a huge directory is
	// never loaded whole.
	ReadDir(name string) (dirLister, error)
	// Open opens a regular file for reading from offset. It fails with
	// errNotRegular for anything else and errBeyondEnd when offset is past
	// the end.
	Open(name string, offset int64) (io.ReadCloser, fs.FileInfo, error)
	// Write opens name for writing as mode says (see writeMode).
	Write(name string, mode writeMode, offset int64) (fileWriter, error)
	Rename(from, to string) error
	// Remove removes a file; Rmdir removes an empty directory and fails
	// with ENOTDIR for anything else.
	Remove(name string) error
	Mkdir(name string) error
	Rmdir(name string) error
	Chtimes(name string, mtime time.Time) error
	// Cannot returns the errors.ErrUnsupported error, with its reason, of
	// an operation the backend cannot do at all, or nil. The session asks
	// first, so that such a command is refused before a data connection,
	// and listings do not offer it (the MLSD perm fact).
	Cannot(op operation) error
	Close() error
}

// operation is something a backend may be unable to do at all.
type operation int

const (
	opAppend    operation = 1 << iota // APPE
	opWriteAt                         // REST+STOR
	opRenameDir                       // RNFR/RNTO of a directory
	opSetTimes                        // MFMT
)

// lacks is the set of operations st cannot do.
func lacks(st storage) operation {
	var ops operation
	for op := opAppend; op <= opSetTimes; op <<= 1 {
		if st.Cannot(op) != nil {
			ops |= op
		}
	}
	return ops
}

// sizedStorage is a backend that writes better when the size of a new
// file or a replacement is known in advance (ALLO): the S3 backend then
// streams one PUT instead of buffering parts.
type sizedStorage interface {
	// WriteSized writes exactly size bytes; stream lets it send them to
	// the store as they arrive.
	WriteSized(name string, mode writeMode, size int64, stream bool) (fileWriter, error)
}

// dirLister is a directory being listed.
type dirLister interface {
	// Next returns up to n entries, and io.EOF after the last. A symbolic
	// link is shown as what it points to; broken links and links out of
	// the home are left out.
	Next(n int) ([]fs.FileInfo, error)
	Close() error
}

// writeMode says how a write meets the file it names.
type writeMode int

const (
	// writeNew creates the file, failing with fs.ErrExist if there is one.
	writeNew writeMode = iota
	// writeAppend creates the file or writes at its end.
	writeAppend
	// writeAt writes an existing file from an offset (REST+STOR); the old
	// tail beyond the end written is dropped at Commit.
	writeAt
	// writeReplace writes a new version that replaces the file only at
	// Commit; Cancel leaves the old one untouched.
	writeReplace
)

// fileWriter is a file being written.
type fileWriter interface {
	io.Writer
	// Commit ends the write and makes it the file. It returns the file's
	// size afterwards.
	Commit() (size int64, err error)
	// Cancel ends the write: a resumable write keeps what was written,
	// so that the client can resume it; any other leaves no trace.
	Cancel()
	// Resumable reports whether Cancel keeps what was written. Writes in
	// place on disk do; a replacing write does not, nor does any write to
	// an object store, where nothing shows before Commit and an upload
	// cannot be resumed (REST+STOR and APPE are refused there).
	Resumable() bool
	// Discard ends the write and undoes it (a quota refused it): a
	// replacing write leaves no trace, a file the write created is
	// removed, an append or a write from an offset is cut back to the
	// size the file had.
	Discard()
	// Stat describes the file being written.
	Stat() (fs.FileInfo, error)
}

// unsupportedError is a backend's errors.ErrUnsupported with the reason
// the client reads in the 502 reply.
type unsupportedError struct{ why string }

func (e unsupportedError) Error() string        { return e.why }
func (e unsupportedError) Is(target error) bool { return target == errors.ErrUnsupported }

// Errors a storage returns that the error map (errReply) turns into
// replies.
var (
	errNotRegular = errors.New("not a regular file")
	errBeyondEnd  = errors.New("offset beyond the end of the file")
)
