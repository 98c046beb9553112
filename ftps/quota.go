package ftps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

// quotaFileName is the file in the state directory that keeps the usage
// of the users with a quota across restarts.
const quotaFileName = "quota.json"

// quotaSaveDelay coalesces the saves of many changes into one write.
const quotaSaveDelay = 2 * time.Second

// quotaUsage is the usage under one user's home: regular files and their
// bytes. It is scanned once (when no saved record matches the user's home
// and quota) and then kept current by the server's own changes: uploads,
// DELE, RNTO over a file. Changes made behind the server's back are not
// seen until a rescan (remove quota.json, or change the quota).
//
// Uploads reserve what they write before writing it, so that concurrent
// uploads of one user cannot together exceed the quota. Safe for
// concurrent use.
type quotaUsage struct {
	store *quotaStore
	name  string

	mu                 sync.Mutex
	home               string
	maxBytes, maxFiles int64 // 0: no limit of that kind
	bytes, files       int64 // committed
	resBytes, resFiles int64 // reserved by uploads in progress
	ready              chan struct{}
	scanned            bool
}

// quotaRecord is one user's entry in quota.json.
type quotaRecord struct {
	Home     string    `json:"home"`
	MaxBytes int64     `json:"max_bytes"`
	MaxFiles int64     `json:"max_files"`
	Bytes    int64     `json:"bytes"`
	Files    int64     `json:"files"`
	Updated  time.Time `json:"updated"`
}

// quotaStore holds the usage of every user with a quota and persists it.
type quotaStore struct {
	path  string // "" : not persisted
	log   *slog.Logger
	count func(home string) (bytes, files int64, err error)
	// saveMu makes saves one at a time, so an older snapshot never
	// lands after a newer one.
	saveMu sync.Mutex

	mu      sync.Mutex
	users   map[string]*quotaUsage
	saved   map[string]quotaRecord // as loaded: matched at the user's first login
	pending *time.Timer            // a save is scheduled
	closed  bool
}

// newQuotaStore loads the usage saved in dir (if any). A missing or
// unreadable file only means rescans. count scans a home.
func newQuotaStore(dir string, log *slog.Logger, count func(home string) (bytes, files int64, err error)) *quotaStore {
	q := &quotaStore{log: log, count: count, users: make(map[string]*quotaUsage), saved: make(map[string]quotaRecord)}
	if dir == "" {
		return q
	}
	q.path = filepath.Join(dir, quotaFileName)
	data, err := os.ReadFile(q.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		log.Warn("cannot read quota usage; homes will be rescanned", "file", q.path, "err", err)
	default:
		var f struct {
			Users map[string]quotaRecord `json:"users"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			log.Warn("quota usage file is damaged; homes will be rescanned", "file", q.path, "err", err)
		} else if f.Users != nil {
			q.saved = f.Users
		}
	}
	return q
}

// forUser returns the usage of user name, whose home and quota are as
// given. It starts a scan of the home (in the background) when nothing
// known matches them: the first time, when the saved record is missing,
// or when the home or the quota changed.
func (q *quotaStore) forUser(name, home string, maxBytes, maxFiles int64) *quotaUsage {
	q.mu.Lock()
	u := q.users[name]
	if u == nil {
		u = &quotaUsage{store: q, name: name, ready: make(chan struct{})}
		q.users[name] = u
		if r, ok := q.saved[name]; ok && r.Home == home && r.MaxBytes == maxBytes && r.MaxFiles == maxFiles {
			u.home, u.maxBytes, u.maxFiles = home, maxBytes, maxFiles
			u.bytes, u.files, u.scanned = max(r.Bytes, 0), max(r.Files, 0), true
			close(u.ready)
			q.mu.Unlock()
			return u
		}
	}
	q.mu.Unlock()

	u.mu.Lock()
	defer u.mu.Unlock()
	sameMax := u.maxBytes == maxBytes && u.maxFiles == maxFiles
	switch {
	case u.home == home && u.scanned && sameMax:
		return u
	case u.home == home && !u.scanned:
		u.maxBytes, u.maxFiles = maxBytes, maxFiles // the running scan counts for these too
		return u
	case u.scanned || u.home != "":
		// A changed quota or home: uploads wait for the new count. A scan
		// of another home still running closes its own channel.
		u.ready = make(chan struct{})
		u.scanned = false
	}
	u.home, u.maxBytes, u.maxFiles = home, maxBytes, maxFiles
	go u.scan(home, u.ready)
	return u
}

// peek returns the usage of name if it is known.
func (q *quotaStore) peek(name string) *quotaUsage {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.users[name]
}

// scan counts the regular files under home and their bytes, through the
// storage interface, a directory at a time (never a whole directory in
// memory). Symbolic links are neither followed nor counted. The result is
// dropped if the settings changed meanwhile (a newer scan runs).
func (u *quotaUsage) scan(home string, ready chan struct{}) {
	start := time.Now()
	bytes, files, err := u.store.count(home)
	u.mu.Lock()
	if u.ready != ready { // superseded by a scan of another home
		close(ready)
		u.mu.Unlock()
		return
	}
	if err != nil {
		// Better an approximate count than no uploads at all.
		u.store.log.Error("quota scan failed; usage counted from what was seen", "user", u.name, "home", home, "err", err)
	}
	u.bytes, u.files, u.scanned = bytes, files, true
	close(ready)
	u.mu.Unlock()
	u.store.log.Info("quota usage scanned", "user", u.name, "bytes", bytes, "files", files,
		"dur", time.Since(start).Round(time.Millisecond))
	u.store.changed()
}

// scanTree counts the regular files under a home on disk.
func scanTree(home string) (bytes, files int64, err error) {
	st, err := openRootStorage(home)
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	var errs []error
	dirs := []string{"."}
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		l, err := st.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for {
			infos, err := l.Next(256)
			for _, fi := range infos {
				name := path.Join(dir, fi.Name())
				// The lister shows what links point to: look at the entry itself.
				lfi, lerr := st.Lstat(name)
				switch {
				case lerr != nil:
				case lfi.IsDir():
					dirs = append(dirs, name)
				case lfi.Mode().IsRegular():
					bytes += lfi.Size()
					files++
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					errs = append(errs, err)
				}
				break
			}
		}
		l.Close()
	}
	return bytes, files, errors.Join(errs...)
}

// wait blocks until the usage is known, or ctx ends.
func (u *quotaUsage) wait(ctx context.Context) error {
	u.mu.Lock()
	ready := u.ready
	u.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// usage returns the committed usage and whether it is known yet.
func (u *quotaUsage) usage() (bytes, files int64, scanned bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bytes, u.files, u.scanned
}

// exceeded is the 552 reply, with the usage in it.
func (u *quotaUsage) exceededLocked(files bool) error {
	if files {
		return replyError{reply{552, fmt.Sprintf("Quota exceeded (used %d of %d files).", u.files, u.maxFiles)}}
	}
	return replyError{reply{552, fmt.Sprintf("Quota exceeded (used %s of %s).", auth.FormatSize(u.bytes), auth.FormatSize(u.maxBytes))}}
}

// isQuotaError reports the 552 of a quota.
func isQuotaError(err error) bool {
	var re replyError
	return errors.As(err, &re) && re.code == 552
}

// check refuses at once an upload that could not store a byte: a new
// file over the file quota, or any growth when the bytes are used up.
// Before the first scan ended it lets everything through (the transfer
// waits for the scan, and reserves).
func (u *quotaUsage) check(newFile, grows bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case !u.scanned:
	case newFile && u.maxFiles > 0 && u.files+u.resFiles >= u.maxFiles:
		return u.exceededLocked(true)
	case grows && u.maxBytes > 0 && u.bytes+u.resBytes >= u.maxBytes:
		return u.exceededLocked(false)
	}
	return nil
}

// reserve sets n bytes (and a file, if file) aside for an upload, or
// fails with the 552 when that would go over the quota.
func (u *quotaUsage) reserve(n int64, file bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if file && u.maxFiles > 0 && u.files+u.resFiles+1 > u.maxFiles {
		return u.exceededLocked(true)
	}
	if n > 0 && u.maxBytes > 0 && u.bytes+u.resBytes+n > u.maxBytes {
		return u.exceededLocked(false)
	}
	u.resBytes += n
	if file {
		u.resFiles++
	}
	return nil
}

// settle ends an upload's reservation (resBytes, resFile) and applies what
// it changed (dBytes, dFiles, which may be negative).
func (u *quotaUsage) settle(resBytes int64, resFile bool, dBytes, dFiles int64) {
	u.mu.Lock()
	u.resBytes -= resBytes
	if resFile {
		u.resFiles--
	}
	u.bytes = max(u.bytes+dBytes, 0)
	u.files = max(u.files+dFiles, 0)
	u.mu.Unlock()
	u.store.changed()
}

// add applies a change made outside uploads (DELE, RNTO over a file).
func (u *quotaUsage) add(dBytes, dFiles int64) { u.settle(0, false, dBytes, dFiles) }

// changed schedules a save of the usage.
func (q *quotaStore) changed() {
	if q.path == "" {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == nil && !q.closed {
		q.pending = time.AfterFunc(quotaSaveDelay, q.save)
	}
}

// flush saves now (at shutdown) and stops later saves.
func (q *quotaStore) flush() {
	q.mu.Lock()
	q.closed = true
	if q.pending != nil {
		q.pending.Stop()
	}
	q.mu.Unlock()
	q.save()
}

// save writes the usage of every user to quota.json (atomically: a
// temporary file renamed over it).
func (q *quotaStore) save() {
	q.saveMu.Lock()
	defer q.saveMu.Unlock()
	q.mu.Lock()
	q.pending = nil
	if q.path == "" || len(q.users) == 0 {
		q.mu.Unlock()
		return
	}
	recs := make(map[string]quotaRecord, len(q.saved)+len(q.users))
	for name, r := range q.saved {
		recs[name] = r
	}
	now := time.Now().UTC()
	for name, u := range q.users {
		u.mu.Lock()
		if u.scanned {
			recs[name] = quotaRecord{Home: u.home, MaxBytes: u.maxBytes, MaxFiles: u.maxFiles,
				Bytes: u.bytes, Files: u.files, Updated: now}
		}
		u.mu.Unlock()
	}
	q.saved = recs
	q.mu.Unlock()

	data, err := json.MarshalIndent(struct {
		Users map[string]quotaRecord `json:"users"`
	}{recs}, "", "  ")
	if err == nil {
		err = writeFileAtomic(q.path, append(data, '\n'))
	}
	if err != nil {
		q.log.Warn("cannot save quota usage", "file", q.path, "err", err)
	}
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
