package ftps

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// newTestS3 starts versitygw and returns a storage over s3://bucket/home/
// and a client that sees the whole bucket.
func newTestS3(t *testing.T) (*s3Storage, *s3.Client, *testutil.S3) {
	t.Helper()
	gw := testutil.StartVersityGW(t, "bucket")
	cfg := &S3Config{Endpoint: gw.Endpoint(), PathStyle: true, AccessKeyID: gw.Access, SecretAccessKey: gw.Secret}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := newS3Client(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := &s3Storage{ctx: context.Background(), client: c, bucket: gw.Bucket, prefix: "home/", partSize: s3MinPart, timeout: 30 * time.Second}
	return st, c, gw
}

func putRaw(t *testing.T, c *s3.Client, bucket, key, body string) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: &bucket, Key: &key, Body: strings.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
	}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func writeS3(t *testing.T, st storage, name string, mode writeMode, data []byte) {
	t.Helper()
	w, err := st.Write(name, mode, 0)
	if err != nil {
		t.Fatalf("Write(%s): %v", name, err)
	}
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	n, err := w.Commit()
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Commit(%s) = %d, %v; want %d", name, n, err, len(data))
	}
}

func readS3(t *testing.T, st storage, name string, off int64) []byte {
	t.Helper()
	r, _, err := st.Open(name, off)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", name, off, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func listAll(t *testing.T, st storage, dir string, chunk int) []string {
	t.Helper()
	l, err := st.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", dir, err)
	}
	defer l.Close()
	var names []string
	for {
		fis, err := l.Next(chunk)
		for _, fi := range fis {
			n := fi.Name()
			if fi.IsDir() {
				n += "/"
			}
			names = append(names, n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(names)
	return names
}

func TestS3Storage(t *testing.T) {
	st, c, gw := newTestS3(t)
	b := gw.Bucket

	// Files and directories, some written around the storage.
	writeS3(t, st, "a.txt", writeNew, []byte("hello, world"))
	if err := st.Mkdir("sub"); err != nil {
		t.Fatal(err)
	}
	writeS3(t, st, "sub/b.txt", writeReplace, []byte("bee"))
	putRaw(t, c, b, "home/implicit/c.txt", "sea") // a prefix without a marker
	putRaw(t, c, b, "outside.txt", "secret")      // beside the home

	t.Run("stat", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			dir  bool
			size int64
			err  error
		}{
			{".", true, 0, nil},
			{"a.txt", false, 12, nil},
			{"sub", true, 0, nil},
			{"implicit", true, 0, nil},
			{"implicit/c.txt", false, 3, nil},
			{"missing", false, 0, fs.ErrNotExist},
			{"../outside.txt", false, 0, fs.ErrInvalid},
			{"sub/../../outside.txt", false, 0, fs.ErrInvalid},
			{"/outside.txt", false, 0, fs.ErrInvalid},
			{"..\\outside.txt", false, 0, fs.ErrInvalid},
		} {
			fi, err := st.Stat(tc.name)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("Stat(%q) = %v; want %v", tc.name, err, tc.err)
				}
				continue
			}
			if err != nil || fi.IsDir() != tc.dir || (!tc.dir && fi.Size() != tc.size) {
				t.Errorf("Stat(%q) = %v, %v; want dir=%v size=%d", tc.name, fi, err, tc.dir, tc.size)
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		got := strings.Join(listAll(t, st, ".", 100), " ")
		if want := "a.txt implicit/ sub/"; got != want {
			t.Errorf("list = %q; want %q (marker hidden, nothing outside)", got, want)
		}
		if got := strings.Join(listAll(t, st, "sub", 100), " "); got != "b.txt" {
			t.Errorf("list sub = %q; want b.txt (its marker hidden)", got)
		}
		if _, err := st.ReadDir("a.txt"); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("ReadDir(file) = %v; want ENOTDIR", err)
		}
		if _, err := st.ReadDir("missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadDir(missing) = %v; want ErrNotExist", err)
		}
	})

	t.Run("ranged read", func(t *testing.T) {
		for _, tc := range []struct {
			off  int64
			want string
			err  error
		}{{0, "hello, world", nil}, {7, "world", nil}, {12, "", nil}, {13, "", errBeyondEnd}} {
			if tc.err != nil {
				if _, _, err := st.Open("a.txt", tc.off); !errors.Is(err, tc.err) {
					t.Errorf("Open at %d = %v; want %v", tc.off, err, tc.err)
				}
				continue
			}
			if got := string(readS3(t, st, "a.txt", tc.off)); got != tc.want {
				t.Errorf("read at %d = %q; want %q", tc.off, got, tc.want)
			}
		}
		if _, _, err := st.Open("sub", 0); !errors.Is(err, errNotRegular) {
			t.Errorf("Open(dir) = %v; want errNotRegular", err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		if _, err := st.Write("a.txt", writeAppend, 0); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("append = %v; want ErrUnsupported", err)
		}
		if _, err := st.Write("a.txt", writeAt, 3); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("write at = %v; want ErrUnsupported", err)
		}
		if err := st.Rename("sub", "sub2"); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("rename dir = %v; want ErrUnsupported", err)
		}
		if err := st.Chtimes("a.txt", aws.ToTime(nil)); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("chtimes = %v; want ErrUnsupported", err)
		}
		if _, err := st.Write("a.txt", writeNew, 0); !errors.Is(err, fs.ErrExist) {
			t.Errorf("writeNew over a file = %v; want ErrExist", err)
		}
	})

	t.Run("rename remove rmdir", func(t *testing.T) {
		writeS3(t, st, "r 1%?.txt", writeNew, []byte("move me"))
		if err := st.Rename("r 1%?.txt", "sub/r2.txt"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Stat("r 1%?.txt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("old name after rename: %v", err)
		}
		if got := string(readS3(t, st, "sub/r2.txt", 0)); got != "move me" {
			t.Errorf("renamed = %q", got)
		}
		if err := st.Rmdir("sub"); !errors.Is(err, syscall.ENOTEMPTY) {
			t.Errorf("Rmdir(non-empty) = %v; want ENOTEMPTY", err)
		}
		if err := st.Rmdir("a.txt"); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("Rmdir(file) = %v; want ENOTDIR", err)
		}
		if err := st.Remove("sub"); !errors.Is(err, syscall.EISDIR) {
			t.Errorf("Remove(dir) = %v; want EISDIR", err)
		}
		for _, n := range []string{"sub/r2.txt", "sub/b.txt"} {
			if err := st.Remove(n); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Remove("sub/b.txt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Remove twice = %v; want ErrNotExist", err)
		}
		if err := st.Rmdir("sub"); err != nil {
			t.Fatalf("Rmdir(empty) = %v", err)
		}
		if _, err := st.Stat("sub"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat after Rmdir = %v", err)
		}
		if err := st.Mkdir("a.txt"); !errors.Is(err, fs.ErrExist) {
			t.Errorf("Mkdir over a file = %v; want ErrExist", err)
		}
	})

	t.Run("jail", func(t *testing.T) {
		// A key that holds "../" written around ftps is still only a name
		// inside the home; no path reaches the object beside the home.
		putRaw(t, c, b, "home/x/../y.txt", "dots")
		for _, name := range []string{"../outside.txt", "x/../../outside.txt", "x/%2e%2e/outside.txt", "..", "x/..", "/outside.txt", "x\\..\\..\\outside.txt"} {
			if r, _, err := st.Open(name, 0); err == nil {
				got, _ := io.ReadAll(r)
				r.Close()
				if string(got) == "secret" {
					t.Errorf("Open(%q) read the object outside the home", name)
				}
			}
			if w, err := st.Write(name, writeReplace, 0); err == nil {
				w.Cancel()
				if !strings.Contains(name, "%2e") {
					t.Errorf("Write(%q) accepted", name)
				}
			}
			if err := st.Remove(name); err == nil {
				t.Errorf("Remove(%q) succeeded", name)
			}
		}
		if got := string(readRaw(t, c, b, "outside.txt")); got != "secret" {
			t.Errorf("outside.txt = %q after the jail tests", got)
		}
		// "%2e%2e" is a literal name, not a parent: nothing escapes.
		if _, err := os.Stat(filepath.Join(gw.Dir, b, "outside.txt")); err != nil {
			t.Errorf("outside.txt gone: %v", err)
		}
	})
}

func readRaw(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return b
}

// TestS3ListPages lists a directory of more keys than a page holds.
func TestS3ListPages(t *testing.T) {
	st, c, gw := newTestS3(t)
	st.listPage = 7
	var want []string
	for i := range 50 {
		n := fmt.Sprintf("f%03d", i)
		putRaw(t, c, gw.Bucket, "home/many/"+n, "x")
		want = append(want, n)
	}
	for i := range 5 {
		n := fmt.Sprintf("d%d", i)
		putRaw(t, c, gw.Bucket, "home/many/"+n+"/inner", "x")
		want = append(want, n+"/")
	}
	sort.Strings(want)
	for _, chunk := range []int{1, 3, 100} {
		if got := listAll(t, st, "many", chunk); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("chunk %d: listed %d entries %v; want %d", chunk, len(got), got, len(want))
		}
	}
}

// TestS3Multipart writes 20 MiB in 5 MiB parts and reads it back byte for
// byte, then cancels an overwrite and finds the old object intact.
// TestS3PartsGrow: a small upload holds a small buffer; the part size doubles every growEvery parts, so that
// S3's 10,000 parts hold a big upload; past the most parts the upload
// stops with EFBIG (552) and leaves nothing.
func TestS3PartsGrow(t *testing.T) {
	st, c, _ := newTestS3(t)
	// A small file holds a small buffer, not a part.
	tiny, err := st.Write("tiny", writeNew, 0)
	if err != nil {
		t.Fatal(err)
	}
	tiny.Write([]byte("abcd"))
	if n := cap(tiny.(*s3Writer).buf); n > s3FirstBuf {
		t.Errorf("a 4-byte upload holds a %d-byte buffer", n)
	}
	tiny.Cancel()

	st.growEvery = 2
	data := make([]byte, 37<<20+3)
	rand.Read(data)
	w, err := st.Write("grown.bin", writeNew, 0)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(data, 1<<20) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	sw := w.(*s3Writer)
	if err := sw.wait(); err != nil {
		t.Fatal(err)
	}
	parts, err := c.ListParts(context.Background(), &s3.ListPartsInput{Bucket: &st.bucket, Key: &sw.key, UploadId: sw.uploadID})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, p := range parts.Parts {
		sizes = append(sizes, aws.ToInt64(p.Size)>>20)
	}
	if want := []int64{5, 5, 10, 10}; !slices.Equal(sizes, want) {
		t.Errorf("parts sent of %v MiB; want %v", sizes, want)
	}
	if n, err := w.Commit(); err != nil || n != int64(len(data)) {
		t.Fatalf("Commit = %d, %v", n, err)
	}
	if got := readS3(t, st, "grown.bin", 0); !bytes.Equal(got, data) {
		t.Fatal("the object of grown parts differs")
	}

	st.growEvery, st.maxParts = 0, 2
	w, err = st.Write("huge.bin", writeNew, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(data[:16<<20])
	if r := errReply(err); r.code != 552 {
		t.Errorf("the third part of at most two: %v, reply %v; want 552", err, r)
	}
	w.Cancel()
	if _, err := st.Stat("huge.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after a refused upload: %v; want no object", err)
	}
}

// TestS3RenameOddNames: a rename copies exactly the object named, whatever
// its key holds ("a+b" is not "a b"), inside a prefix that holds such
// characters too.
func TestS3RenameOddNames(t *testing.T) {
	st, c, gw := newTestS3(t)
	st.prefix = "team+a b%/"
	putRaw(t, c, gw.Bucket, "team a b%/report", "another prefix's file")
	names := []string{"a+b", "a b", "a%20b", "q?x", "h#x", "amp&=x", "pct%", "ü+ ~'()*!$,;:@"}
	for _, n := range names {
		writeS3(t, st, n, writeNew, []byte("content of "+n))
	}
	writeS3(t, st, "report", writeNew, []byte("mine"))
	for _, n := range append(names, "report") {
		if err := st.Rename(n, n+".moved"); err != nil {
			t.Fatalf("Rename(%q): %v", n, err)
		}
	}
	for _, n := range names {
		if got := string(readS3(t, st, n+".moved", 0)); got != "content of "+n {
			t.Errorf("%q renamed holds %q", n, got)
		}
	}
	if got := string(readS3(t, st, "report.moved", 0)); got != "mine" {
		t.Errorf("report renamed holds %q: another prefix's object was copied", got)
	}
	if got := string(readRaw(t, c, gw.Bucket, "team a b%/report")); got != "another prefix's file" {
		t.Errorf("the other prefix's object holds %q", got)
	}
}

// TestS3SlowClient: the store's timeout counts only the time ftpsd waits
// on the store. A client that pauses longer than it (a slow link, a rate
// limit) between its writes, or between its reads of a download, does not
// cost a 451.
func TestS3SlowClient(t *testing.T) {
	st, _, _ := newTestS3(t)
	st.timeout = time.Second
	data := make([]byte, 6<<20+9) // over a part: the streamed path
	rand.Read(data)
	w, err := st.WriteSized("slow.bin", writeNew, int64(len(data)), true)
	if err != nil {
		t.Fatal(err)
	}
	for i, chunk := range slices.Collect(slices.Chunk(data, 2<<20)) {
		if i == 1 {
			time.Sleep(1500 * time.Millisecond) // the client pauses
		}
		if _, err := w.Write(chunk); err != nil {
			t.Fatalf("write after a client pause: %v", err)
		}
	}
	if n, err := w.Commit(); err != nil || n != int64(len(data)) {
		t.Fatalf("Commit = %d, %v", n, err)
	}
	r, _, err := st.Open("slow.bin", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the client stops reading a while
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read after a client pause: %v", err)
	}
	if !bytes.Equal(append(head, rest...), data) {
		t.Fatal("the download differs")
	}
}

// TestS3CopyIfMatch: a rename's copy reads only the version its HEAD saw:
// with the object replaced since (another session or node), the copy, a
// single one or by parts, fails and the target is not written.
func TestS3CopyIfMatch(t *testing.T) {
	st, c, gw := newTestS3(t)
	st.copyMax = 6 << 20
	for _, size := range []int{1000, 13 << 20} {
		data := bytes.Repeat([]byte("v1"), size/2)
		writeS3(t, st, "src.bin", writeReplace, data)
		fi, err := st.Stat("src.bin")
		if err != nil {
			t.Fatal(err)
		}
		putRaw(t, c, gw.Bucket, "home/src.bin", "v2: replaced meanwhile")
		if err := st.copyObject("home/src.bin", "home/dst.bin", int64(size), fi.(*s3Info).etag); err == nil {
			t.Errorf("%d bytes: the copy of a replaced source succeeded", size)
		}
		if _, err := st.Stat("dst.bin"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%d bytes: Stat of the target: %v; want no object", size, err)
		}
	}
}

// TestS3RenameBig: a file larger than one CopyObject may copy (5 GiB;
// here copyMax is lowered) is renamed by a multipart copy the store does
// itself, range by range.
func TestS3RenameBig(t *testing.T) {
	st, _, _ := newTestS3(t)
	st.copyMax = 6 << 20
	data := make([]byte, 13<<20+7) // three parts of 5 MiB
	rand.Read(data)
	writeS3(t, st, "big.bin", writeNew, data)
	if err := st.Rename("big.bin", "moved.bin"); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if got := readS3(t, st, "moved.bin", 0); !bytes.Equal(got, data) {
		t.Fatalf("the renamed object holds %d bytes, differing from the %d written", len(got), len(data))
	}
	if _, err := st.Stat("big.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of the old name: %v; want no object", err)
	}
}

func TestS3Multipart(t *testing.T) {
	st, _, _ := newTestS3(t)
	data := make([]byte, 20<<20+12345)
	rand.Read(data)
	writeS3(t, st, "big.bin", writeReplace, data)
	if got := readS3(t, st, "big.bin", 0); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(data))
	}
	if got := readS3(t, st, "big.bin", 15<<20); !bytes.Equal(got, data[15<<20:]) {
		t.Fatal("ranged read of the multipart object differs")
	}

	w, err := st.Write("big.bin", writeReplace, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("n"), 11<<20)); err != nil { // two parts sent
		t.Fatal(err)
	}
	if w.(*s3Writer).uploadID == nil {
		t.Fatal("no multipart upload started after 11 MiB")
	}
	w.Cancel()
	if got := readS3(t, st, "big.bin", 0); !bytes.Equal(got, data) {
		t.Fatal("a cancelled overwrite changed the old object")
	}
	out, err := st.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &st.bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left after Cancel", len(out.Uploads))
	}
}

// TestS3UploadSettle: the upload rules over S3 — a complete replace is
// the new object; a truncated one (no close_notify) or a cancelled one
// leaves the old object; a truncated new file stores nothing (it could
// not be resumed).
func TestS3UploadSettle(t *testing.T) {
	st, _, _ := newTestS3(t)
	big := bytes.Repeat([]byte("N"), 6<<20) // more than a part: multipart
	tests := []struct {
		name      string
		mode      writeMode
		data      []byte
		truncated bool
		cancel    bool
		want      string
		wantCode  int
	}{
		{"replace, complete", writeReplace, []byte("new!"), false, false, "new!", 226},
		{"replace, truncated keeps the old", writeReplace, []byte("new!"), true, false, "old", 426},
		{"replace multipart, truncated keeps the old", writeReplace, big, true, false, "old", 426},
		{"replace multipart, cancel keeps the old", writeReplace, big, false, true, "old", 0},
		{"new, truncated stores nothing", writeNew, []byte("abc"), true, false, "", 426},
		{"new multipart, truncated stores nothing", writeNew, big, true, false, "", 426},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("f%d", i)
			if tt.mode == writeReplace {
				writeS3(t, st, name, writeNew, []byte("old"))
			}
			up := &upload{st: st, name: name, mode: tt.mode}
			w, err := up.open()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(tt.data); err != nil {
				t.Fatal(err)
			}
			if tt.cancel {
				up.cancel()
			} else if r := settle(slog.New(slog.DiscardHandler), "test", up, int64(len(tt.data)), tt.truncated); r.code != tt.wantCode {
				t.Errorf("reply %v, want %d", r, tt.wantCode)
			}
			if tt.want == "" {
				if _, err := st.Stat(name); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Stat after a truncated new upload: %v; want no object", err)
				}
				return
			}
			if got := string(readS3(t, st, name, 0)); got != tt.want {
				t.Errorf("object holds %.20q (%d bytes), want %q", got, len(got), tt.want)
			}
		})
	}
}
