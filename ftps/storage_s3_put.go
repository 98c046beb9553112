package ftps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// s3MaxPut is the largest object one PutObject, or one part, may write.
const s3MaxPut = 5 << 30

// errPutCancelled ends the part of a cancelled upload (no log line).
var errPutCancelled = errors.New("upload cancelled")

// WriteSized writes name knowing its size in advance (ALLO): a file larger
// than a part becomes a multipart upload of one part, streamed to the
// store as it arrives, so that no part is held in memory and the store
// gets the data in one request. The upload is completed only by a Commit
// with exactly size bytes; more or fewer, a cut or a cancel abort it, and
// the old object, if any, stays. (One streamed PutObject would not do: a
// store may publish a body that ends short.) A smaller file, one over the
// 5 GiB a part may be, or one that may not stream is written as Write
// does, held to the size all the same.
func (s *s3Storage) WriteSized(name string, mode writeMode, size int64, stream bool) (fileWriter, error) {
	if !stream || size <= int64(s.partSize) || size > s3MaxPut {
		w, err := s.Write(name, mode, 0)
		if err != nil {
			return nil, err
		}
		return &exactWriter{fileWriter: w, size: size}, nil
	}
	key, err := s.writable(name, mode)
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.call()
	up, err := s.client.CreateMultipartUpload(cctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
	cancel()
	if err != nil {
		return nil, s.s3Err("upload", name, err)
	}
	pr, pw := io.Pipe()
	// Not under the session's context: the part ends with Commit or
	// Cancel (a session that ends cancels its upload), so that a commit
	// whose data has all arrived goes on.
	ctx, g := s.guardFrom(context.WithoutCancel(s.ctx))
	g.disarm() // armed only while a write waits on the store
	w := &s3PutWriter{
		mp:   &s3Writer{s: s, name: name, key: key, uploadID: up.UploadId},
		size: size, pw: pw, g: g, done: make(chan partResult, 1), start: time.Now(),
	}
	go func() {
		defer g.stop()
		// The body is a stream: not signed (its hash is unknown until it
		// has been sent); TLS to the store protects it.
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(1),
			// Not the *io.PipeReader itself: smithy sends that chunked,
			// without the Content-Length the request is signed with.
			Body: struct{ io.Reader }{pr}, ContentLength: aws.Int64(size),
		}, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware),
			func(o *s3.Options) { o.RetryMaxAttempts = 1 }) // a stream cannot be sent twice
		var etag *string
		switch {
		case err == nil:
			etag = out.ETag
		case errors.Is(context.Cause(ctx), errPutCancelled):
			err = errPutCancelled
		default:
			err = s.s3Err("upload", name, g.cause(err))
		}
		if err != nil {
			pr.CloseWithError(err)
		}
		w.done <- partResult{etag, err}
	}()
	return w, nil
}

// The replies to an upload whose size is not the one ALLO announced.
func errMoreThanAllo(size int64) error {
	return replyError{reply{552, fmt.Sprintf("More data than the %d bytes announced with ALLO; not stored.", size)}}
}

func errNotAllo(written, size int64) error {
	return replyError{reply{552, fmt.Sprintf("Upload of %d bytes, not the %d announced with ALLO; not stored.", written, size)}}
}

// exactWriter holds a buffered write to the size ALLO announced, as the
// streamed one is held.
type exactWriter struct {
	fileWriter
	size, written int64
}

func (w *exactWriter) Write(p []byte) (int, error) {
	if w.written+int64(len(p)) > w.size {
		return 0, errMoreThanAllo(w.size)
	}
	n, err := w.fileWriter.Write(p)
	w.written += int64(n)
	return n, err
}

func (w *exactWriter) Commit() (int64, error) {
	if w.written != w.size {
		w.fileWriter.Cancel()
		return 0, errNotAllo(w.written, w.size)
	}
	return w.fileWriter.Commit()
}

type partResult struct {
	etag *string
	err  error
}

// s3PutWriter is an upload streamed into one part (see WriteSized).
type s3PutWriter struct {
	mp      *s3Writer // the multipart upload: its abort
	size    int64
	pw      *io.PipeWriter
	g       *stallGuard
	done    chan partResult
	result  partResult
	waited  sync.Once
	written int64
	start   time.Time
	ended   bool
}

// wait returns the part's result, waiting on the store (armed).
func (w *s3PutWriter) wait() partResult {
	w.waited.Do(func() {
		w.g.arm()
		w.result = <-w.done
		w.g.disarm()
	})
	return w.result
}

func (w *s3PutWriter) Write(p []byte) (int, error) {
	if w.written+int64(len(p)) > w.size {
		w.stop()
		return 0, errMoreThanAllo(w.size)
	}
	w.g.arm()
	_, err := w.pw.Write(p)
	w.g.disarm()
	if err != nil {
		return 0, cmp.Or(w.wait().err, err)
	}
	w.written += int64(len(p))
	return len(p), nil
}

// stop ends the part short and aborts the upload: nothing is published.
func (w *s3PutWriter) stop() {
	w.g.cancel(errPutCancelled)
	w.pw.CloseWithError(errPutCancelled)
	w.wait()
	w.mp.abort()
}

func (w *s3PutWriter) Commit() (int64, error) {
	if w.ended {
		return 0, errors.New("s3 write already ended")
	}
	w.ended = true
	if w.written != w.size {
		w.stop()
		return 0, errNotAllo(w.written, w.size)
	}
	w.pw.Close()
	r := w.wait()
	if r.err != nil {
		w.mp.abort()
		return 0, r.err
	}
	w.mp.parts = []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: r.etag}}
	if err := w.mp.complete(); err != nil {
		return 0, err
	}
	return w.size, nil
}

func (w *s3PutWriter) Cancel() {
	if !w.ended {
		w.ended = true
		w.stop()
	}
}

func (w *s3PutWriter) Discard()        { w.Cancel() }
func (w *s3PutWriter) Resumable() bool { return false }

func (w *s3PutWriter) Stat() (fs.FileInfo, error) {
	return &s3Info{name: baseName(w.mp.name), size: w.written, mtime: w.start}, nil
}
