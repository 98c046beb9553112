package ftps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/ftpsd/ftpsd/passive"
)

// dataChannel is where a transfer's data connection comes from: a passive
// listener (PASV, EPSV) or an active target (PORT, EPRT). Accept returns
// a connection that passed the peer and TLS-resumption checks.
type dataChannel interface {
	Accept(ctx context.Context, secure bool) (net.Conn, error)
	Close() error
}

// dropData closes the session's pending data channel, if any: a new
// PASV, EPSV, PORT or EPRT replaces the previous one.
func (s *session) dropData() {
	if s.data != nil {
		s.data.Close()
		s.data = nil
	}
}

// openPassive replaces the session's data channel with a new passive
// listener.
func (s *session) openPassive() (*passive.Listener, error) {
	s.dropData()
	l, err := s.binding.Listen()
	if err != nil {
		if errors.Is(err, passive.ErrNoPorts) {
			s.log.Warn("passive ports exhausted")
			return nil, err
		}
		s.log.Error("passive listen failed", "err", err)
		return nil, replyError{reply{425, "Cannot open passive connection."}}
	}
	s.data = l
	return l, nil
}

func (s *session) cmdPASV(request) result {
	if s.epsvAll {
		return say(reply{503, "EPSV ALL in effect; use EPSV."})
	}
	addr := s.binding.PassiveAddr(s.ctx)
	if !addr.Is4() || !s.remote.Addr().Is4() {
		return say(reply{522, "PASV is IPv4 only; use EPSV."})
	}
	l, err := s.openPassive()
	if err != nil {
		return fail(err)
	}
	a, p := addr.As4(), l.Port()
	return say(reply{227, fmt.Sprintf("Entering Passive Mode (%d,%d,%d,%d,%d,%d).", a[0], a[1], a[2], a[3], p>>8, p&0xFF)})
}

func (s *session) cmdEPSV(r request) result {
	switch strings.ToUpper(strings.TrimSpace(r.arg)) {
	case "":
	case "ALL":
		s.epsvAll = true
		return say(reply{200, "EPSV ALL ok."})
	case "1":
		if !s.local.Addr().Is4() {
			return say(reply{522, "Network protocol not supported, use (2)"})
		}
	case "2":
		if !s.local.Addr().Is6() {
			return say(reply{522, "Network protocol not supported, use (1)"})
		}
	default:
		return say(replySyntax)
	}
	l, err := s.openPassive()
	if err != nil {
		return fail(err)
	}
	return say(reply{229, fmt.Sprintf("Entering Extended Passive Mode (|||%d|).", l.Port())})
}

func (s *session) cmdREST(r request) result {
	n, err := strconv.ParseInt(strings.TrimSpace(r.arg), 10, 64)
	if err != nil || n < 0 {
		return say(replySyntax)
	}
	s.restOffset = n
	return say(reply{350, "Restarting at " + strconv.FormatInt(n, 10) + ". Send STOR or RETR."})
}

// takeRest returns the REST offset and clears it: it applies to one
// transfer only.
func (s *session) takeRest() int64 {
	n := s.restOffset
	s.restOffset = 0
	return n
}

func (s *session) cmdABOR(request) result {
	if x := s.xfer; x != nil {
		x.cancel()
		s.waitTransfer() // its 426 (or 226) goes out before ours
		return say(reply{226, "ABOR successful."})
	}
	s.dropData()
	return say(reply{225, "No transfer to abort."})
}

func (s *session) modeName() string {
	if s.binary {
		return "BINARY"
	}
	return "ASCII"
}

func (s *session) cmdRETR(r request) result {
	f, fi, err := s.st.Open(r.path.name, r.offset)
	if err != nil {
		return fail(err)
	}
	run := func(x *transfer, dc *dataConn) reply {
		defer f.Close()
		side := &fileSide{}
		if _, err := copyData(dc, throttle(x.ctx, trackedReader{f, side}, x.rates...)); err != nil {
			return x.failed(err, side.err)
		}
		return reply{226, "Transfer complete."}
	}
	text := fmt.Sprintf("Opening %s mode data connection for %s (%d bytes).", s.modeName(), r.path.virt, fi.Size()-r.offset)
	return s.prepareTransfer("RETR "+r.path.virt, fileOp{path: r.path.virt}, text, run, func() { f.Close() })
}

func (s *session) cmdSTOR(r request) result { return s.store(r, "STOR") }
func (s *session) cmdAPPE(r request) result { return s.store(r, "APPE") }

// store implements STOR and APPE. An overwriting STOR writes a temporary
// file and replaces the target only after a complete transfer, so an
// aborted upload leaves the old version. A new file, APPE and REST+STOR
// write in place, so an interrupted upload can be resumed.
func (s *session) store(r request, verb string) result {
	p, offset := r.path, r.offset
	if p.name == "." || isTempName(path.Base(p.name)) {
		return fail(errBadPath)
	}
	if fi, err := s.st.Stat(path.Dir(p.name)); err != nil || !fi.IsDir() {
		return say(reply{553, "Directory does not exist."})
	}
	fi, err := s.st.Stat(p.name)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	if exists && !fi.Mode().IsRegular() {
		return fail(errNotRegular)
	}
	up := &upload{st: s.st, name: p.name, created: !exists, size: r.size}
	// An ALLO size streams the upload to the store as it arrives, so the
	// store sees the client's pauses; a rate limit would make them long
	// enough for a store's own idle timeout (AWS: about 20 s).
	up.stream = s.limits == nil || s.limits.up.Limit() == rate.Inf && s.srv.totalUp.Limit() == rate.Inf
	if exists {
		up.old = fi.Size()
	}
	switch {
	case verb == "APPE":
		up.mode = writeAppend
		if err := s.st.Cannot(opAppend); err != nil {
			return fail(err) // before a data connection: the client reads it
		}
	case offset > 0 && (!exists || offset > fi.Size()):
		return fail(errBeyondEnd)
	case !exists:
		up.mode = writeNew
	case offset > 0:
		up.mode, up.offset = writeAt, offset
		if err := s.st.Cannot(opWriteAt); err != nil {
			return fail(err)
		}
	default:
		up.mode = writeReplace
	}
	if up.mode == writeReplace {
		// A replace renames a new file over the name itself: over a
		// symbolic link (which the quota does not count) it adds a file,
		// and the link's target keeps its bytes.
		if lfi, err := s.st.Lstat(p.name); err == nil && !lfi.Mode().IsRegular() {
			up.old, up.created = 0, true
		}
	}
	if q := s.quota(); q != nil {
		// Refuse at once what could not store a byte; the rest is counted
		// as it arrives.
		if err := q.check(up.created, up.mode != writeReplace && up.mode != writeAt); err != nil {
			return fail(err)
		}
		up.q = q
	}
	run := func(x *transfer, dc *dataConn) reply { return x.receive(dc, up) }
	return s.prepareTransfer(verb+" "+p.virt, fileOp{path: p.virt, upload: true}, "Ok to send data.", run, nil)
}

// cmdSTOU stores under a unique name: the name is chosen and the file
// created in one step (O_EXCL), before the 150 announces it, so two
// concurrent STOUs can never be promised the same name.
func (s *session) cmdSTOU(r request) result {
	q := s.quota()
	if q != nil {
		if err := q.check(true, true); err != nil {
			return fail(err)
		}
	}
	p, w, err := s.createUnique(r.arg)
	if err != nil {
		return fail(err)
	}
	up := &upload{st: s.st, name: p.name, mode: writeNew, w: w, created: true, q: q}
	st := s.st
	abandon := func() {
		// No data connection came: the empty file is not an upload. It is
		// removed only if it is still ours and empty: another session of
		// the account may have put a file under the name meanwhile.
		mine, err1 := w.Stat()
		now, err2 := st.Lstat(p.name)
		w.Cancel()
		if err1 == nil && err2 == nil && os.SameFile(mine, now) && now.Size() == 0 {
			st.Remove(p.name)
		}
	}
	run := func(x *transfer, dc *dataConn) reply { return x.receive(dc, up) }
	return s.prepareTransfer("STOU "+p.virt, fileOp{path: p.virt, upload: true}, "FILE: "+path.Base(p.virt), run, abandon)
}

// createUnique creates a new file named after base (default
// "ftpsd-upload"), adding ".1", ".2"... while the name is taken.
func (s *session) createUnique(base string) (vpath, fileWriter, error) {
	base = strings.TrimSpace(base)
	if base == "" {
		base = "ftpsd-upload"
	}
	for i := range 100 {
		name := base
		if i > 0 {
			name = base + "." + strconv.Itoa(i)
		}
		p, err := s.resolve(name)
		if err != nil {
			return p, nil, err
		}
		if p.name == "." || isTempName(path.Base(p.name)) {
			return p, nil, errBadPath
		}
		w, err := s.st.Write(p.name, writeNew, 0)
		switch {
		case err == nil:
			return p, w, nil
		case errors.Is(err, fs.ErrNotExist):
			return p, nil, replyError{reply{553, "Directory does not exist."}}
		case !errors.Is(err, fs.ErrExist):
			return p, nil, err
		}
	}
	return vpath{}, nil, replyError{reply{553, "Could not find a unique file name."}}
}

func (s *session) cmdLIST(r request) result { return s.list(r, formatLIST) }
func (s *session) cmdNLST(r request) result { return s.list(r, formatNLST) }
func (s *session) cmdMLSD(r request) result { return s.list(r, formatMLSD) }

func (s *session) list(r request, format listFormat) result {
	p := r.path
	fi, err := s.st.Stat(p.name)
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() && format == formatMLSD {
		return say(reply{501, "Not a directory; use MLST."})
	}
	// The directory is opened before the 150: a store that fails gets its
	// reply (451) without a data connection.
	var d dirLister
	var abandon func()
	if fi.IsDir() {
		if d, err = s.st.ReadDir(p.name); err != nil {
			return fail(err)
		}
		abandon = func() { d.Close() }
	}
	l := s.lister(format)
	run := func(x *transfer, dc *dataConn) reply {
		bw := bufio.NewWriterSize(dc, 32<<10)
		var err error
		if d != nil {
			defer d.Close()
			err = l.writeFrom(x.ctx, bw, d)
		} else if format == formatNLST {
			_, err = io.WriteString(bw, printable(p.virt)+"\r\n")
		} else {
			_, err = io.WriteString(bw, listLine(fi, printable(path.Base(p.virt)), time.Now())+"\r\n")
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			var pe *fs.PathError
			var localErr error
			if errors.As(err, &pe) {
				localErr = err
			}
			return x.failed(err, localErr)
		}
		return reply{226, "Directory send OK."}
	}
	return s.prepareTransfer("LIST "+p.virt, fileOp{}, "Here comes the directory listing.", run, abandon)
}
