package ftps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
func mlsxLine(fi fs.FileInfo, name string, facts factSet, perms auth.Perm) string {
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
	if facts&factModify != 0 {
		b.WriteString("modify=" + fi.ModTime().UTC().Format(mdtmLayout) + ";")
	}
	if facts&factPerm != 0 {
		b.WriteString("perm=" + permFact(fi.IsDir(), perms) + ";")
	}
	if facts&factUnique != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(&b, "unique=%xU%x;", uint64(st.Dev), st.Ino)
		}
	}
	return b.String() + " " + name
}

// permFact is the RFC 3659 "perm" fact derived from the user's rights.
func permFact(dir bool, p auth.Perm) string {
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
		add(p.Has(auth.PermWrite), "aw")
		add(p.Has(auth.PermDelete), "d")
	}
	add(p.Has(auth.PermRename), "f")
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

// writeListing streams the entries of dir (root-relative) to w in the
// given format, reading the directory in chunks so memory stays bounded.
// Symlinks are shown as what they point to; links that are broken or lead
// out of the home are left out.
func (s *session) writeListing(ctx context.Context, w io.Writer, rel string, format listFormat) error {
	d, err := s.root.OpenFile(rel, os.O_RDONLY|noBlock, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	now := time.Now()
	for {
		entries, err := d.ReadDir(256)
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if isTempName(e.Name()) {
				continue // an upload in progress, or one an old crash left
			}
			fi, ierr := e.Info()
			if ierr != nil {
				continue
			}
			if fi.Mode()&fs.ModeSymlink != 0 {
				if fi, ierr = s.root.Stat(path.Join(rel, e.Name())); ierr != nil {
					continue
				}
			}
			name := printable(e.Name())
			var line string
			switch format {
			case formatLIST:
				line = listLine(fi, name, now)
			case formatNLST:
				line = name
			case formatMLSD:
				line = mlsxLine(fi, name, s.mlstFacts, s.user.Perms)
			}
			if _, err := io.WriteString(w, line+"\r\n"); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || len(entries) == 0 {
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

func (s *session) cmdMLST(arg string) reply {
	if !s.allowed(auth.PermList, "MLST") {
		return replyNoPerm
	}
	virt, rel, r, ok := s.path(arg)
	if !ok {
		return r
	}
	fi, err := s.root.Stat(rel)
	if err != nil {
		return fsReply(err)
	}
	perms := s.user.Perms
	if rel == "." {
		perms &^= auth.PermDelete | auth.PermRename // the home itself cannot go
	}
	return reply{250, "Listing " + virt + "\n " + mlsxLine(fi, virt, s.mlstFacts, perms) + "\nEnd"}
}

// statPath answers "STAT path" with a LIST-format listing on the control
// connection (RFC 959 allows it); capped so a huge directory cannot
// monopolise the control channel.
func (s *session) statPath(arg string) reply {
	if !s.allowed(auth.PermList, "STAT") {
		return replyNoPerm
	}
	virt, rel, r, ok := s.path(listArg(arg))
	if !ok {
		return r
	}
	fi, err := s.root.Stat(rel)
	if err != nil {
		return fsReply(err)
	}
	var b strings.Builder
	b.WriteString("Status of " + virt + ":\n")
	if !fi.IsDir() {
		b.WriteString(listLine(fi, path.Base(virt), time.Now()) + "\n")
	} else {
		w := &cappedWriter{b: &b, max: 1 << 20}
		if err := s.writeListing(s.ctx, w, rel, formatLIST); err != nil && !errors.Is(err, errListingTooLong) {
			return fsReply(err)
		}
	}
	b.WriteString("End of status")
	return reply{213, strings.ReplaceAll(b.String(), "\r\n", "\n")}
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
