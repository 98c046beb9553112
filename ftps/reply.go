package ftps

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"syscall"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/passive"
)

// reply is one FTP reply. Text may hold several lines (separated by "\n");
// it is then sent in the RFC 959 multi-line form. The text never carries an
// internal error: those go to the log.
type reply struct {
	code int
	text string
}

// format renders r as it goes on the wire:
//
//	"200 text\r\n"  or  "211-first\r\n middle\r\n211 last\r\n".
//
// Middle lines start with a space so that a line which happens to begin with
// digits is never mistaken for the end of the reply. Control characters
// (a file name may hold CR, LF or ESC) are replaced by '?' (see printable).
func (r reply) format() string {
	code := strconv.Itoa(r.code)
	lines := strings.Split(strings.TrimRight(r.text, "\n"), "\n")
	for i, l := range lines {
		lines[i] = printable(l)
	}
	var b strings.Builder
	if len(lines) == 1 {
		b.WriteString(code + " " + lines[0] + "\r\n")
		return b.String()
	}
	b.WriteString(code + "-" + lines[0] + "\r\n")
	for _, l := range lines[1 : len(lines)-1] {
		if !strings.HasPrefix(l, " ") {
			b.WriteByte(' ')
		}
		b.WriteString(l + "\r\n")
	}
	b.WriteString(code + " " + lines[len(lines)-1] + "\r\n")
	return b.String()
}

// Replies used from several places.
var (
	replyNeedLogin      = reply{530, "Please login with USER and PASS."}
	replySyntax         = reply{501, "Syntax error in parameters or arguments."}
	replyNoPerm         = reply{550, "Permission denied."}
	replyNeedPasv       = reply{425, "Use PASV or EPSV first."}
	replyNotResumed     = reply{425, "Unable to build data connection: TLS session of data connection not resumed."}
	replyDataFailed     = reply{425, "Unable to build data connection."}
	replyDataProtection = reply{521, "Data connections must be encrypted: send PBSZ 0 and PROT P."}
	replyTransferBusy   = reply{503, "A transfer is in progress; only ABOR, STAT, NOOP and QUIT are accepted."}
)

// replyError is an error whose reply a helper has already decided (like
// net/http's statusError). Its text is a reply's, never an internal error's.
type replyError struct{ reply }

func (e replyError) Error() string { return strconv.Itoa(e.code) + " " + e.text }

// errReply is the one place that turns an error into a reply: decided
// replies, bad paths, storage, passive and login errors. The reply never
// holds the error's text (file names, internal detail): that goes to the
// log.
func errReply(err error) reply {
	var re replyError
	if errors.As(err, &re) {
		return re.reply
	}
	// A backend's refusal says why (its text names no file).
	var ue unsupportedError
	if errors.As(err, &ue) {
		return reply{502, ue.why}
	}
	var se s3Failure
	if errors.As(err, &se) {
		if se.denied {
			return replyNoPerm
		}
		return reply{451, "Storage unavailable; try again later."}
	}
	// Errno first: ENOTEMPTY also matches fs.ErrExist.
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if r, ok := errnoReplies[errno]; ok {
			return r
		}
	}
	for _, m := range errorReplies {
		if errors.Is(err, m.err) {
			return m.reply
		}
	}
	// Permission errors, escapes from the os.Root ("path escapes from
	// parent") and anything unexpected: refuse without detail.
	return replyNoPerm
}

var errnoReplies = map[syscall.Errno]reply{
	syscall.ENOTDIR:      {550, "Not a directory."},
	syscall.EISDIR:       {550, "Is a directory."},
	syscall.ENOTEMPTY:    {550, "Directory not empty."},
	syscall.ENOSPC:       {452, "Insufficient storage space."},
	syscall.EDQUOT:       {452, "Insufficient storage space."},
	syscall.EFBIG:        {552, "File too large for the storage."},
	syscall.ENAMETOOLONG: {553, "File name too long."},
	syscall.ELOOP:        replyNoPerm,
}

// errorReplies are tried in order, with errors.Is.
var errorReplies = []struct {
	err error
	reply
}{
	{errBadPath, reply{553, "File name not allowed."}},
	{errNotRegular, reply{550, "Not a regular file."}},
	{errBeyondEnd, reply{554, "Restart offset is beyond the end of the file."}},
	// A storage backend that cannot do the operation (see storage).
	{errors.ErrUnsupported, reply{502, "The server's storage cannot do this."}},
	{fs.ErrNotExist, reply{550, "No such file or directory."}},
	{fs.ErrExist, reply{550, "File exists."}},
	{passive.ErrNoPorts, reply{425, "No free passive port; try again later."}},
	{passive.ErrNotResumed, replyNotResumed},
	{passive.ErrConnect, reply{425, "Can't open data connection."}},
	{auth.ErrBlocked, reply{421, "Too many failed logins; try again later."}},
	{auth.ErrInvalidCredentials, reply{530, "Login incorrect."}},
}

// isStorageFailure reports an error of the object store, whose own reply
// (451 or 550) replaces a transfer's generic one; it is logged already.
func isStorageFailure(err error) bool { return errors.As(err, new(s3Failure)) }

// noSpace reports a full storage, or a file larger than it takes: the
// local failures whose own reply (452, 552) replaces the generic 451 of a
// transfer.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// printable replaces control characters (C0, DEL and the C1 range U+0080 to
// U+009F) with '?', as vsftpd does: a name written into a reply or a
// listing must never end a line early (a CR LF inside a name would show as
// extra entries, or as a forged reply) or drive the client's terminal (ESC).
// Other bytes, invalid UTF-8 included, pass unchanged.
func printable(s string) string {
	if !hasControl(s) {
		return s
	}
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c < 0x20 || c == 0x7f:
			b[i] = '?'
		case c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			// U+0080..U+009F: two bytes become two '?', keeping the length.
			b[i], b[i+1] = '?', '?'
			i++
		}
	}
	return string(b)
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f {
			return true
		}
	}
	return false
}

// quotePath quotes a path for a 257 reply: embedded quotes are doubled
// (RFC 959 appendix II).
func quotePath(p string) string {
	return `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
}
