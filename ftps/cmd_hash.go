package ftps

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// HASH (draft-bryan-ftpext-hash-02): the digest of a file, computed on the
// server so a client can verify a transfer without downloading it again.
//
//	C> OPTS HASH SHA-512      S> 200 SHA-512
//	C> HASH dir/file.iso      S> 213 SHA-512 0-1048575 9b71d2... dir/file.iso
//
// A HASH runs like a transfer without a data connection (session.prepareJob):
// in its own goroutine, one at a time per session, cancelled by ABOR (426,
// then ABOR's 226), QUIT, a disconnect or a shutdown, and at most
// server.max_hashes at a time server-wide (450 beyond, which the draft
// calls transient). RANG (partial hashes) is not implemented: it would
// change RETR and STOR too, and no client we target sends it.

// hashAlg is one algorithm HASH can use.
type hashAlg struct {
	name string // the IANA "Hash Function Textual Name", upper case
	new  func() hash.Hash
}

// hashAlgs lists the algorithms in FEAT order; the first is the default
// (a session's hashAlg is an index into it).
var hashAlgs = []hashAlg{
	{"SHA-256", sha256.New},
	{"SHA-512", sha512.New},
	{"SHA-1", sha1.New},
	{"MD5", md5.New},
	{"CRC32", func() hash.Hash { return crc32.NewIEEE() }},
}

// hashFeat is the FEAT line's list, the selected algorithm marked with
// "*", each name followed by ";" as the draft's ABNF has it.
func hashFeat(selected int) string {
	var b strings.Builder
	for i, a := range hashAlgs {
		b.WriteString(a.name)
		if i == selected {
			b.WriteByte('*')
		}
		b.WriteByte(';')
	}
	return b.String()
}

// optsHash answers OPTS HASH [name]: the selection, or a new one.
func (s *session) optsHash(value string) result {
	value = strings.TrimSpace(value)
	if value == "" {
		return say(reply{200, hashAlgs[s.hashAlg].name})
	}
	for i, a := range hashAlgs {
		if strings.EqualFold(a.name, value) {
			s.hashAlg = i
			return say(reply{200, a.name})
		}
	}
	return say(reply{501, "Unknown algorithm, current selection not changed."})
}

var (
	replyHashBusy = reply{450, "Too many HASH commands running on the server; try again later."}
	replyHashDir  = reply{553, "Not a regular file."} // the draft's code for a directory
)

// cmdHASH opens the file now, so that a missing or unreadable file is
// answered at once, and hashes it in a job.
func (s *session) cmdHASH(r request) result {
	if !s.srv.acquireHash(s.cfg.MaxHashes) {
		s.log.Info("HASH refused: server.max_hashes reached", "max", s.cfg.MaxHashes)
		return say(replyHashBusy)
	}
	f, _, err := s.st.Open(r.path.name, 0)
	if err != nil {
		s.srv.releaseHash()
		if errors.Is(err, errNotRegular) {
			return say(replyHashDir)
		}
		return fail(err)
	}
	alg, name, srv, lims := hashAlgs[s.hashAlg], r.arg, s.srv, s.downloadLimiters()
	job := func(x *transfer) reply {
		defer srv.releaseHash()
		defer f.Close()
		h := alg.new()
		if _, err := copyData(h, countReader{hashSource(x.ctx, f, lims), &x.bytes}); err != nil {
			if x.ctx.Err() != nil {
				return reply{426, "HASH aborted."}
			}
			x.log.Error("local I/O error during HASH", "op", x.what, "err", err)
			return reply{451, "Local error; HASH aborted."}
		}
		// The range is the bytes hashed, both ends included (the draft's
		// "0-49" for 50 bytes); an empty file is "0-0".
		end := max(x.bytes.Load()-1, 0)
		return reply{213, fmt.Sprintf("%s 0-%d %x %s", alg.name, end, h.Sum(nil), name)}
	}
	return result{xfer: s.prepareJob("HASH "+r.path.virt, job)}
}

// hashSource is what a HASH reads: the file, ending as soon as ctx does
// (ABOR, disconnect, shutdown) rather than at the end of a big file.
// The user's download rate applies here (lims: the user's and the
// server's): reading for a HASH costs the disk and the CPU what a download
// of the file would.
func hashSource(ctx context.Context, f io.Reader, lims []*rate.Limiter) io.Reader {
	return throttle(ctx, ctxReader{ctx: ctx, r: f}, lims...)
}

// ctxReader checks its context before each read: a copy through it stops
// within one buffer of the context ending.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// countReader counts the bytes read, for STAT and the log while a job runs.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// prepareJob makes a transfer without a data connection: the control loop
// starts it as it starts a transfer, so the session's rules for transfers
// hold (only ABOR, STAT, NOOP and QUIT meanwhile; ABOR, a disconnect and a
// shutdown cancel it; the final reply comes from its goroutine). job gets
// only values fixed now and the transfer itself (its context, byte count
// and logger), and returns the final reply.
func (s *session) prepareJob(what string, job func(*transfer) reply) *transfer {
	x := &transfer{
		what:     what,
		log:      s.log,
		user:     s.user.Name,
		remote:   s.remote.Addr(),
		job:      job,
		finished: make(chan struct{}),
		done:     make(chan struct{}),
	}
	x.ctx, x.cancel = context.WithCancel(s.ctx)
	return x
}

// cancelJob cancels a running job, when the session ends (QUIT, server
// shutdown): unlike a transfer's, its result is of no use to a client that
// is leaving, and it may have far to go.
func (s *session) cancelJob() {
	if s.transferRunning() && s.xfer.job != nil {
		s.xfer.cancel()
	}
}

// acquireHash takes one of the limit server-wide HASH slots, if one is
// free.
func (s *Server) acquireHash(limit int) bool {
	if s.hashing.Add(1) > int32(limit) {
		s.hashing.Add(-1)
		return false
	}
	return true
}

func (s *Server) releaseHash() { s.hashing.Add(-1) }
