package auth

import (
	"strings"
	"testing"
)

func TestParsePerms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		names   []string
		want    Perm
		wantErr string
	}{
		{nil, 0, ""},
		{[]string{}, 0, ""},
		{[]string{"list"}, PermList, ""},
		{[]string{"list", "read"}, PermList | PermRead, ""},
		{[]string{"read", "list", "read"}, PermList | PermRead, ""},
		{[]string{"write", "delete", "mkdir", "rename"}, PermWrite | PermDelete | PermMkdir | PermRename, ""},
		{[]string{"all"}, PermList | PermRead | PermWrite | PermDelete | PermMkdir | PermRename, ""},
		{[]string{"list", "all"}, permAll, ""},
		{[]string{"exec"}, 0, `"exec" is not a permission (want list, read, write, delete, mkdir, rename or all)`},
		{[]string{"list", "LIST"}, 0, `"LIST" is not a permission`},
		{[]string{""}, 0, `"" is not a permission`},
		{[]string{" read"}, 0, `" read" is not a permission`},
	} {
		got, err := ParsePerms(tc.names)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePerms(%q) = %v, %v; want error %q", tc.names, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePerms(%q) = %v, %v; want %v", tc.names, got, err, tc.want)
		}
	}
}

func TestPermHas(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p, q Perm
		want bool
	}{
		{PermList | PermRead, PermRead, true},
		{PermList | PermRead, PermList | PermRead, true},
		{PermList | PermRead, PermList | PermWrite, false},
		{PermList, PermRead, false},
		{0, PermList, false},
		{0, 0, true},
		{permAll, PermRename | PermMkdir, true},
	} {
		if got := tc.p.Has(tc.q); got != tc.want {
			t.Errorf("%q.Has(%q) = %v; want %v", tc.p, tc.q, got, tc.want)
		}
	}
}

func TestPermString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p    Perm
		want string
	}{
		{0, ""},
		{PermRead, "read"},
		{PermRename | PermList, "list,rename"},
		{permAll, "list,read,write,delete,mkdir,rename"},
		{PermList | 0x80, "list,Perm(0x80)"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("Perm(%#x).String() = %q; want %q", uint8(tc.p), got, tc.want)
		}
	}
	// String and ParsePerms agree.
	for p := Perm(0); p <= permAll; p++ {
		var names []string
		if s := p.String(); s != "" {
			names = strings.Split(s, ",")
		}
		if got, err := ParsePerms(names); err != nil || got != p {
			t.Errorf("ParsePerms(%q) = %v, %v; want %#x", names, got, err, uint8(p))
		}
	}
}
