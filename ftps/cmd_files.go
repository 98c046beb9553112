package ftps

import (
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

// mdtmLayout is the RFC 3659 time-val, always UTC.
const mdtmLayout = "20060102150405"

// The handlers below receive their path resolved and their permission
// checked by the dispatcher (see the command table).

func (s *session) cmdPWD(request) result {
	return say(reply{257, quotePath(s.cwd) + " is the current directory."})
}

func (s *session) cmdCWD(r request) result { return s.chdir(r.path) }

func (s *session) cmdCDUP(request) result {
	p, err := s.resolve("..")
	if err != nil {
		return fail(err)
	}
	return s.chdir(p)
}

func (s *session) chdir(p vpath) result {
	fi, err := s.st.Stat(p.name)
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() {
		return say(reply{550, "Not a directory."})
	}
	s.cwd = p.virt
	return say(reply{250, "Directory changed to " + p.virt + "."})
}

func (s *session) cmdMKD(r request) result {
	if r.path.name == "." {
		return say(reply{550, "File exists."})
	}
	if err := s.st.Mkdir(r.path.name); err != nil {
		return fail(err)
	}
	s.log.Info("mkdir", "path", r.path.virt)
	return say(reply{257, quotePath(r.path.virt) + " created."})
}

func (s *session) cmdRMD(r request) result {
	if r.path.name == "." {
		return say(replyNoPerm)
	}
	if err := s.st.Rmdir(r.path.name); err != nil {
		return fail(err)
	}
	s.log.Info("rmdir", "path", r.path.virt)
	return say(reply{250, "Directory removed."})
}

func (s *session) cmdDELE(r request) result {
	fi, err := s.st.Lstat(r.path.name)
	if err != nil {
		return fail(err)
	}
	if fi.IsDir() {
		return say(reply{550, "Is a directory; use RMD."})
	}
	q := s.quota()
	if q != nil && fi.Mode().IsRegular() {
		// The count must not change while the home is being scanned.
		if err := q.wait(s.ctx); err != nil {
			return result{quit: true}
		}
	}
	if err := s.st.Remove(r.path.name); err != nil {
		return fail(err)
	}
	if q != nil && fi.Mode().IsRegular() {
		q.add(-fi.Size(), -1)
	}
	s.log.Info("delete", "path", r.path.virt)
	return say(reply{250, "File deleted."})
}

func (s *session) cmdRNFR(r request) result {
	if r.path.name == "." {
		return say(replyNoPerm)
	}
	if _, err := s.st.Lstat(r.path.name); err != nil {
		return fail(err)
	}
	s.renameFrom = r.path
	return say(reply{350, "Ready for RNTO."})
}

func (s *session) cmdRNTO(r request) result {
	if r.path.name == "." {
		return say(replyNoPerm)
	}
	// Renaming onto an existing file replaces it: like an overwriting
	// STOR, that takes the right to write, not only to rename.
	over, err := s.st.Lstat(r.path.name)
	if err == nil && !s.allowed(auth.PermWrite, "RNTO over existing file") {
		return say(replyNoPerm)
	}
	// A file renamed over another replaces it: the quota loses that one.
	var replaced fs.FileInfo
	q := s.quota()
	if err == nil && over.Mode().IsRegular() && q != nil {
		// (An object store's FileInfo is never os.SameFile: the names tell.)
		if from, ferr := s.st.Lstat(r.from.name); ferr == nil && r.from.name != r.path.name && !os.SameFile(from, over) {
			replaced = over
			if err := q.wait(s.ctx); err != nil {
				return result{quit: true}
			}
		}
	}
	if err := s.st.Rename(r.from.name, r.path.name); err != nil {
		return fail(err)
	}
	if replaced != nil {
		q.add(-replaced.Size(), -1)
	}
	s.log.Info("rename", "from", r.from.virt, "to", r.path.virt)
	return say(reply{250, "Rename successful."})
}

func (s *session) cmdSIZE(r request) result {
	fi, err := s.st.Stat(r.path.name)
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errNotRegular)
	}
	return say(reply{213, strconv.FormatInt(fi.Size(), 10)})
}

func (s *session) cmdMDTM(r request) result {
	fi, err := s.st.Stat(r.path.name)
	if err != nil {
		return fail(err)
	}
	if fi.ModTime().IsZero() { // a directory in object storage has none
		return say(reply{550, "No modification time for this entry."})
	}
	return say(reply{213, fi.ModTime().UTC().Format(mdtmLayout)})
}

// cmdMFMT sets a file's modification time (draft-somers-ftp-mfxx). The
// dispatcher has checked the time-val (see mfmtArg).
func (s *session) cmdMFMT(r request) result {
	ts, _, _ := strings.Cut(r.arg, " ")
	t, err := parseTimeVal(ts)
	if err != nil {
		return say(replySyntax)
	}
	if err := s.st.Chtimes(r.path.name, t); err != nil {
		return fail(err)
	}
	// The time the file has now: the one asked for, to the second, but
	// on a store that keeps its own (mfmt = "ignore"), that one.
	if fi, err := s.st.Stat(r.path.name); err == nil && !fi.ModTime().IsZero() {
		t = fi.ModTime().UTC()
	}
	return say(reply{213, "Modify=" + t.Format(mdtmLayout) + "; " + r.path.virt})
}

// parseTimeVal parses YYYYMMDDHHMMSS[.sss] in UTC.
func parseTimeVal(v string) (time.Time, error) {
	main, frac, _ := strings.Cut(v, ".")
	t, err := time.Parse(mdtmLayout, main)
	if err != nil {
		return time.Time{}, err
	}
	if frac != "" {
		ms, err := strconv.ParseUint(frac, 10, 32)
		if err != nil || len(frac) > 9 {
			return time.Time{}, strconv.ErrSyntax
		}
		for range 9 - len(frac) {
			ms *= 10
		}
		t = t.Add(time.Duration(ms))
	}
	return t.UTC(), nil
}
