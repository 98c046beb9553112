package ftps

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/passive"
)

func TestReplyFormat(t *testing.T) {
	tests := []struct {
		r    reply
		want string
	}{
		{reply{200, "OK."}, "200 OK.\r\n"},
		{reply{211, "Features:\n UTF8\nEnd"}, "211-Features:\r\n UTF8\r\n211 End\r\n"},
		{reply{213, "Status:\n226 looks like a code\nEnd"}, "213-Status:\r\n 226 looks like a code\r\n213 End\r\n"},
	}
	for _, tt := range tests {
		if got := tt.r.format(); got != tt.want {
			t.Errorf("format(%v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestQuotePath(t *testing.T) {
	if got := quotePath(`/a "b"`); got != `"/a ""b"""` {
		t.Errorf("quotePath = %s", got)
	}
}

func TestErrReply(t *testing.T) {
	tests := []struct {
		err  error
		want reply
	}{
		{&fs.PathError{Op: "remove", Path: "d", Err: syscall.ENOTEMPTY}, reply{550, "Directory not empty."}},
		{&fs.PathError{Op: "mkdir", Path: "d", Err: syscall.EEXIST}, reply{550, "File exists."}},
		{&fs.PathError{Op: "open", Path: "d", Err: syscall.ENOENT}, reply{550, "No such file or directory."}},
		{&fs.PathError{Op: "write", Path: "d", Err: syscall.ENOSPC}, reply{452, "Insufficient storage space."}},
		{&fs.PathError{Op: "open", Path: "d", Err: syscall.EACCES}, replyNoPerm},
		{&fs.PathError{Op: "rmdir", Path: "d", Err: syscall.ENOTDIR}, reply{550, "Not a directory."}},
		{fmt.Errorf("open x: %w", errors.New("path escapes from parent")), replyNoPerm},
		{fmt.Errorf("wrapped: %w", replyError{reply{425, "Cannot open passive connection."}}), reply{425, "Cannot open passive connection."}},
		{errBadPath, reply{553, "File name not allowed."}},
		{errNotRegular, reply{550, "Not a regular file."}},
		{errBeyondEnd, reply{554, "Restart offset is beyond the end of the file."}},
		{fmt.Errorf("s3: append: %w", errors.ErrUnsupported), reply{502, "The server's storage cannot do this."}},
		{passive.ErrNoPorts, reply{425, "No free passive port; try again later."}},
		{passive.ErrNotResumed, replyNotResumed},
		{fmt.Errorf("%w: %w", passive.ErrConnect, syscall.ECONNREFUSED), reply{425, "Can't open data connection."}},
		{auth.ErrBlocked, reply{421, "Too many failed logins; try again later."}},
		{auth.ErrInvalidCredentials, reply{530, "Login incorrect."}},
	}
	for _, tt := range tests {
		if got := errReply(tt.err); got != tt.want {
			t.Errorf("errReply(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestErrReplyNeverLeaks(t *testing.T) {
	err := &fs.PathError{Op: "open", Path: "/secret/home/alice/x", Err: fs.ErrNotExist}
	r := errReply(err)
	if r.code != 550 || strings.Contains(r.text, "secret") {
		t.Errorf("errReply = %v", r)
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain name.txt", "plain name.txt"},
		{"été 日本", "été 日本"},
		{"evil\r\nphantom", "evil??phantom"},
		{"esc\x1b[2J", "esc?[2J"},
		{"nul\x00del\x7f", "nul?del?"},
		{"c1\u0085\u009b", "c1????"},
		{"latin \u00a0\u00e9", "latin \u00a0\u00e9"}, // U+00A0 and up are printable
		{"bad utf8 \xff\xc2", "bad utf8 \xff\xc2"},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Replies never carry a control byte, whatever their text holds.
	got := reply{250, "Deleted /a\x1bb\r.\n 213 forged"}.format()
	if want := "250-Deleted /a?b?.\r\n250  213 forged\r\n"; got != want {
		t.Errorf("format = %q, want %q", got, want)
	}
}
