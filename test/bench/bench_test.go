// Package bench holds ftpsd's benchmarks: logins, transfers, listings and
// the memory an idle session costs, each against a real in-process server
// from test/ftpstest over loopback TLS.
//
// Run them with
//
//	go test -run='^$' -bench=. -benchtime=1s -count=3 ./test/bench/
//
// docs/performance.md has the figures and what they do and do not mean.
// Plain "go test" runs only TestHelpers, which checks that the helpers the
// benchmarks rely on move the right bytes.
package bench

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// The default test account of ftpstest.
const (
	user = "alice"
	pass = "alice-secret"
)

// idleSessions is how many sessions BenchmarkSessionMemory holds open.
const idleSessions = 200

// listEntries is the size of BenchmarkListDir's directory.
const listEntries = 10_000

// sizes are the files BenchmarkRETR and BenchmarkSTOR move.
var sizes = []struct {
	name string
	n    int
}{
	{"4KiB", 4 << 10},
	{"1MiB", 1 << 20},
	{"64MiB", 64 << 20},
}

// newServer starts a test server whose connection limits leave room for
// idleSessions sessions from 127.0.0.1 (the defaults allow 10 per IP).
func newServer(tb testing.TB) *ftpstest.Server {
	tb.Helper()
	return ftpstest.NewServer(tb, ftpstest.Options{
		Server: func(c *ftps.Config) {
			c.MaxConnections = 2 * idleSessions
			c.MaxConnectionsPerIP = 2 * idleSessions
		},
	})
}

// login opens a control connection and does AUTH TLS, USER, PASS, PBSZ 0,
// PROT P and TYPE I with cfg.
func login(tb testing.TB, s *ftpstest.Server, cfg *tls.Config) *ftpstest.Conn {
	tb.Helper()
	c := s.Login(tb, cfg)
	c.Cmd(200, "TYPE I")
	return c
}

// quit ends a session the polite way.
func quit(tb testing.TB, c *ftpstest.Conn) {
	tb.Helper()
	c.Cmd(221, "QUIT")
	c.Close()
}

// dataCmd runs one data command over EPSV on the logged-in c: it sends
// line, dials the data connection with c's TLS config (so it resumes the
// control session), then either uploads send (when non-nil) or copies what
// the server sends into w. It closes the data connection with close_notify,
// expects 150 then 226, and returns the bytes moved.
func dataCmd(tb testing.TB, c *ftpstest.Conn, line string, send []byte, w io.Writer) int64 {
	tb.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Epsv()))
	c.Send(line)
	dc, err := ftpstest.DialData(tb, addr, c.TLS)
	if err != nil {
		tb.Fatalf("%s: data connection: %v", line, err)
	}
	c.Expect(150)
	var n int64
	if send != nil {
		var m int
		m, err = dc.Write(send)
		n = int64(m)
	} else {
		n, err = io.Copy(w, dc)
	}
	if err != nil {
		tb.Fatalf("%s: data: %v", line, err)
	}
	if err := dc.Close(); err != nil {
		tb.Fatalf("%s: close data: %v", line, err)
	}
	c.Expect(226)
	return n
}

// TestHelpers checks the benchmark helpers end to end, at both TLS
// versions: a STOR and a RETR whose SHA-256 sums match, data connections
// that resume the control session, and an MLSD that lists every entry.
func TestHelpers(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s := newServer(t)
			c := login(t, s, clientTLS(s, v))
			if got := c.ControlState().Version; got != v {
				t.Fatalf("control connection negotiated %s, want %s", tls.VersionName(got), tls.VersionName(v))
			}

			data := testutil.Payload(1<<20+7, 0) // not a multiple of any buffer size
			if n := dataCmd(t, c, "STOR up.bin", data, nil); n != int64(len(data)) {
				t.Fatalf("STOR sent %d bytes, want %d", n, len(data))
			}
			testutil.AssertContent(t, filepath.Join(s.Home(user), "up.bin"), data)

			h := sha256.New()
			if n := dataCmd(t, c, "RETR up.bin", nil, h); n != int64(len(data)) {
				t.Fatalf("RETR got %d bytes, want %d", n, len(data))
			}
			if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("RETR returned other bytes than were stored")
			}

			for i := range 3 {
				testutil.WriteFile(t, s.Home(user), fmt.Sprintf("dir/f%d", i), nil)
			}
			if n := mlsd(t, c, "dir"); n != 3 {
				t.Fatalf("MLSD listed %d entries, want 3", n)
			}
			quit(t, c)
		})
	}
}

// TestResumption guards the premise of the transfer benchmarks: the data
// connections they dial resume the control session rather than paying for
// a full handshake (the server refuses them otherwise, but say so plainly).
func TestResumption(t *testing.T) {
	s := newServer(t)
	c := login(t, s, s.ClientTLS())
	testutil.WriteFile(t, s.Home(user), "f", []byte("x"))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Epsv()))
	c.Send("RETR f")
	dc := c.OpenData(addr) // fails unless it resumed
	io.Copy(io.Discard, dc)
	dc.Close()
	c.Expect(226)
}

// clientTLS is the client configuration of s, at TLS version v only.
func clientTLS(s *ftpstest.Server, v uint16) *tls.Config {
	cfg := s.ClientTLS()
	cfg.MinVersion, cfg.MaxVersion = v, v
	return cfg
}

// mlsd lists dir with MLSD and returns the number of entries.
func mlsd(tb testing.TB, c *ftpstest.Conn, dir string) int {
	tb.Helper()
	var lc lineCounter
	dataCmd(tb, c, "MLSD "+dir, nil, &lc)
	return lc.lines
}

// lineCounter counts the lines written to it.
type lineCounter struct{ lines int }

func (l *lineCounter) Write(p []byte) (int, error) {
	l.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// BenchmarkLogin is one whole session without data: connect, 220, AUTH
// TLS with a full handshake (the client offers no session: the server
// never resumes a control connection anyway), USER and PASS against the
// cheap test hash, PBSZ, PROT, TYPE, QUIT. With the production argon2id
// parameters the hash alone costs far more; see docs/performance.md.
func BenchmarkLogin(b *testing.B) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		b.Run(tls.VersionName(v), func(b *testing.B) {
			s := newServer(b)
			cfg := clientTLS(s, v)
			cfg.ClientSessionCache = nil
			for b.Loop() {
				quit(b, login(b, s, cfg))
			}
		})
	}
}

// BenchmarkRETR downloads one file repeatedly over a single logged-in
// session: EPSV, RETR, a resumed TLS data connection, 226.
func BenchmarkRETR(b *testing.B) {
	for _, size := range sizes {
		b.Run(size.name, func(b *testing.B) {
			s := newServer(b)
			testutil.WriteFile(b, s.Home(user), "file.bin", testutil.Payload(size.n, 0))
			c := login(b, s, s.ClientTLS())
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if n := dataCmd(b, c, "RETR file.bin", nil, io.Discard); n != int64(size.n) {
					b.Fatalf("RETR got %d bytes, want %d", n, size.n)
				}
			}
		})
	}
}

// BenchmarkRETRMetrics is BenchmarkRETR's 64 MiB download with and
// without the Prometheus collectors (a counter update per data read or
// write), to show what metrics cost on the data path.
func BenchmarkRETRMetrics(b *testing.B) {
	const n = 64 << 20
	for _, on := range []bool{false, true} {
		b.Run("metrics="+strconv.FormatBool(on), func(b *testing.B) {
			opts := ftpstest.Options{}
			if on {
				m, err := ftps.NewMetrics(prometheus.NewRegistry())
				if err != nil {
					b.Fatal(err)
				}
				opts.Metrics = m
			}
			s := ftpstest.NewServer(b, opts)
			testutil.WriteFile(b, s.Home(user), "file.bin", testutil.Payload(n, 0))
			c := login(b, s, s.ClientTLS())
			b.SetBytes(n)
			for b.Loop() {
				if got := dataCmd(b, c, "RETR file.bin", nil, io.Discard); got != n {
					b.Fatalf("RETR got %d bytes, want %d", got, n)
				}
			}
		})
	}
}

// BenchmarkSTOR uploads one file repeatedly over a single logged-in
// session. The target exists, so every STOR takes the server's atomic
// path: a temporary file, fsync, rename over the old one.
func BenchmarkSTOR(b *testing.B) {
	for _, size := range sizes {
		b.Run(size.name, func(b *testing.B) {
			s := newServer(b)
			data := testutil.Payload(size.n, 0)
			testutil.WriteFile(b, s.Home(user), "file.bin", data)
			c := login(b, s, s.ClientTLS())
			b.SetBytes(int64(size.n))
			for b.Loop() {
				dataCmd(b, c, "STOR file.bin", data, nil)
			}
		})
	}
}

// BenchmarkListDir lists a directory of listEntries empty files with MLSD.
func BenchmarkListDir(b *testing.B) {
	s := newServer(b)
	dir := filepath.Join(s.Home(user), "big")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range listEntries {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%05d.dat", i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	c := login(b, s, s.ClientTLS())
	for b.Loop() {
		if n := mlsd(b, c, "big"); n != listEntries {
			b.Fatalf("MLSD listed %d entries, want %d", n, listEntries)
		}
	}
	b.ReportMetric(float64(listEntries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkSessionMemory opens idleSessions logged-in sessions and reports
// what they hold once idle, per session:
//
//   - heap-B/session: the HeapInuse delta, less the bytes the test server
//     logged meanwhile (ftpstest keeps a debug log in memory). Client and
//     server share this process, so it also counts the client's half of
//     each connection (its tls.Conn and buffers): an upper bound for the
//     server.
//   - stack-B/session: the StackInuse delta; idle clients hold no
//     goroutine, so this is the server's session goroutine.
//
// ns/op is the time to open all the sessions, which is not the point.
func BenchmarkSessionMemory(b *testing.B) {
	s := newServer(b)
	cfg := s.ClientTLS()
	quit(b, login(b, s, cfg)) // first-use allocations out of the way
	baseGoroutines := waitGoroutines(b, -1)
	var heap, stack float64
	for b.Loop() {
		waitGoroutines(b, baseGoroutines) // the previous round's sessions are gone
		// memStats runs first: the copy String makes is garbage by the
		// next memStats, whose collection frees it.
		before, logBefore := memStats(), len(s.Log.String())
		conns := make([]*ftpstest.Conn, idleSessions)
		for i := range conns {
			conns[i] = login(b, s, cfg)
		}
		after, logAfter := memStats(), len(s.Log.String())
		heap += float64(int64(after.HeapInuse)-int64(before.HeapInuse)-int64(logAfter-logBefore)) / idleSessions
		stack += float64(int64(after.StackInuse)-int64(before.StackInuse)) / idleSessions
		runtime.KeepAlive(conns)
		for _, c := range conns {
			quit(b, c)
		}
	}
	b.ReportMetric(heap/float64(b.N), "heap-B/session")
	b.ReportMetric(stack/float64(b.N), "stack-B/session")
}

// memStats returns the memory statistics after two collections (the
// second frees what the first's finalizers released).
func memStats() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// waitGoroutines waits up to 10 s for the goroutine count to fall to want
// and returns the count; want < 0 waits for it to settle.
func waitGoroutines(tb testing.TB, want int) int {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	prev := -1
	for {
		n := runtime.NumGoroutine()
		if (want >= 0 && n <= want) || (want < 0 && n == prev) {
			return n
		}
		if time.Now().After(deadline) {
			if want >= 0 {
				tb.Fatalf("%d goroutines after closing every session, want at most %d", n, want)
			}
			return n
		}
		prev = n
		time.Sleep(20 * time.Millisecond)
	}
}

// hashFileSize is the file BenchmarkHASH hashes.
const hashFileSize = 256 << 20

// BenchmarkHASH hashes a 256 MiB file (in the page cache after the first
// run) with HASH over one logged-in session, for each algorithm, and the
// same file with the standard library in the benchmark process ("local"),
// which is what the server cannot beat. B/op counts client and server
// together: it stays far below the file's size, because HASH streams the
// file through one pooled buffer.
func BenchmarkHASH(b *testing.B) {
	s := newServer(b)
	path := filepath.Join(s.Home(user), "file.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for i := range hashFileSize >> 20 {
		if _, err := f.Write(testutil.Payload(1<<20, byte(i))); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	c := login(b, s, s.ClientTLS())
	for _, alg := range []string{"SHA-256", "SHA-512", "SHA-1", "MD5", "CRC32"} {
		b.Run(alg, func(b *testing.B) {
			c.Cmd(200, "OPTS HASH "+alg)
			want := fmt.Sprintf("%s 0-%d ", alg, hashFileSize-1)
			b.SetBytes(hashFileSize)
			b.ReportAllocs()
			for b.Loop() {
				if got := c.Cmd(213, "HASH file.bin"); !strings.HasPrefix(got, want) {
					b.Fatalf("HASH: %q", got)
				}
			}
		})
	}
	b.Run("local-SHA-256", func(b *testing.B) {
		b.SetBytes(hashFileSize)
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// BenchmarkS3 is BenchmarkRETR's and BenchmarkSTOR's 64 MiB transfers
// with the home in a versitygw S3 server on loopback (its posix backend on
// the same disk), to compare with the local backend.
func BenchmarkS3(b *testing.B) {
	const n = 64 << 20
	gw := testutil.StartVersityGW(b, "bucket")
	s := ftpstest.NewServer(b, ftpstest.Options{
		Server: func(c *ftps.Config) {
			c.S3 = ftps.S3Config{Endpoint: gw.Endpoint(), PathStyle: true, AccessKeyID: gw.Access, SecretAccessKey: gw.Secret}
			if err := c.S3.Validate(); err != nil {
				b.Fatal(err)
			}
		},
		Users: []ftpstest.User{{Name: user, Password: pass, Config: func(u *auth.UserConfig) {
			u.Home = "s3://" + gw.Bucket + "/" + user + "/"
		}}},
	})
	data := testutil.Payload(n, 0)
	c := login(b, s, s.ClientTLS())
	dataCmd(b, c, "STOR file.bin", data, nil)
	b.Run("STOR-64MiB", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			dataCmd(b, c, "STOR file.bin", data, nil)
		}
	})
	// With the size announced: one part streamed to the store.
	b.Run("STOR-ALLO-64MiB", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			c.Cmd(200, "ALLO "+strconv.Itoa(n))
			dataCmd(b, c, "STOR file.bin", data, nil)
		}
	})
	// A small file: the requests per command count, not the bytes.
	small := testutil.Payload(4<<10, 1)
	dataCmd(b, c, "STOR small.bin", small, nil)
	b.Run("RETR-4KiB", func(b *testing.B) {
		b.SetBytes(int64(len(small)))
		for b.Loop() {
			if got := dataCmd(b, c, "RETR small.bin", nil, io.Discard); got != int64(len(small)) {
				b.Fatalf("RETR got %d bytes, want %d", got, len(small))
			}
		}
	})
	// A directory's listing: its requests too.
	c.Cmd(257, "MKD dir")
	dataCmd(b, c, "STOR dir/small.bin", small, nil)
	b.Run("MLSD-dir", func(b *testing.B) {
		for b.Loop() {
			if got := dataCmd(b, c, "MLSD dir", nil, io.Discard); got == 0 {
				b.Fatal("MLSD dir: empty listing")
			}
		}
	})
	b.Run("RETR-64MiB", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			if got := dataCmd(b, c, "RETR file.bin", nil, io.Discard); got != n {
				b.Fatalf("RETR got %d bytes, want %d", got, n)
			}
		}
	})
}

// BenchmarkS3Direct is the store's own ceiling for BenchmarkS3: the same
// 64 MiB written as a multipart upload of 8 MiB parts (one at a time) and
// read with one GetObject, straight from the S3 API, without FTP or TLS.
func BenchmarkS3Direct(b *testing.B) {
	const n, part = 64 << 20, 8 << 20
	gw := testutil.StartVersityGW(b, "bucket")
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(gw.Endpoint()), Region: "us-east-1", UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(gw.Access, gw.Secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	ctx := b.Context()
	data := testutil.Payload(n, 0)
	key := "direct/file.bin"
	put := func() {
		up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &gw.Bucket, Key: &key})
		if err != nil {
			b.Fatal(err)
		}
		var parts []types.CompletedPart
		for i := 0; i < n; i += part {
			num := aws.Int32(int32(i/part + 1))
			out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &gw.Bucket, Key: &key, UploadId: up.UploadId,
				PartNumber: num, Body: bytes.NewReader(data[i : i+part]), ContentLength: aws.Int64(part)})
			if err != nil {
				b.Fatal(err)
			}
			parts = append(parts, types.CompletedPart{PartNumber: num, ETag: out.ETag})
		}
		if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &gw.Bucket, Key: &key,
			UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
			b.Fatal(err)
		}
	}
	put()
	b.Run("PUT-multipart-64MiB", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			put()
		}
	})
	b.Run("GET-64MiB", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &gw.Bucket, Key: &key})
			if err != nil {
				b.Fatal(err)
			}
			if got, err := io.Copy(io.Discard, out.Body); err != nil || got != n {
				b.Fatalf("GET: %d bytes, %v", got, err)
			}
			out.Body.Close()
		}
	})
}
