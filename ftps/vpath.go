package ftps

import (
	"errors"
	"path"
	"strings"
	"syscall"
)

// noBlock is added to every open of an existing path: opening a FIFO (or
// some device) a user placed in a home would otherwise block the session
// until someone writes to it, beyond the reach of any timeout. Regular
// files and directories ignore it; anything else is refused after Stat.
const noBlock = syscall.O_NONBLOCK

// maxPathLen bounds a client path; Linux's PATH_MAX is 4096.
const maxPathLen = 4096

var errBadPath = errors.New("invalid path")

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
