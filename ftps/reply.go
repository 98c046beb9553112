package ftps

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"syscall"
)

// reply is one FTP reply. Text may hold several lines (separated by "\n");
// it is then sent in the RFC 959 multi-line form. The text never carries an
// internal error: those go to the log.
type reply struct {
	code int
	text string
}

// noReply is returned by handlers that already answered (or closed).
var noReply = reply{}

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

// fsReply maps a file-system error to a reply without leaking its text.
func fsReply(err error) reply {
	// Errno first: ENOTEMPTY also matches fs.ErrExist.
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOTDIR:
			return reply{550, "Not a directory."}
		case syscall.EISDIR:
			return reply{550, "Is a directory."}
		case syscall.ENOTEMPTY:
			return reply{550, "Directory not empty."}
		case syscall.ENOSPC, syscall.EDQUOT:
			return reply{452, "Insufficient storage space."}
		case syscall.ENAMETOOLONG:
			return reply{553, "File name too long."}
		case syscall.ELOOP:
			return replyNoPerm
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return reply{550, "No such file or directory."}
	case errors.Is(err, fs.ErrExist):
		return reply{550, "File exists."}
	}
	// Permission errors, escapes from the os.Root ("path escapes from
	// parent") and anything unexpected: refuse without detail.
	return replyNoPerm
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
