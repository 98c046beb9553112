package ftps

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// s3Storage is a home in an S3 bucket: every name is a key under prefix.
// Directories are key prefixes; Mkdir writes a "dir/" marker object that
// listings hide. What objects cannot do (append, write at an offset, rename
// a directory, set a time) fails with errors.ErrUnsupported.
type s3Storage struct {
	// ctx is the session's: requests end with it.
	ctx    context.Context
	client *s3.Client
	bucket string
	// prefix is the home: "" (the whole bucket) or ends in "/".
	prefix string
	// partSize is the size of a multipart upload's first parts (a writer
	// holds two: one filling, one being sent); a smaller file is one PUT.
	// The size doubles every growEvery parts (default s3GrowEvery).
	partSize  int
	growEvery int
	maxParts  int   // default s3MaxParts
	copyMax   int64 // the largest single CopyObject, default s3MaxPut
	// listPage is ListObjectsV2's MaxKeys (0: the server's, 1000).
	listPage int32
	// timeout bounds a request that moves no file data, and the time a
	// transfer's request may go without progress (see stallGuard).
	timeout time.Duration
	// ignoreMFMT: MFMT succeeds without changing the time (mfmt = "ignore").
	ignoreMFMT bool
	log        *slog.Logger
}

// call is the context of one request that moves no file data.
func (s *s3Storage) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.timeout)
}

// longCall is the context of a request the server may take long to answer
// whatever the network: completing a multipart upload, a server-side copy.
func (s *s3Storage) longCall() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, 10*s.timeout)
}

// errStalled ends a request that made no progress for the timeout.
var errStalled = errors.New("no progress within storage.s3.timeout")

// stallGuard ends a request that moves file data (a GET's body, a part)
// when the store makes it wait for the timeout: a whole-request deadline
// would cut a slow but moving transfer of a big object. Its clock runs
// only while ftpsd waits on the store (armed), never while it waits on
// the FTP client or a rate limit.
type stallGuard struct {
	ctx    context.Context
	timer  *time.Timer
	cancel context.CancelCauseFunc
	d      time.Duration
}

// guard returns an armed guard under the session's context.
func (s *s3Storage) guard() (context.Context, *stallGuard) { return s.guardFrom(s.ctx) }

func (s *s3Storage) guardFrom(parent context.Context) (context.Context, *stallGuard) {
	ctx, cancel := context.WithCancelCause(parent)
	g := &stallGuard{ctx: ctx, cancel: cancel, d: s.timeout}
	g.timer = time.AfterFunc(s.timeout, func() { cancel(errStalled) })
	return ctx, g
}

// arm starts the clock again (ftpsd waits on the store, or the store has
// just moved data); disarm stops it.
func (g *stallGuard) arm()    { g.timer.Reset(g.d) }
func (g *stallGuard) disarm() { g.timer.Stop() }

// cause tells a stall from the context.Canceled it shows as.
func (g *stallGuard) cause(err error) error {
	if err != nil && !errors.Is(err, errStalled) && errors.Is(context.Cause(g.ctx), errStalled) {
		return fmt.Errorf("%w: %w", errStalled, err)
	}
	return err
}

func (g *stallGuard) stop() {
	g.timer.Stop()
	g.cancel(nil)
}

// guardedBody is a part's body: each read by the HTTP client is progress.
// It keeps bytes.Reader's Seek, which signing and retries need.
type guardedBody struct {
	*bytes.Reader
	g *stallGuard
}

func (b guardedBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	b.g.arm() // the store took data: its clock starts again
	return n, err
}

// s3Body is a GET's body being sent to the client. A failure to read it
// is the store's (451), not the data connection's. The clock runs only
// inside Read: a slow client or a rate limit is not the store's stall.
type s3Body struct {
	s    *s3Storage
	name string
	body io.ReadCloser
	g    *stallGuard
}

func (b *s3Body) Read(p []byte) (int, error) {
	b.g.arm()
	n, err := b.body.Read(p)
	b.g.disarm()
	if err != nil && err != io.EOF {
		err = b.s.s3Err("read", b.name, b.g.cause(err))
	}
	return n, err
}

func (b *s3Body) Close() error {
	b.g.stop()
	return b.body.Close()
}

// S3's limits on a multipart upload: the smallest part but the last, the
// largest part, and the most parts.
const (
	s3MinPart  = 5 << 20
	s3MaxPart  = 5 << 30
	s3MaxParts = 10_000
)

// s3GrowEvery is how many parts of one size an upload sends before it
// doubles the size: 10,000 parts of 8 MiB would stop an upload at 78 GiB,
// while this way a 100 GiB upload ends with parts of 64 MiB, and the
// first 7.8 GiB of every upload hold only two parts of the configured size.
const s3GrowEvery = 1000

// s3Key is the key of name, which must be clean and relative. ftps's
// virtual paths (vpath.go) are; this refuses anything else again, so that
// no key outside the prefix can be formed.
func (s *s3Storage) s3Key(name string) (string, error) {
	if name == "." || name == "" {
		return s.prefix, nil
	}
	if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") ||
		strings.ContainsRune(name, 0) || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", &fs.PathError{Op: "s3", Path: name, Err: fs.ErrInvalid}
	}
	for el := range strings.SplitSeq(name, "/") {
		if el == ".." || el == "." {
			return "", &fs.PathError{Op: "s3", Path: name, Err: fs.ErrInvalid}
		}
	}
	return s.prefix + name, nil
}

// s3Info describes an object or a prefix.
type s3Info struct {
	name  string
	size  int64
	mtime time.Time
	dir   bool
	etag  *string // from a HEAD: the version a copy must read
}

func (i *s3Info) Name() string       { return i.name }
func (i *s3Info) Size() int64        { return i.size }
func (i *s3Info) ModTime() time.Time { return i.mtime }
func (i *s3Info) IsDir() bool        { return i.dir }
func (i *s3Info) Sys() any           { return nil }
func (i *s3Info) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}

func baseName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// s3Err turns the errors of the S3 API that mean "no such key" into
// fs.ErrNotExist. Any other is logged, with a hint for the administrator,
// and becomes an s3Failure: 550 when the store denies access to the key,
// else 451 (the server unreachable, credentials refused): the client may
// retry, and the reply holds no detail.
func (s *s3Storage) s3Err(op, name string, err error) error {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	var ae smithy.APIError
	switch {
	case errors.As(err, &nf), errors.As(err, &nk):
		err = fs.ErrNotExist
	case errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey"):
		err = fs.ErrNotExist
	case s.ctx.Err() != nil:
		// The session ended (QUIT, a closed connection, shutdown).
		err = s3Failure{err: err}
	default:
		f := classifyS3(err)
		if s.log != nil {
			s.log.Warn("object storage error", "op", op, "bucket", s.bucket, "key", s.prefix+name, "hint", f.hint, "err", err)
		}
		err = f
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// s3Failure is an object store error other than a missing key. hint says
// what it likely means for the administrator; denied is an access refused
// by the store's policy (550) rather than a failure (451).
type s3Failure struct {
	err    error
	hint   string
	denied bool
}

func (e s3Failure) Error() string { return e.err.Error() }
func (e s3Failure) Unwrap() error { return e.err }

// s3Hints are the API error codes an administrator can act on.
var s3Hints = map[string]string{
	"InvalidAccessKeyId":    "credentials refused: the store does not know storage.s3.access_key_id",
	"SignatureDoesNotMatch": "credentials refused: the secret access key is wrong",
	"InvalidToken":          "credentials refused: the session token is invalid",
	"ExpiredToken":          "credentials refused: the session token has expired",
	"RequestTimeTooSkewed":  "this machine's clock is too far from the store's",
	"NoSuchBucket":          "the home's bucket does not exist",
	"AccessDenied":          "access denied by the store's policy for this key",
	"AllAccessDisabled":     "access denied by the store's policy for this key",
	// A HEAD's 403 has no body to name the cause.
	"Forbidden":          "the store answered 403 Forbidden: credentials refused, or access denied by its policy",
	"SlowDown":           "the store is throttling requests",
	"ServiceUnavailable": "the store is unavailable",
	"InternalError":      "the store failed",
}

// classifyS3 is the s3Failure of err.
func classifyS3(err error) s3Failure {
	f := s3Failure{err: err}
	var ae smithy.APIError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		f.hint = s3Hints[ae.ErrorCode()]
		f.denied = ae.ErrorCode() == "AccessDenied" || ae.ErrorCode() == "AllAccessDisabled"
		if f.hint == "" {
			f.hint = "the store refused the request (" + ae.ErrorCode() + ")"
		}
	case errors.Is(err, errStalled):
		f.hint = errStalled.Error()
	case errors.Is(err, context.DeadlineExceeded):
		f.hint = "no answer within storage.s3.timeout"
	case errors.As(err, &ne):
		f.hint = "cannot reach storage.s3.endpoint"
	}
	return f
}

func unsupported(op, name, why string) error {
	return &fs.PathError{Op: op, Path: name, Err: unsupportedError{why}}
}

// head stats the object of key, or returns fs.ErrNotExist.
func (s *s3Storage) head(name, key string) (*s3Info, error) {
	ctx, cancel := s.call()
	defer cancel()
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, s.s3Err("stat", name, err)
	}
	return &s3Info{name: baseName(name), size: aws.ToInt64(out.ContentLength), mtime: aws.ToTime(out.LastModified), etag: out.ETag}, nil
}

// dirKeys returns up to max keys under dir (a key ending in "/"): its
// marker, the objects in it and in its subdirectories.
func (s *s3Storage) dirKeys(dir string, max int32) ([]string, error) {
	ctx, cancel := s.call()
	defer cancel()
	out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: &s.bucket, Prefix: &dir, MaxKeys: aws.Int32(max),
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(out.Contents))
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys, nil
}

func (s *s3Storage) Stat(name string) (fs.FileInfo, error) {
	key, err := s.s3Key(name)
	if err != nil {
		return nil, err
	}
	if key == s.prefix {
		return &s3Info{name: ".", dir: true}, nil
	}
	fi, err := s.head(name, key)
	if err == nil {
		return fi, nil
	}
	if dir, derr := s.isPrefix(name, key, err); derr != nil || !dir {
		return nil, cmp.Or(derr, err)
	}
	return &s3Info{name: baseName(name), dir: true}, nil
}

// isPrefix tells, after headErr from the HEAD of key, whether key is a
// directory: a marker or any object under key/. A HEAD failure other than
// a missing object is returned as it is; so is a failure of the listing,
// which names the store's error where a HEAD's answer has no body.
func (s *s3Storage) isPrefix(name, key string, headErr error) (bool, error) {
	if !errors.Is(headErr, fs.ErrNotExist) {
		return false, headErr
	}
	keys, err := s.dirKeys(key+"/", 1)
	if err != nil {
		return false, s.s3Err("stat", name, err)
	}
	return len(keys) > 0, nil
}

// usage sums the objects under the home, for its user's quota: one flat
// listing, a page at a time. Directory markers are not files.
func (s *s3Storage) usage() (bytes, files int64, err error) {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &s.prefix})
	for p.HasMorePages() {
		ctx, cancel := s.call()
		out, err := p.NextPage(ctx)
		cancel()
		if err != nil {
			return bytes, files, s.s3Err("scan", ".", err)
		}
		for _, o := range out.Contents {
			if !strings.HasSuffix(aws.ToString(o.Key), "/") {
				bytes += aws.ToInt64(o.Size)
				files++
			}
		}
	}
	return bytes, files, nil
}

func (s *s3Storage) Lstat(name string) (fs.FileInfo, error) { return s.Stat(name) }

func (s *s3Storage) ReadDir(name string) (dirLister, error) {
	key, err := s.s3Key(name)
	if err != nil {
		return nil, err
	}
	dir := key
	if dir != "" && !strings.HasSuffix(dir, "/") {
		dir += "/"
	}
	// The first page now: a store that fails does so before the 150. A
	// page with anything in it (the marker included) is a directory; only
	// an empty one needs a Stat to tell an empty home, a missing name and
	// a file apart.
	l := &s3Lister{s: s, dir: dir}
	if err := l.fetch(); err != nil {
		return nil, err
	}
	if !l.sawAny && key != s.prefix {
		fi, err := s.Stat(name)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
		}
	}
	return l, nil
}

// s3Lister lists a prefix one ListObjectsV2 page at a time.
type s3Lister struct {
	s      *s3Storage
	dir    string
	token  *string
	buf    []fs.FileInfo
	done   bool
	sawAny bool // a page held a key or a prefix, the marker included
}

func (l *s3Lister) fetch() error {
	in := &s3.ListObjectsV2Input{
		Bucket: &l.s.bucket, Prefix: &l.dir, Delimiter: aws.String("/"), ContinuationToken: l.token,
	}
	if l.s.listPage > 0 {
		in.MaxKeys = aws.Int32(l.s.listPage)
	}
	ctx, cancel := l.s.call()
	defer cancel()
	out, err := l.s.client.ListObjectsV2(ctx, in)
	if err != nil {
		return l.s.s3Err("readdir", strings.TrimPrefix(l.dir, l.s.prefix), err)
	}
	for _, p := range out.CommonPrefixes {
		n := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(p.Prefix), l.dir), "/")
		if n != "" {
			l.buf = append(l.buf, &s3Info{name: n, dir: true})
		}
	}
	for _, o := range out.Contents {
		n := strings.TrimPrefix(aws.ToString(o.Key), l.dir)
		if n == "" {
			continue // the directory's own marker
		}
		l.buf = append(l.buf, &s3Info{name: n, size: aws.ToInt64(o.Size), mtime: aws.ToTime(o.LastModified)})
	}
	l.sawAny = l.sawAny || len(out.Contents) > 0 || len(out.CommonPrefixes) > 0
	l.token = out.NextContinuationToken
	l.done = !aws.ToBool(out.IsTruncated) || l.token == nil
	return nil
}

func (l *s3Lister) Next(n int) ([]fs.FileInfo, error) {
	for len(l.buf) == 0 {
		if l.done {
			return nil, io.EOF
		}
		if err := l.fetch(); err != nil {
			return nil, err
		}
	}
	if n <= 0 || n > len(l.buf) {
		n = len(l.buf)
	}
	out := l.buf[:n:n]
	l.buf = l.buf[n:]
	return out, nil
}

func (l *s3Lister) Close() error { return nil }

func (s *s3Storage) Open(name string, offset int64) (io.ReadCloser, fs.FileInfo, error) {
	key, err := s.s3Key(name)
	if err != nil {
		return nil, nil, err
	}
	if key == s.prefix {
		return nil, nil, errNotRegular
	}
	// One GetObject, which also describes the object: no HEAD before it
	// on every download.
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	ctx, g := s.guard()
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		err = g.cause(err)
		g.stop()
		return s.openFailed(name, key, offset, err)
	}
	g.disarm() // until the transfer reads
	fi := &s3Info{name: baseName(name), size: aws.ToInt64(out.ContentLength) + offset,
		mtime: aws.ToTime(out.LastModified), etag: out.ETag}
	return &s3Body{s: s, name: name, body: out.Body, g: g}, fi, nil
}

// openFailed is Open after its GetObject failed: a range that starts at
// or past the end (416) is an empty read or errBeyondEnd, which a HEAD
// tells apart; a missing key may be a directory.
func (s *s3Storage) openFailed(name, key string, offset int64, err error) (io.ReadCloser, fs.FileInfo, error) {
	var ae smithy.APIError
	if offset > 0 && errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
		fi, err := s.head(name, key)
		switch {
		case err != nil:
			return nil, nil, err
		case offset == fi.size:
			return io.NopCloser(strings.NewReader("")), fi, nil
		}
		return nil, nil, errBeyondEnd
	}
	err = s.s3Err("open", name, err)
	if dir, derr := s.isPrefix(name, key, err); derr != nil || dir {
		return nil, nil, cmp.Or(derr, errNotRegular)
	}
	return nil, nil, err
}

func (s *s3Storage) Write(name string, mode writeMode, offset int64) (fileWriter, error) {
	key, err := s.writable(name, mode)
	if err != nil {
		return nil, err
	}
	// The first buffer grows as data comes: a small file costs little.
	return &s3Writer{s: s, name: name, key: key, buf: make([]byte, 0, min(s3FirstBuf, s.partSize)), part: s.partSize, start: time.Now()}, nil
}

// writable checks that name may be written as mode says, and returns its
// key.
func (s *s3Storage) writable(name string, mode writeMode) (string, error) {
	key, err := s.s3Key(name)
	if err != nil {
		return "", err
	}
	switch mode {
	case writeAppend:
		return "", s.Cannot(opAppend)
	case writeAt:
		return "", s.Cannot(opWriteAt)
	case writeReplace:
		// The session chose a replace because the file exists and is
		// regular (it has just asked): no second HEAD. If it went away
		// meanwhile, the upload creates it.
		return key, nil
	}
	fi, err := s.Stat(name)
	switch {
	case err == nil && fi.IsDir():
		return "", &fs.PathError{Op: "create", Path: name, Err: syscall.EISDIR}
	case err == nil && mode == writeNew:
		return "", &fs.PathError{Op: "create", Path: name, Err: fs.ErrExist}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", err // the store failed: do not write blind
	}
	return key, nil
}

// s3Writer writes an object: one PUT when it fits in a part, else a
// multipart upload whose parts are sent as they fill, so that memory
// stays two parts. Until Commit the old object, if any, is untouched.
type s3Writer struct {
	s        *s3Storage
	name     string
	key      string
	buf      []byte
	part     int // the size of the part being filled
	uploadID *string
	parts    []types.CompletedPart
	// spare is the buffer of the part in flight, the next to fill.
	spare    []byte
	inflight chan error
	written  int64
	start    time.Time
	err      error
	ended    bool
}

// s3FirstBuf is the first capacity of an upload's buffer, which doubles
// up to a part as data comes.
const s3FirstBuf = 64 << 10

func (w *s3Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == cap(w.buf) && cap(w.buf) < w.part {
			w.buf = append(make([]byte, 0, min(2*cap(w.buf), w.part)), w.buf...)
		}
		c := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:c]...)
		p, n = p[c:], n+c
		if len(w.buf) == w.part {
			if w.err = w.flush(false); w.err != nil {
				return n, w.err
			}
		}
	}
	w.written += int64(n)
	return n, nil
}

// flush sends the buffer as the next part, starting the upload first.
// The part goes out in the background while the next one fills, so that
// receiving and sending overlap: memory is two parts at most. flush waits
// for the part before, and for this one too when wait is set.
func (w *s3Writer) flush(wait bool) error {
	if err := w.wait(); err != nil {
		return err
	}
	s := w.s
	if w.uploadID == nil {
		ctx, cancel := s.call()
		out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &w.key})
		cancel()
		if err != nil {
			return w.s.s3Err("upload", w.name, err)
		}
		w.uploadID = out.UploadId
	}
	if len(w.parts) >= cmp.Or(s.maxParts, s3MaxParts) {
		return &fs.PathError{Op: "upload", Path: w.name, Err: syscall.EFBIG}
	}
	num := int32(len(w.parts) + 1)
	w.parts = append(w.parts, types.CompletedPart{PartNumber: aws.Int32(num)})
	part := &w.parts[len(w.parts)-1]
	buf, done := w.buf, make(chan error, 1)
	go func() {
		// Not under the session's context: the upload ends by Commit or
		// Cancel (which waits for this part, then aborts), never with a
		// part cut short that the store might still keep.
		ctx, g := s.guardFrom(context.WithoutCancel(s.ctx))
		defer g.stop()
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &w.key, UploadId: w.uploadID, PartNumber: aws.Int32(num),
			Body: guardedBody{bytes.NewReader(buf), g}, ContentLength: aws.Int64(int64(len(buf))),
		})
		if err == nil {
			part.ETag = out.ETag
		}
		done <- g.cause(err)
	}()
	w.inflight = done
	next := w.part
	if len(w.parts)%s.grow() == 0 && next < s3MaxPart {
		next = min(2*next, s3MaxPart)
	}
	w.part = next
	fill := w.spare // the part before: sent, since wait returned
	if cap(fill) != next {
		fill = make([]byte, 0, next)
	}
	w.buf, w.spare = fill[:0], nil
	if cap(buf) == next {
		w.spare = buf
	}
	if wait {
		return w.wait()
	}
	return nil
}

// wait waits for the part in flight, if any.
func (w *s3Writer) wait() error {
	if w.inflight == nil {
		return nil
	}
	err := <-w.inflight
	w.inflight = nil
	if err != nil {
		return w.s.s3Err("upload", w.name, err)
	}
	return nil
}

func (s *s3Storage) grow() int { return cmp.Or(s.growEvery, s3GrowEvery) }

func (w *s3Writer) Commit() (int64, error) {
	if w.ended {
		return 0, errors.New("s3 write already ended")
	}
	w.ended = true
	s := w.s
	if w.err != nil {
		w.abort()
		return 0, w.err
	}
	// All the data has arrived: the commit goes on if the session ends
	// meanwhile (a request cut short could leave a short object on a
	// store that publishes what it got; Content-MD5 makes it refuse).
	done := context.WithoutCancel(s.ctx)
	if w.uploadID == nil {
		ctx, g := s.guardFrom(done)
		sum := md5.Sum(w.buf)
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &w.key, Body: guardedBody{bytes.NewReader(w.buf), g}, ContentLength: aws.Int64(int64(len(w.buf))),
			ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		})
		err = g.cause(err)
		g.stop()
		w.buf = nil
		if err != nil {
			return 0, w.s.s3Err("put", w.name, err)
		}
		return w.written, nil
	}
	err := w.wait()
	if err == nil && len(w.buf) > 0 {
		err = w.flush(true)
	}
	if err != nil {
		w.abort()
		return 0, err
	}
	w.buf, w.spare = nil, nil
	if err := w.complete(); err != nil {
		return 0, err
	}
	return w.written, nil
}

// complete publishes the multipart upload of w.parts, or aborts it. All
// the data has arrived: it goes on if the session ends meanwhile.
func (w *s3Writer) complete() error {
	s := w.s
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*s.timeout)
	defer cancel()
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &w.key, UploadId: w.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	})
	if err != nil {
		w.abort()
		return s.s3Err("upload", w.name, err)
	}
	return nil
}

// abort drops a multipart upload's parts; the old object stays.
func (w *s3Writer) abort() {
	w.wait()
	w.buf, w.spare = nil, nil
	if w.uploadID == nil {
		return
	}
	w.s.abortUpload(w.name, w.key, w.uploadID)
	w.uploadID = nil
}

// s3AbortChecks are when an aborted upload is looked for again: a part
// the store was still receiving when its request was cut can land after
// the abort and bring the upload back (AWS documents it), holding space
// that no quota counts.
var s3AbortChecks = []time.Duration{200 * time.Millisecond, time.Second, 3 * time.Second}

// abortUpload aborts a multipart upload, then checks in the background
// that it stays gone, aborting it again while it shows up. Not under the
// session's context: a session that ended still cleans up.
func (s *s3Storage) abortUpload(name, key string, id *string) {
	ctx := context.WithoutCancel(s.ctx)
	abort := func() error {
		actx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		_, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: id})
		return err
	}
	if err := abort(); err != nil && !isNoSuchUpload(err) {
		s.s3Err("abort", name, err)
	}
	go func() {
		for _, d := range s3AbortChecks {
			time.Sleep(d)
			lctx, cancel := context.WithTimeout(ctx, s.timeout)
			_, err := s.client.ListParts(lctx, &s3.ListPartsInput{Bucket: &s.bucket, Key: &key, UploadId: id, MaxParts: aws.Int32(1)})
			cancel()
			if isNoSuchUpload(err) {
				return
			}
			abort()
		}
		if s.log != nil {
			s.log.Warn("aborted multipart upload still present; the store's lifecycle rule (AbortIncompleteMultipartUpload) will remove it",
				"bucket", s.bucket, "key", key, "upload_id", aws.ToString(id))
		}
	}()
}

func isNoSuchUpload(err error) bool {
	var nu *types.NoSuchUpload
	var ae smithy.APIError
	return errors.As(err, &nu) || errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}

// Cancel and Discard both leave no trace: nothing is visible before Commit.
func (w *s3Writer) Cancel() {
	if !w.ended {
		w.ended = true
		w.abort()
	}
}

func (w *s3Writer) Discard()        { w.Cancel() }
func (w *s3Writer) Resumable() bool { return false }

func (w *s3Writer) Stat() (fs.FileInfo, error) {
	return &s3Info{name: baseName(w.name), size: w.written, mtime: w.start}, nil
}

func (s *s3Storage) Rename(from, to string) error {
	fkey, err := s.s3Key(from)
	if err != nil {
		return err
	}
	tkey, err := s.s3Key(to)
	if err != nil {
		return err
	}
	if fkey == s.prefix || tkey == s.prefix {
		return unsupported("rename", from, "The home directory cannot be renamed.")
	}
	if fkey == tkey {
		// A copy onto itself then a delete would lose the file.
		_, err := s.Stat(from)
		return err
	}
	fi, err := s.Stat(from)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return s.Cannot(opRenameDir)
	}
	if tfi, err := s.Stat(to); err == nil && tfi.IsDir() {
		return &fs.PathError{Op: "rename", Path: to, Err: syscall.EISDIR}
	}
	if err := s.parentIsDir("rename", to); err != nil {
		return err
	}
	if err := s.copyObject(fkey, tkey, fi.Size(), fi.(*s3Info).etag); err != nil {
		return s.s3Err("rename", from, err)
	}
	ctx, cancel := s.call()
	defer cancel()
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fkey}); err != nil {
		return s.s3Err("rename", from, err)
	}
	return nil
}

// copyObject copies the object of fkey, of size bytes, to tkey, inside the
// store. With etag (from the HEAD that decided the rename), the copy reads
// only that version: if another session or node replaced the source
// meanwhile, it fails rather than copy a mix or another file.
func (s *s3Storage) copyObject(fkey, tkey string, size int64, etag *string) error {
	// CopySource is bucket/key, URL-encoded (a key may hold "?" or "%").
	src := url.PathEscape(s.bucket) + "/" + escapeKey(fkey)
	if size > cmp.Or(s.copyMax, s3MaxPut) {
		return s.copyParts(src, tkey, size, etag)
	}
	ctx, cancel := s.longCall()
	defer cancel()
	_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &s.bucket, Key: &tkey, CopySource: &src, CopySourceIfMatch: etag})
	return err
}

// copyParts copies an object larger than one CopyObject may (5 GiB) as a
// multipart upload of ranges the store copies itself (UploadPartCopy):
// nothing passes through ftpsd. A failure aborts the upload, and the
// target, if it existed, stays as it was.
func (s *s3Storage) copyParts(src, tkey string, size int64, etag *string) error {
	// Few requests, each well under the 5 GiB a part may be. (A test sets
	// copyMax, and gets parts of partSize.)
	part := max(512<<20, (size+s3MaxParts-1)/s3MaxParts)
	if s.copyMax > 0 {
		part = int64(s.partSize)
	}
	ctx, cancel := s.call()
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &tkey})
	cancel()
	if err != nil {
		return err
	}
	w := &s3Writer{s: s, key: tkey, uploadID: up.UploadId}
	for off := int64(0); off < size; off += part {
		num := aws.Int32(int32(off/part + 1))
		ctx, cancel := s.longCall()
		out, err := s.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &s.bucket, Key: &tkey, UploadId: up.UploadId, PartNumber: num, CopySource: &src,
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, min(off+part, size)-1)), CopySourceIfMatch: etag,
		})
		cancel()
		if err != nil {
			w.abort()
			return err
		}
		w.parts = append(w.parts, types.CompletedPart{PartNumber: num, ETag: out.CopyPartResult.ETag})
	}
	ctx, cancel = s.longCall()
	defer cancel()
	if _, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &tkey, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	}); err != nil {
		w.abort()
		return err
	}
	return nil
}

// escapeKey URL-encodes each element of a key, keeping the slashes: every
// byte but the unreserved ones, as S3 wants a copy source (url.PathEscape
// would leave "+", which a store decodes as a space: another object).
func escapeKey(key string) string {
	els := strings.Split(key, "/")
	for i, e := range els {
		els[i] = strings.ReplaceAll(url.QueryEscape(e), "+", "%20")
	}
	return strings.Join(els, "/")
}

func (s *s3Storage) Remove(name string) error {
	key, err := s.s3Key(name)
	if err != nil {
		return err
	}
	if key == s.prefix {
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.EISDIR}
	}
	if _, err := s.head(name, key); err != nil {
		if dir, derr := s.isPrefix(name, key, err); derr != nil || dir {
			return cmp.Or(derr, error(&fs.PathError{Op: "remove", Path: name, Err: syscall.EISDIR}))
		}
		return err
	}
	ctx, cancel := s.call()
	defer cancel()
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
		return s.s3Err("remove", name, err)
	}
	return nil
}

func (s *s3Storage) Mkdir(name string) error {
	key, err := s.s3Key(name)
	if err != nil {
		return err
	}
	if _, err := s.Stat(name); err == nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
	}
	if err := s.parentIsDir("mkdir", name); err != nil {
		return err
	}
	marker := key + "/"
	ctx, cancel := s.call()
	defer cancel()
	if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &marker, Body: bytes.NewReader(nil), ContentLength: aws.Int64(0),
	}); err != nil {
		return s.s3Err("mkdir", name, err)
	}
	return nil
}

// parentIsDir checks that the directory name would go in exists, as a
// file system would: a key under a missing prefix would make the prefix
// appear as a directory.
func (s *s3Storage) parentIsDir(op, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	fi, err := s.Stat(dir)
	switch {
	case err != nil:
		return err
	case !fi.IsDir():
		return &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
	}
	return nil
}

func (s *s3Storage) Rmdir(name string) error {
	key, err := s.s3Key(name)
	if err != nil {
		return err
	}
	if key == s.prefix {
		return &fs.PathError{Op: "rmdir", Path: name, Err: fs.ErrPermission}
	}
	fi, err := s.Stat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: name, Err: syscall.ENOTDIR}
	}
	marker := key + "/"
	keys, err := s.dirKeys(marker, 2)
	if err != nil {
		return s.s3Err("rmdir", name, err)
	}
	for _, k := range keys {
		if k != marker {
			return &fs.PathError{Op: "rmdir", Path: name, Err: syscall.ENOTEMPTY}
		}
	}
	ctx, cancel := s.call()
	defer cancel()
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &marker}); err != nil {
		return s.s3Err("rmdir", name, err)
	}
	return nil
}

// Chtimes cannot set a time: the store sets it. With mfmt = "ignore" it
// only checks that name exists, and MFMT answers with the time the object
// keeps.
func (s *s3Storage) Chtimes(name string, _ time.Time) error {
	if err := s.Cannot(opSetTimes); err != nil {
		return err
	}
	fi, err := s.Stat(name)
	if err == nil && fi.IsDir() {
		return unsupported("chtimes", name, "Object storage keeps no time for a directory (MFMT).")
	}
	return err
}

// Cannot: objects cannot be appended to, written at an offset, renamed as
// a tree, or given a time (unless mfmt = "ignore").
func (s *s3Storage) Cannot(op operation) error {
	switch op {
	case opAppend:
		return unsupported("append", "", "Object storage cannot append to a file (APPE); upload it whole.")
	case opWriteAt:
		return unsupported("write", "", "Object storage cannot resume an upload (REST+STOR); upload it whole.")
	case opRenameDir:
		return unsupported("rename", "", "Object storage cannot rename a directory; rename its files.")
	case opSetTimes:
		if !s.ignoreMFMT {
			return unsupported("chtimes", "", "Object storage sets modification times itself (MFMT).")
		}
	}
	return nil
}

func (s *s3Storage) Close() error { return nil }
