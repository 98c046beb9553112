package ftps

import (
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

// mdtmLayout is the RFC 3659 time-val, always UTC.
const mdtmLayout = "20060102150405"

// path resolves arg against the cwd; a bad path is a 553 (name not allowed).
func (s *session) path(arg string) (virt, rel string, r reply, ok bool) {
	virt, rel, err := resolve(s.cwd, arg)
	if err != nil {
		return "", "", reply{553, "File name not allowed."}, false
	}
	return virt, rel, noReply, true
}

// allowed checks a permission and logs the refusal.
func (s *session) allowed(p auth.Perm, what string) bool {
	if s.user.Perms.Has(p) {
		return true
	}
	s.log.Info("permission denied", "need", p.String(), "op", what)
	return false
}

func (s *session) cmdPWD(string) reply {
	return reply{257, quotePath(s.cwd) + " is the current directory."}
}

func (s *session) cmdCWD(arg string) reply {
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	fi, err := s.root.Stat(rel)
	if err != nil {
		return fsReply(err)
	}
	if !fi.IsDir() {
		return reply{550, "Not a directory."}
	}
	s.cwd = virt
	return reply{250, "Directory changed to " + virt + "."}
}

func (s *session) cmdCDUP(string) reply { return s.cmdCWD("..") }

func (s *session) cmdMKD(arg string) reply {
	if !s.allowed(auth.PermMkdir, "MKD") {
		return replyNoPerm
	}
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	if rel == "." {
		return reply{550, "File exists."}
	}
	if err := s.root.Mkdir(rel, 0o755); err != nil {
		return fsReply(err)
	}
	s.log.Info("mkdir", "path", virt)
	return reply{257, quotePath(virt) + " created."}
}

func (s *session) cmdRMD(arg string) reply {
	if !s.allowed(auth.PermDelete, "RMD") {
		return replyNoPerm
	}
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	if rel == "." {
		return replyNoPerm
	}
	fi, err := s.root.Lstat(rel)
	if err != nil {
		return fsReply(err)
	}
	if !fi.IsDir() {
		return reply{550, "Not a directory."}
	}
	if err := s.root.Remove(rel); err != nil {
		return fsReply(err)
	}
	s.log.Info("rmdir", "path", virt)
	return reply{250, "Directory removed."}
}

func (s *session) cmdDELE(arg string) reply {
	if !s.allowed(auth.PermDelete, "DELE") {
		return replyNoPerm
	}
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	fi, err := s.root.Lstat(rel)
	if err != nil {
		return fsReply(err)
	}
	if fi.IsDir() {
		return reply{550, "Is a directory; use RMD."}
	}
	if err := s.root.Remove(rel); err != nil {
		return fsReply(err)
	}
	s.log.Info("delete", "path", virt)
	return reply{250, "File deleted."}
}

func (s *session) cmdRNFR(arg string) reply {
	if !s.allowed(auth.PermRename, "RNFR") {
		return replyNoPerm
	}
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	if rel == "." {
		return replyNoPerm
	}
	if _, err := s.root.Lstat(rel); err != nil {
		return fsReply(err)
	}
	s.renameFrom, s.renameVirt = rel, virt
	return reply{350, "Ready for RNTO."}
}

func (s *session) cmdRNTO(arg string) reply {
	from, fromVirt := s.renameFrom, s.renameVirt
	s.renameFrom, s.renameVirt = "", ""
	if from == "" {
		return reply{503, "RNFR required first."}
	}
	if !s.allowed(auth.PermRename, "RNTO") {
		return replyNoPerm
	}
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	if rel == "." {
		return replyNoPerm
	}
	// Renaming onto an existing file replaces it: like an overwriting
	// STOR, that takes the right to write, not only to rename.
	if _, err := s.root.Lstat(rel); err == nil && !s.allowed(auth.PermWrite, "RNTO over existing file") {
		return replyNoPerm
	}
	if err := s.root.Rename(from, rel); err != nil {
		return fsReply(err)
	}
	s.log.Info("rename", "from", fromVirt, "to", virt)
	return reply{250, "Rename successful."}
}

// statFile resolves arg and stats it (following symlinks inside the root).
func (s *session) statFile(arg string) (fs.FileInfo, reply, bool) {
	_, rel, r, ok := s.path(arg)
	if !ok {
		return nil, r, false
	}
	fi, err := s.root.Stat(rel)
	if err != nil {
		return nil, fsReply(err), false
	}
	return fi, noReply, true
}

func (s *session) cmdSIZE(arg string) reply {
	if !s.user.Perms.Has(auth.PermList) && !s.allowed(auth.PermRead, "SIZE") {
		return replyNoPerm
	}
	fi, r, ok := s.statFile(arg)
	if !ok {
		return r
	}
	if !fi.Mode().IsRegular() {
		return reply{550, "Not a regular file."}
	}
	return reply{213, strconv.FormatInt(fi.Size(), 10)}
}

func (s *session) cmdMDTM(arg string) reply {
	if !s.user.Perms.Has(auth.PermList) && !s.allowed(auth.PermRead, "MDTM") {
		return replyNoPerm
	}
	fi, r, ok := s.statFile(arg)
	if !ok {
		return r
	}
	return reply{213, fi.ModTime().UTC().Format(mdtmLayout)}
}

// cmdMFMT sets a file's modification time (draft-somers-ftp-mfxx).
func (s *session) cmdMFMT(arg string) reply {
	if !s.allowed(auth.PermWrite, "MFMT") {
		return replyNoPerm
	}
	ts, name, ok := strings.Cut(arg, " ")
	if !ok || name == "" {
		return replySyntax
	}
	t, err := parseTimeVal(ts)
	if err != nil {
		return replySyntax
	}
	virt, rel, r, ok := s.path(name)
	if !ok {
		return r
	}
	if err := s.root.Chtimes(rel, t, t); err != nil {
		return fsReply(err)
	}
	return reply{213, "Modify=" + t.Format(mdtmLayout) + "; " + virt}
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
