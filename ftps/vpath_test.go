package ftps

import (
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		cwd, arg  string
		virt, rel string
		err       bool
	}{
		{"/", "a.txt", "/a.txt", "a.txt", false},
		{"/", "/", "/", ".", false},
		{"/", ".", "/", ".", false},
		{"/sub", "a", "/sub/a", "sub/a", false},
		{"/sub", "..", "/", ".", false},
		{"/", "../../etc/passwd", "/etc/passwd", "etc/passwd", false},
		{"/sub", "/../../x", "/x", "x", false},
		{"/a", "b/../../../c", "/c", "c", false},
		{"/", "//x//y/", "/x/y", "x/y", false},
		{"/", `a\b`, `/a\b`, `a\b`, false},
		{"/", "a\x00b", "", "", true},
		{"/", "a\nb", "", "", true},
		{"/", strings.Repeat("a", maxPathLen+1), "", "", true},
	}
	for _, tt := range tests {
		virt, rel, err := resolve(tt.cwd, tt.arg)
		if (err != nil) != tt.err || virt != tt.virt || rel != tt.rel {
			t.Errorf("resolve(%q, %q) = %q, %q, %v; want %q, %q, err=%t", tt.cwd, tt.arg, virt, rel, err, tt.virt, tt.rel, tt.err)
		}
	}
}
