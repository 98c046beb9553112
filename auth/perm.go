package auth

import (
	"fmt"
	"strings"
)

// Perm is a set of permissions a user has inside the home directory.
type Perm uint8

// The permissions, in the order [Perm.String] lists them.
const (
	PermList   Perm = 1 << iota // list directories (LIST, MLSD, NLST, MLST, SIZE, MDTM)
	PermRead                    // download files (RETR)
	PermWrite                   // upload, append and overwrite files (STOR, APPE)
	PermDelete                  // remove files and directories (DELE, RMD)
	PermMkdir                   // create directories (MKD)
	PermRename                  // rename files and directories (RNFR/RNTO)
)

// permAll is every defined permission; the name "all" in a configuration.
const permAll = PermList | PermRead | PermWrite | PermDelete | PermMkdir | PermRename

// permNames are the configuration names, in bit order.
var permNames = [...]string{"list", "read", "write", "delete", "mkdir", "rename"}

// permWant is the hint appended to an unknown permission name.
const permWant = "want list, read, write, delete, mkdir, rename or all"

// ParsePerms turns configuration names ("list", "read", "write", "delete",
// "mkdir", "rename", or "all" for every permission) into a Perm. Names are
// case-sensitive; repeating a name is allowed. An empty list is no permission.
func ParsePerms(names []string) (Perm, error) {
	var p Perm
	for _, name := range names {
		q, ok := permByName(name)
		if !ok {
			return 0, fmt.Errorf("%q is not a permission (%s)", name, permWant)
		}
		p |= q
	}
	return p, nil
}

func permByName(name string) (Perm, bool) {
	if name == "all" {
		return permAll, true
	}
	for i, n := range permNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Has reports whether every permission in q is also in p.
func (p Perm) Has(q Perm) bool { return p&q == q }

// String lists the permissions in p as comma-separated configuration names in
// the order of the constants ("list,read,write"). The empty set is "". Bits
// that are no defined permission are shown as a trailing "Perm(0x..)".
func (p Perm) String() string {
	var parts []string
	for i, n := range permNames {
		if p&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if rest := p &^ permAll; rest != 0 {
		parts = append(parts, fmt.Sprintf("Perm(%#x)", uint8(rest)))
	}
	return strings.Join(parts, ",")
}
