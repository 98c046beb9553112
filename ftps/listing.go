package ftps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

// factSet is the set of MLSx facts a client asked for (OPTS MLST).
type factSet uint8

const (
	factType factSet = 1 << iota
	factSize
	factModify
	factPerm
	factUnique
)

const allFacts = factType | factSize | factModify | factPerm | factUnique

var factNames = []struct {
	f    factSet
	name string
}{{factType, "type"}, {factSize, "size"}, {factModify, "modify"}, {factPerm, "perm"}, {factUnique, "unique"}}

// parseFacts reads "type;size;" (case-insensitive); unknown facts are
// ignored as RFC 3659 asks.
func parseFacts(v string) factSet {
	var fs factSet
	for _, n := range strings.Split(strings.TrimSpace(v), ";") {
		for _, f := range factNames {
			if strings.EqualFold(n, f.name) {
				fs |= f.f
			}
		}
	}
	return fs
}

func (fs factSet) String() string {
	var b strings.Builder
	for _, f := range factNames {
		if fs&f.f != 0 {
			b.WriteString(f.name + ";")
		}
	}
	return b.String()
}

// mlsxLine formats one MLSD/MLST entry: "fact=v;fact=v; name".
// The perm fact offers what the user may do, less what the storage lacks.
func mlsxLine(fi fs.FileInfo, name string, facts factSet, perms auth.Perm, lacking operation) string {
	var b strings.Builder
	if facts&factType != 0 {
		if fi.IsDir() {
			b.WriteString("type=dir;")
		} else {
			b.WriteString("type=file;")
		}
	}
	if facts&factSize != 0 && !fi.IsDir() {
		b.WriteString("size=" + strconv.FormatInt(fi.Size(), 10) + ";")
	}
	if facts&factModify != 0 && !fi.ModTime().IsZero() { // an S3 prefix has no time
		b.WriteString("modify=" + fi.ModTime().UTC().Format(mdtmLayout) + ";")
	}
	if facts&factPerm != 0 {
		b.WriteString("perm=" + permFact(fi.IsDir(), perms, lacking) + ";")
	}
	if facts&factUnique != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(&b, "unique=%xU%x;", uint64(st.Dev), st.Ino)
		}
	}
	return b.String() + " " + name
}

// permFact is the RFC 3659 "perm" fact derived from the user's rights and
// what the storage cannot do.
func permFact(dir bool, p auth.Perm, lacking operation) string {
	var b strings.Builder
	add := func(ok bool, c string) {
		if ok {
			b.WriteString(c)
		}
	}
	if dir {
		b.WriteString("e")
		add(p.Has(auth.PermList), "l")
		add(p.Has(auth.PermWrite), "c")
		add(p.Has(auth.PermMkdir), "m")
		add(p.Has(auth.PermDelete), "dp")
	} else {
		add(p.Has(auth.PermRead), "r")
		add(p.Has(auth.PermWrite) && lacking&opAppend == 0, "a")
		add(p.Has(auth.PermWrite), "w")
		add(p.Has(auth.PermDelete), "d")
	}
	add(p.Has(auth.PermRename) && (!dir || lacking&opRenameDir == 0), "f")
	return b.String()
}

// listLine formats one entry in the "ls -l" form that FileZilla, lftp and
// curl parse.
func listLine(fi fs.FileInfo, name string, now time.Time) string {
	mode := []byte("----------")
	if fi.IsDir() {
		mode[0] = 'd'
	}
	const rwx = "rwxrwxrwx"
	perm := fi.Mode().Perm()
	for i := range 9 {
		if perm&(1<<(8-i)) != 0 {
			mode[i+1] = rwx[i]
		}
	}
	mt := fi.ModTime().UTC()
	if mt.IsZero() { // an S3 prefix has no time: show the epoch, not year 1
		mt = time.Unix(0, 0).UTC()
	}
	var when string
	if mt.After(now.AddDate(0, -6, 0)) && mt.Before(now.Add(24*time.Hour)) {
		when = mt.Format("Jan _2 15:04")
	} else {
		when = mt.Format("Jan _2  2006")
	}
	return fmt.Sprintf("%s 1 ftp ftp %12d %s %s", mode, fi.Size(), when, name)
}

// listFormat picks the line format of a listing command.
type listFormat int

const (
	formatLIST listFormat = iota
	formatNLST
	formatMLSD
)

// lister writes directory listings. It holds copies of what it needs
// (see transfer), so a transfer goroutine never reads the session.
type lister struct {
	st     storage
	format listFormat
	facts  factSet
	perms  auth.Perm
	lacks  operation
}

func (s *session) lister(format listFormat) lister {
	return lister{st: s.st, format: format, facts: s.mlstFacts, perms: s.user.Perms, lacks: lacks(s.st)}
}

// write streams the entries of dir (storage-relative) to w, a chunk at a
// time so memory stays bounded.
func (l lister) write(ctx context.Context, w io.Writer, dir string) error {
	d, err := l.st.ReadDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return l.writeFrom(ctx, w, d)
}

// writeFrom streams the entries of the open directory d to w.
func (l lister) writeFrom(ctx context.Context, w io.Writer, d dirLister) error {
	now := time.Now()
	for {
		infos, err := d.Next(256)
		for _, fi := range infos {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := printable(fi.Name())
			var line string
			switch l.format {
			case formatLIST:
				line = listLine(fi, name, now)
			case formatNLST:
				line = name
			case formatMLSD:
				line = mlsxLine(fi, name, l.facts, l.perms, l.lacks)
			}
			if _, err := io.WriteString(w, line+"\r\n"); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// listArg strips "ls" options such as "-la" that clients put before the
// path of LIST/NLST.
func listArg(arg string) string {
	for strings.HasPrefix(arg, "-") {
		_, rest, _ := strings.Cut(arg, " ")
		arg = strings.TrimLeft(rest, " ")
	}
	return arg
}

func (s *session) cmdMLST(r request) result {
	fi, err := s.st.Stat(r.path.name)
	if err != nil {
		return fail(err)
	}
	perms := s.user.Perms
	if r.path.name == "." {
		perms &^= auth.PermDelete | auth.PermRename // the home itself cannot go
	}
	return say(reply{250, "Listing " + r.path.virt + "\n " + mlsxLine(fi, r.path.virt, s.mlstFacts, perms, lacks(s.st)) + "\nEnd"})
}

// statPathCmd is STAT with a path: a listing, gated like LIST.
var statPathCmd = command{perm: auth.PermList, path: lsArg}

// statPath answers "STAT path" with a LIST-format listing on the control
// connection (RFC 959 allows it); capped so a huge directory cannot
// monopolise the control channel.
func (s *session) statPath(arg string) result {
	r, err := s.gate("STAT", statPathCmd, arg)
	if err != nil {
		return fail(err)
	}
	fi, err := s.st.Stat(r.path.name)
	if err != nil {
		return fail(err)
	}
	var b strings.Builder
	b.WriteString("Status of " + r.path.virt + ":\n")
	if !fi.IsDir() {
		b.WriteString(listLine(fi, path.Base(r.path.virt), time.Now()) + "\n")
	} else {
		w := &cappedWriter{b: &b, max: 1 << 20}
		if err := s.lister(formatLIST).write(s.ctx, w, r.path.name); err != nil && !errors.Is(err, errListingTooLong) {
			return fail(err)
		}
	}
	b.WriteString("End of status")
	return say(reply{213, strings.ReplaceAll(b.String(), "\r\n", "\n")})
}

var errListingTooLong = errors.New("listing too long")

// cappedWriter stops a STAT listing at max bytes.
type cappedWriter struct {
	b   *strings.Builder
	max int
}

func (w *cappedWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.max {
		return 0, errListingTooLong
	}
	return w.b.Write(p)
}
