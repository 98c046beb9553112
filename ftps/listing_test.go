package ftps

import (
	"io/fs"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
)

type fakeInfo struct {
	name string
	size int64
	mode fs.FileMode
	mt   time.Time
}

func (f fakeInfo) Name() string { return f.name }

func (f fakeInfo) Size() int64 { return f.size }

func (f fakeInfo) Mode() fs.FileMode { return f.mode }

func (f fakeInfo) ModTime() time.Time { return f.mt }

func (f fakeInfo) IsDir() bool { return f.mode.IsDir() }

func (f fakeInfo) Sys() any { return nil }

func TestListingFormats(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	recent := fakeInfo{"a.txt", 1234, 0o644, time.Date(2026, 11, 1, 9, 5, 0, 0, time.UTC)}
	old := fakeInfo{"old", 0, fs.ModeDir | 0o755, time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)}
	tests := []struct{ got, want string }{
		{listLine(recent, "a.txt", now), "-rw-r--r-- 1 ftp ftp         1234 Nov  1 09:05 a.txt"},
		{listLine(old, "old", now), "drwxr-xr-x 1 ftp ftp            0 Feb  3  2020 old"},
		{mlsxLine(recent, "a.txt", allFacts, auth.PermRead|auth.PermDelete, 0), "type=file;size=1234;modify=20261101090500;perm=rd; a.txt"},
		{mlsxLine(old, "old", factType|factPerm, auth.PermList|auth.PermMkdir|auth.PermRename, 0), "type=dir;perm=elmf; old"},
		// Object storage: no append, no directory rename, no time for a prefix.
		{mlsxLine(recent, "a.txt", factPerm, everyPerm, opAppend|opRenameDir), "perm=rwdf; a.txt"},
		{mlsxLine(&s3Info{name: "d", dir: true}, "d", allFacts, everyPerm, opAppend|opRenameDir), "type=dir;perm=elcmdp; d"},
		{listLine(&s3Info{name: "d", dir: true}, "d", now), "drwxr-xr-x 1 ftp ftp            0 Jan  1  1970 d"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got  %q\nwant %q", tt.got, tt.want)
		}
	}
}

func TestParseFactsAndTimeVal(t *testing.T) {
	f := parseFacts("Type;SIZE;bogus;")
	if f != factType|factSize || f.String() != "type;size;" {
		t.Errorf("parseFacts = %v %q", f, f.String())
	}
	tv, err := parseTimeVal("20260102030405.5")
	if err != nil || !tv.Equal(time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC)) {
		t.Errorf("parseTimeVal = %v, %v", tv, err)
	}
	for _, bad := range []string{"2026", "20261302030405", "20260102030405.x"} {
		if _, err := parseTimeVal(bad); err == nil {
			t.Errorf("parseTimeVal(%q) accepted", bad)
		}
	}
}

func TestListArg(t *testing.T) {
	tests := map[string]string{"": "", "-la": "", "-la dir": "dir", "-a -l x y": "x y", "dir": "dir"}
	for in, want := range tests {
		if got := listArg(in); got != want {
			t.Errorf("listArg(%q) = %q, want %q", in, got, want)
		}
	}
}

// everyPerm is "all" in a user's permissions.
const everyPerm = auth.PermList | auth.PermRead | auth.PermWrite | auth.PermDelete | auth.PermMkdir | auth.PermRename
