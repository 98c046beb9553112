package ftps

import (
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
)

// s3MaxPut is the largest object one PutObject may write.
const s3MaxPut = 5 << 30

// errPutCancelled ends the PUT of a cancelled upload (no log line).
var errPutCancelled = errors.New("upload cancelled")

// WriteSized writes name as one PutObject of exactly size bytes, streamed
// as they arrive: the client announced the size (ALLO), so no part is held
// in memory and the store writes the object in one piece. The last byte
// is held back until Commit: the store completes the object only once all
// of it has arrived, and no more. Fewer or more bytes, a cut or a cancel
// end the PUT short, and the old object, if any, stays.
func (s *s3Storage) WriteSized(name string, mode writeMode, size int64) (fileWriter, error) {
	if size <= 0 || size > s3MaxPut {
		return s.Write(name, mode, 0)
	}
	key, err := s.writable(name, mode)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	ctx, g := s.guard()
	w := &s3PutWriter{s: s, name: name, size: size, pw: pw, g: g, done: make(chan error, 1), start: time.Now()}
	go func() {
		defer g.stop()
		// The body is a stream: it is not signed (its hash is unknown
		// until it has been sent); TLS to the store protects it.
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &key, Body: progressReader{pr, g}, ContentLength: aws.Int64(size),
		}, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
		switch {
		case err == nil:
		case errors.Is(context.Cause(ctx), errPutCancelled):
			err = errPutCancelled
		default:
			err = s.s3Err("put", name, g.cause(err))
		}
		pr.CloseWithError(cmpErr(err, io.ErrClosedPipe))
		w.done <- err
	}()
	return w, nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// progressReader is a streamed body: each read is progress.
type progressReader struct {
	r io.Reader
	g *stallGuard
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.g.progress()
	return n, err
}

// s3PutWriter is an upload streamed into one PutObject (see WriteSized).
type s3PutWriter struct {
	s       *s3Storage
	name    string
	size    int64
	pw      *io.PipeWriter
	g       *stallGuard
	done    chan error
	result  error
	waited  sync.Once
	last    []byte // the held-back last byte
	written int64
	start   time.Time
	ended   bool
}

// wait returns the PUT's result.
func (w *s3PutWriter) wait() error {
	w.waited.Do(func() { w.result = <-w.done })
	return w.result
}

func (w *s3PutWriter) Write(p []byte) (int, error) {
	if w.written+int64(len(p)) > w.size {
		w.stop()
		return 0, replyError{reply{552, fmt.Sprintf("More data than the %d bytes announced with ALLO; not stored.", w.size)}}
	}
	send := p
	if len(p) > 0 && w.written+int64(len(p)) == w.size {
		// A copy: the caller reuses p.
		send, w.last = p[:len(p)-1], []byte{p[len(p)-1]}
	}
	if len(send) > 0 { // an empty write to a pipe waits for a reader
		if _, err := w.pw.Write(send); err != nil {
			return 0, cmpErr(w.wait(), err)
		}
	}
	w.written += int64(len(p))
	return len(p), nil
}

// stop ends the PUT short: the store drops what it received.
func (w *s3PutWriter) stop() {
	w.g.cancel(errPutCancelled)
	w.pw.CloseWithError(errPutCancelled)
	w.wait()
}

func (w *s3PutWriter) Commit() (int64, error) {
	if w.ended {
		return 0, errors.New("s3 write already ended")
	}
	w.ended = true
	if w.written != w.size {
		w.stop()
		return 0, replyError{reply{552, fmt.Sprintf("Upload of %d bytes, not the %d announced with ALLO; not stored.", w.written, w.size)}}
	}
	if _, err := w.pw.Write(w.last); err != nil {
		return 0, cmpErr(w.wait(), err)
	}
	w.pw.Close()
	if err := w.wait(); err != nil {
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
	return &s3Info{name: baseName(w.name), size: w.written, mtime: w.start}, nil
}
