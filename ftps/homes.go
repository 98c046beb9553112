package ftps

import (
	"context"
	"log/slog"
	"os"
	"sync"
)

// homeRoot is a user's home opened as an os.Root and shared by the
// sessions of that user that logged in while it was the user's home: one
// file descriptor per user instead of one per session (an os.Root is safe
// for concurrent use). The last of those sessions closes it. refs is
// guarded by Server.umu.
type homeRoot struct {
	path string
	root *os.Root
	refs int
}

// openHome returns a storage over path, the home of the user of st, for a
// session that has just logged in (an object store's requests end with
// ctx, and its errors go to log). It shares the root the user's other
// sessions hold when path still names the directory that root has open;
// otherwise (the first session, a reload that gave the user another home,
// a home moved away and made anew) it opens a new root, which the
// following sessions share, while older sessions keep theirs until they
// end.
func (s *Server) openHome(ctx context.Context, log *slog.Logger, st *userState, path string) (storage, error) {
	if IsS3Home(path) {
		st, err := s.openS3Home(ctx, log, path)
		if err != nil {
			return nil, err // not a nil *s3Storage in a non-nil storage
		}
		return st, nil
	}
	if h := s.shareHome(st, path); h != nil {
		return s.homeStorage(st, h), nil
	}
	r, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	// The newest root is the one later sessions share. (Two first logins
	// at once each open one; the older keeps its sessions until they end.)
	h := &homeRoot{path: path, root: r, refs: 1}
	s.umu.Lock()
	st.home = h
	s.umu.Unlock()
	return s.homeStorage(st, h), nil
}

// countHome is the usage under a home, for its user's quota: the objects
// under an s3:// home, else the regular files under the directory.
func (s *Server) countHome(home string) (bytes, files int64, err error) {
	if !IsS3Home(home) {
		return scanTree(home)
	}
	st, err := s.openS3Home(context.Background(), s.log, home)
	if err != nil {
		return 0, 0, err
	}
	return st.usage()
}

// shareHome takes a reference to the user's current root when it is the
// directory path names now, or returns nil.
func (s *Server) shareHome(st *userState, path string) *homeRoot {
	s.umu.Lock()
	h := st.home
	if h == nil || h.path != path || h.refs == 0 {
		s.umu.Unlock()
		return nil
	}
	h.refs++ // held while checking, so that it cannot close meanwhile
	s.umu.Unlock()
	now, err1 := os.Stat(path)
	open, err2 := h.root.Stat(".")
	if err1 == nil && err2 == nil && os.SameFile(now, open) {
		return h
	}
	s.releaseHome(st, h)
	return nil
}

// homeStorage is a session's storage over h; its Close gives the
// reference back.
func (s *Server) homeStorage(st *userState, h *homeRoot) *rootStorage {
	return &rootStorage{root: h.root, close: sync.OnceValue(func() error {
		s.releaseHome(st, h)
		return nil
	})}
}

// releaseHome drops a reference to h and closes it after the last.
func (s *Server) releaseHome(st *userState, h *homeRoot) {
	s.umu.Lock()
	h.refs--
	last := h.refs == 0
	if last && st.home == h {
		st.home = nil
	}
	s.umu.Unlock()
	if last {
		h.root.Close()
	}
}
