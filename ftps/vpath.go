package ftps

import (
	"errors"
	"path"
	"strings"
)

// maxPathLen bounds a client path; Linux's PATH_MAX is 4096.
const maxPathLen = 4096

// errBadPath is a path the client may not use (553 "File name not allowed.").
var errBadPath = errors.New("invalid path")

// vpath is a resolved client path.
type vpath struct {
	virt string // as the client sees it: "/"-rooted and clean
	name string // relative to the home, for the storage ("." for the home)
}

// resolve resolves arg against the session's working directory.
func (s *session) resolve(arg string) (vpath, error) {
	virt, name, err := resolve(s.cwd, arg)
	return vpath{virt, name}, err
}

// resolve turns a client path argument into the virtual path the client sees
// (always "/"-rooted and clean) and the name relative to the user's os.Root
// ("." for the home itself). ".." cannot climb above "/" because the path is
// cleaned as if rooted; the os.Root is the second line of defence (symlinks).
func resolve(cwd, arg string) (virt, rel string, err error) {
	if len(arg) > maxPathLen || strings.ContainsAny(arg, "\x00\r\n") {
		return "", "", errBadPath
	}
	p := arg
	if !strings.HasPrefix(p, "/") {
		p = cwd + "/" + p
	}
	virt = path.Clean("/" + p)
	if virt == "/" {
		return virt, ".", nil
	}
	return virt, virt[1:], nil
}
