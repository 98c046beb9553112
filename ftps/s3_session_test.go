package ftps_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// s3Server starts a server whose user alice has her home in
// s3://bucket/alice/ on gw, reached at endpoint (gw's own, or a proxy in
// front of it), with the user entry adjusted by set. It returns the
// server and the directory that holds alice's objects as files.
func s3Server(t *testing.T, gw *testutil.S3, endpoint string, timeout time.Duration, set func(*auth.UserConfig)) (*ftpstest.Server, string) {
	t.Helper()
	home := filepath.Join(gw.Dir, gw.Bucket, "alice")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	s := ftpstest.NewServer(t, ftpstest.Options{
		Server: func(c *ftps.Config) {
			c.S3 = ftps.S3Config{Endpoint: endpoint, PathStyle: true, AccessKeyID: gw.Access, SecretAccessKey: gw.Secret, Timeout: timeout}
			if err := c.S3.Validate(); err != nil {
				t.Fatal(err)
			}
		},
		Users: limited(func(u *auth.UserConfig) {
			u.Home = "s3://" + gw.Bucket + "/alice/"
			if set != nil {
				set(u)
			}
		}),
	})
	return s, home
}

// TestS3Quota: on an S3 home the quota counts the objects under the
// prefix (directory markers are not files) and follows STOR, DELE and
// RNTO as on disk (quotaSession, without APPE).
func TestS3Quota(t *testing.T) {
	t.Parallel()
	gw := testutil.StartVersityGW(t, "bucket")
	s, home := s3Server(t, gw, gw.Endpoint(), 0, func(u *auth.UserConfig) { u.Quota = "1MiB" })
	quotaSession(t, s, home, s.ClientTLS(), false)
}

// TestS3CutUpload: an upload whose TLS stream ends without close_notify
// may have been cut. On an object store nothing shows before the commit
// and an upload cannot be resumed, so a cut new upload stores nothing
// (the 426 says so, rather than advising REST+STOR or APPE) and a cut
// overwrite keeps the old object.
func TestS3CutUpload(t *testing.T) {
	t.Parallel()
	gw := testutil.StartVersityGW(t, "bucket")
	s, home := s3Server(t, gw, gw.Endpoint(), 0, nil)
	old := testutil.Payload(100_000, 1)
	oldPath := testutil.WriteFile(t, home, "old.bin", old)
	c := s.Login(t, s.ClientTLS())
	for _, tc := range []struct {
		name, want string
	}{
		{"new.bin", "Upload ended without TLS close_notify; nothing stored."},
		{"old.bin", "Upload ended without TLS close_notify; old file kept."},
	} {
		addr := c.Pasv()
		c.Send("STOR " + tc.name)
		dc := c.OpenData(addr)
		if _, err := dc.Write(testutil.Payload(12<<20, 7)); err != nil { // more than a part
			t.Fatal(err)
		}
		dc.NetConn().Close() // a FIN without close_notify
		if msg := c.Expect(426); msg != tc.want {
			t.Errorf("STOR %s cut: 426 %q; want %q", tc.name, msg, tc.want)
		}
	}
	testutil.AssertMissing(t, filepath.Join(home, "new.bin"))
	testutil.AssertContent(t, oldPath, old)
	assertNoUploads(t, gw)
	entries, _ := os.ReadDir(home)
	if len(entries) != 1 {
		t.Errorf("home holds %d entries, want only old.bin", len(entries))
	}
}

// stallProxy forwards TCP connections to target; once stalled, it stops
// passing the target's bytes on (the connections stay open): a store that
// no longer answers.
type stallProxy struct {
	ln    net.Listener
	stall atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go io.Copy(u, c)
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := u.Read(buf)
					for p.stall.Load() {
						time.Sleep(10 * time.Millisecond)
					}
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		p.stall.Store(false)
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *stallProxy) endpoint() string { return "http://" + p.ln.Addr().String() }

// TestS3Timeout: a store that stops answering costs a session at most
// storage.s3.timeout per request: a command gets 451, a download that
// stops moving is aborted with 451, each with a log line that says so,
// and the session goes on.
func TestS3Timeout(t *testing.T) {
	t.Parallel()
	gw := testutil.StartVersityGW(t, "bucket")
	proxy := startStallProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(gw.Port)))
	s, home := s3Server(t, gw, proxy.endpoint(), time.Second, nil)
	data := testutil.Payload(24<<20, 3)
	testutil.WriteFile(t, home, "big.bin", data)
	c := s.Login(t, s.ClientTLS())

	// A download whose store stalls after the first MiB.
	addr := c.Pasv()
	c.Send("RETR big.bin")
	dc := c.OpenData(addr)
	got := make([]byte, 1<<20)
	if _, err := io.ReadFull(dc, got); err != nil || !bytes.Equal(got, data[:1<<20]) {
		t.Fatalf("first MiB: %v", err)
	}
	proxy.stall.Store(true)
	start := time.Now()
	dc.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, _ := io.Copy(io.Discard, dc)
	if msg := c.Expect(451); !strings.Contains(msg, "Storage unavailable") {
		t.Errorf("stalled RETR: 451 %q", msg)
	}
	t.Logf("stalled download aborted after %s (%d MiB more had been buffered)", time.Since(start).Round(time.Millisecond), n>>20)
	if n >= int64(len(data)-1<<20) {
		t.Errorf("the whole file arrived: the stall proves nothing")
	}
	s.Log.Wait(t, `msg="object storage error" .* op=read .* hint="no progress within storage.s3.timeout"`, 1, 5*time.Second)

	// A command whose request gets no answer at all.
	start = time.Now()
	c.Cmd(451, "SIZE big.bin")
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("SIZE against a silent store took %s with a 1s timeout", d)
	}
	s.Log.Wait(t, `msg="object storage error" .* op=stat .* hint="no answer within storage.s3.timeout"`, 1, 5*time.Second)
	// A listing asks the store before its 150: the 451 comes without a
	// data connection (and is not taken for a stalled data connection).
	c.Pasv()
	c.Cmd(451, "MLSD")
	c.Cmd(257, "PWD") // the session goes on

	proxy.stall.Store(false)
	c.AssertRetr("big.bin", data)
}

// TestS3ListHuge: a prefix of 100,000 keys lists completely through MLSD,
// a ListObjectsV2 page at a time: the server's heap while it
// lists stays flat (measured and logged; the count is what is asserted).
func TestS3ListHuge(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 objects: not in -short")
	}
	t.Parallel()
	const keys = 100_000
	gw := testutil.StartVersityGW(t, "bucket")
	s, home := s3Server(t, gw, gw.Endpoint(), 0, nil)
	dir := filepath.Join(home, "many")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range keys { // the posix backend's objects are files
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("object-with-a-longish-name-%06d.dat", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := s.Login(t, s.ClientTLS())
	// NLST and LIST page through the same lister; versitygw walks the
	// whole directory for each page, so one listing is what CI affords.
	for _, verb := range []string{"MLSD"} {
		runtime.GC()
		var before, peak runtime.MemStats
		runtime.ReadMemStats(&before)
		stop := make(chan struct{})
		sampled := make(chan uint64)
		go func() {
			var m runtime.MemStats
			var top uint64
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					sampled <- top
					return
				case <-tick.C:
					runtime.ReadMemStats(&m)
					top = max(top, m.HeapInuse)
				}
			}
		}()
		start := time.Now()
		addr := c.Pasv()
		c.Send(verb + " many")
		dc := c.OpenData(addr)
		// versitygw walks the directory for each page of 1,000: slow
		// under -race, far beyond the client's usual deadline.
		dc.SetReadDeadline(time.Now().Add(3 * time.Minute))
		lines := 0
		sc := bufio.NewScanner(dc)
		for sc.Scan() {
			lines++
		}
		if err := sc.Err(); err != nil {
			t.Errorf("%s: reading the listing after %d lines: %v", verb, lines, err)
		}
		dc.Close()
		c.Expect(226)
		close(stop)
		peak.HeapInuse = <-sampled
		if lines != keys {
			t.Errorf("%s listed %d entries, want %d", verb, lines, keys)
		}
		t.Logf("%s of %d keys: %s; heap in use %.1f MiB before, peak %.1f MiB (client and server)",
			verb, keys, time.Since(start).Round(time.Millisecond), float64(before.HeapInuse)/(1<<20), float64(peak.HeapInuse)/(1<<20))
	}
}

// TestS3Allo: with the size announced (ALLO), an upload to an S3 home
// larger than a part is one part streamed to the store (the ETag of a
// multipart upload of one part, "-1"), and any upload is stored only with
// exactly that many bytes: more or fewer, or a cut, store nothing and
// leave the old object (versitygw publishes a PUT cut short, so this
// proves the part is never completed).
func TestS3Allo(t *testing.T) {
	t.Parallel()
	gw := testutil.StartVersityGW(t, "bucket")
	s, home := s3Server(t, gw, gw.Endpoint(), 0, nil)
	old := testutil.Payload(1000, 1)
	oldPath := testutil.WriteFile(t, home, "old.bin", old)
	data := testutil.Payload(20<<20+3, 2) // more than two parts
	c := s.Login(t, s.ClientTLS())

	c.Cmd(200, fmt.Sprintf("ALLO %d", len(data)))
	c.Xfer("STOR new.bin", data)
	testutil.AssertContent(t, filepath.Join(home, "new.bin"), data)
	c.AssertRetr("new.bin", data)
	if etag := strings.Trim(headETag(t, gw, "alice/new.bin"), `"`); !strings.HasSuffix(etag, "-1") {
		t.Errorf("ETag %s: not one part", etag)
	}
	c.Cmd(501, "ALLO")
	c.Cmd(501, "ALLO -5")

	for _, tc := range []struct {
		name     string
		announce int
		send     []byte
		cut      bool // no close_notify
		code     int
		msg      string
	}{
		{"more", 5000, testutil.Payload(5001, 3), false, 552, "More data than the 5000 bytes announced with ALLO; not stored."},
		{"fewer", 5000, testutil.Payload(4999, 3), false, 552, "Upload of 4999 bytes, not the 5000 announced with ALLO; not stored."},
		{"more, streamed", 9 << 20, testutil.Payload(9<<20+1, 3), false, 552, "More data than the 9437184 bytes announced with ALLO; not stored."},
		{"fewer, streamed", 9 << 20, testutil.Payload(9<<20-1, 3), false, 552, "Upload of 9437183 bytes, not the 9437184 announced with ALLO; not stored."},
		{"cut, streamed", 9 << 20, testutil.Payload(4<<20, 3), true, 426, "Upload ended without TLS close_notify; old file kept."},
	} {
		c.Cmd(200, fmt.Sprintf("ALLO %d", tc.announce))
		addr := c.Pasv()
		c.Send("STOR old.bin")
		dc := c.OpenData(addr)
		dc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		dc.Write(tc.send)
		if tc.cut {
			dc.NetConn().Close()
		} else {
			dc.Close()
		}
		if code, msg := c.Read(); code != tc.code || msg != tc.msg {
			t.Errorf("%s: %d %q; want %d %q", tc.name, code, msg, tc.code, tc.msg)
		}
		testutil.AssertContent(t, oldPath, old)
	}
	assertNoUploads(t, gw)
	// The size applies to the next upload only.
	c.Cmd(200, "ALLO 10")
	c.Xfer("LIST", nil)
	c.Xfer("STOR other.bin", []byte("twelve bytes"))
	testutil.AssertContent(t, filepath.Join(home, "other.bin"), []byte("twelve bytes"))
}

// headETag is the ETag of key in gw's bucket, through the S3 API.
func headETag(t *testing.T, gw *testutil.S3, key string) string {
	t.Helper()
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(gw.Endpoint()), Region: "us-east-1", UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(gw.Access, gw.Secret, ""),
	})
	out, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &gw.Bucket, Key: &key})
	if err != nil {
		t.Fatalf("HEAD %s: %v", key, err)
	}
	return aws.ToString(out.ETag)
}

// TestS3AborDuringCommit: an ABOR that arrives while a complete upload is
// being committed (the store slow to answer) does not stop the commit,
// and the reply says what happened: 226, the file is stored.
func TestS3AborDuringCommit(t *testing.T) {
	t.Parallel()
	gw := testutil.StartVersityGW(t, "bucket")
	proxy := startStallProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(gw.Port)))
	s, home := s3Server(t, gw, proxy.endpoint(), 5*time.Second, nil)
	data := testutil.Payload(9<<20, 4) // over a part: the streamed path
	c := s.Login(t, s.ClientTLS())
	c.Cmd(200, fmt.Sprintf("ALLO %d", len(data)))
	addr := c.Pasv()
	c.Send("STOR new.bin")
	dc := c.OpenData(addr)
	if _, err := dc.Write(data); err != nil {
		t.Fatal(err)
	}
	proxy.stall.Store(true) // the store receives, and does not answer
	dc.Close()
	time.Sleep(300 * time.Millisecond)
	c.Send("ABOR")
	time.Sleep(300 * time.Millisecond)
	proxy.stall.Store(false)
	if code, msg := c.Read(); code != 226 {
		t.Errorf("the upload's reply after an ABOR during its commit: %d %q; want 226", code, msg)
	}
	c.Expect(226) // the ABOR's
	testutil.AssertContent(t, filepath.Join(home, "new.bin"), data)
	assertNoUploads(t, gw)
}

// assertNoUploads fails unless gw's bucket holds no multipart upload,
// within a few seconds (an aborted upload is checked again in the
// background: a part that lands late can bring it back).
func assertNoUploads(t *testing.T, gw *testutil.S3) {
	t.Helper()
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(gw.Endpoint()), Region: "us-east-1", UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(gw.Access, gw.Secret, ""),
	})
	testutil.WaitFor(t, 8*time.Second, "no multipart upload left", func() bool {
		out, err := c.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &gw.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Uploads) == 0
	})
}

// TestS3AlloRateLimited: under an upload rate limit the ALLO size is not
// streamed (the store would see the throttled pauses): the upload is sent
// in buffered parts, two for 9 MiB, and still held to the size.
func TestS3AlloRateLimited(t *testing.T) {
	t.Parallel()
	gw := testutil.StartVersityGW(t, "bucket")
	s, home := s3Server(t, gw, gw.Endpoint(), 0, func(u *auth.UserConfig) { u.UploadRate = "64MiB" })
	data := testutil.Payload(9<<20, 5)
	c := s.Login(t, s.ClientTLS())
	c.Cmd(200, fmt.Sprintf("ALLO %d", len(data)))
	c.Xfer("STOR new.bin", data)
	testutil.AssertContent(t, filepath.Join(home, "new.bin"), data)
	if etag := strings.Trim(headETag(t, gw, "alice/new.bin"), `"`); !strings.HasSuffix(etag, "-2") {
		t.Errorf("ETag %s: not the two buffered parts", etag)
	}
	c.Cmd(200, "ALLO 10")
	if code, msg := storeRefused(t, c, "STOR", "new.bin", []byte("eleven byte")); code != 552 {
		t.Errorf("11 bytes after ALLO 10: %d %q; want 552", code, msg)
	}
	testutil.AssertContent(t, filepath.Join(home, "new.bin"), data)
}
