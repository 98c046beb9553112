package test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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

// backend is where a test server keeps alice's files, so that one client
// test body runs against each storage: a local directory, or the prefix
// alice/ of a bucket in a versitygw the test starts. Its fields are what
// the client may expect of the storage.
type backend struct {
	name string
	s3   bool
	// resumeUploads: APPE and REST+STOR work; on S3 they are refused with
	// a 502 and the object stays as it was.
	resumeUploads bool
	// renameDirs: RNFR/RNTO of a directory works; on S3 it is a 502.
	renameDirs bool
	// unique: MLSD gives each entry a unique fact (S3 has no inode).
	unique bool
	// filePerm and dirPerm are the MLSD perm facts of a file and a
	// directory. On S3 they do not offer append (a) nor a directory's
	// rename (f), which S3 cannot do.
	filePerm, dirPerm string
}

// The backends.
var (
	localBackend = backend{name: "local", resumeUploads: true, renameDirs: true, unique: true, filePerm: "rawdf", dirPerm: "elcmdpf"}
	s3Backend    = backend{name: "s3", s3: true, filePerm: "rwdf", dirPerm: "elcmdp"}
	// backends are the homes every real-client test runs against.
	backends = []backend{localBackend, s3Backend}
)

// eachBackend runs f as a parallel subtest for each of backends.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

// home is alice's home on a running test server.
type home struct {
	backend
	s *ftpstest.Server
	// dir holds alice's files on disk: the home itself, or on S3 the
	// directory where versitygw's posix backend keeps the objects under
	// alice/ (the object alice/k is the file dir/k, a directory's marker
	// a directory), so that a test seeds and checks objects as files.
	dir string
	gw  *testutil.S3 // nil unless s3
}

// start starts a test server with opts whose user alice has her home on b.
func (b backend) start(t *testing.T, opts ftpstest.Options) *home {
	t.Helper()
	if !b.s3 {
		s := ftpstest.NewServer(t, opts)
		return &home{backend: b, s: s, dir: s.Home(user)}
	}
	gw := testutil.StartVersityGW(t, "bucket")
	s := ftpstest.NewServer(t, s3Options(t, gw, opts))
	dir := filepath.Join(gw.Dir, gw.Bucket, "alice")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &home{backend: b, s: s, dir: dir, gw: gw}
}

// newS3Server starts versitygw and an in-process server whose user alice
// has the home s3://bucket/alice/.
func newS3Server(t *testing.T) (*ftpstest.Server, *testutil.S3) {
	t.Helper()
	gw := testutil.StartVersityGW(t, "bucket")
	return newS3ServerOn(t, gw), gw
}

// newS3ServerOn starts a server whose user alice has her home in gw.
func newS3ServerOn(t *testing.T, gw *testutil.S3) *ftpstest.Server {
	t.Helper()
	return ftpstest.NewServer(t, s3Options(t, gw, ftpstest.Options{}))
}

// s3Options is opts with [storage.s3] pointing at gw and alice's home at
// s3://bucket/alice/ (her other settings as opts has them).
func s3Options(t *testing.T, gw *testutil.S3, opts ftpstest.Options) ftpstest.Options {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "s3-secret")
	if err := os.WriteFile(secret, []byte(gw.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	server := opts.Server
	opts.Server = func(c *ftps.Config) {
		if server != nil {
			server(c) // may set c.S3.MFMT
		}
		c.S3 = ftps.S3Config{Endpoint: gw.Endpoint(), PathStyle: true, AccessKeyID: gw.Access, SecretAccessKeyFile: secret, MFMT: c.S3.MFMT}
		if err := c.S3.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	users := opts.Users
	if len(users) == 0 {
		users = []ftpstest.User{ftpstest.DefaultUser}
	}
	opts.Users = nil
	for _, u := range users {
		if u.Name == user {
			config := u.Config
			u.Config = func(c *auth.UserConfig) {
				if config != nil {
					config(c)
				}
				c.Home = "s3://" + gw.Bucket + "/alice/"
			}
		}
		opts.Users = append(opts.Users, u)
	}
	return opts
}

// s3Client is an S3 client of gw, for what only the API shows.
func s3Client(gw *testutil.S3) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(gw.Endpoint()),
		Region:       "us-east-1",
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(gw.Access, gw.Secret, ""),
	})
}

// uploads lists the keys of the bucket's unfinished multipart uploads.
func (h *home) uploads(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := s3Client(h.gw).ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &h.gw.Bucket})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

// uploading reports an overwrite in progress that has stored data on the
// side: a temporary file with bytes in it, or on S3 a multipart upload
// (its first part is on its way).
func (h *home) uploading(t *testing.T) bool {
	t.Helper()
	if h.s3 {
		return len(h.uploads(t)) > 0
	}
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".ftpsd-") && strings.HasSuffix(e.Name(), ".part") {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				return true
			}
		}
	}
	return false
}

// assertClean fails unless the home holds exactly names (no temporary
// file, no stray object) and, on S3, no multipart upload is left.
func (h *home) assertClean(t *testing.T, names ...string) {
	t.Helper()
	testutil.AssertDirHolds(t, h.dir, names...)
	if h.s3 {
		if keys := h.uploads(t); len(keys) > 0 {
			t.Errorf("multipart uploads left: %q", keys)
		}
	}
}

// interruptOverwrite overwrites name, which holds old, by a client that
// dies in the middle: start begins an upload of more than one S3 part
// (slowly enough to be caught), and once the server stores data on the
// side the client is killed. The server must end the transfer with
// anything but 226 and keep the old file or object, and leave nothing
// behind. others are the other names in the home.
func (h *home) interruptOverwrite(t *testing.T, name string, old []byte, start func() *exec.Cmd, others ...string) {
	t.Helper()
	testutil.WriteFile(t, h.dir, name, old)
	transfers := `msg=transfer .* op="STOR /` + name + `" code=`
	before := h.s.Log.Count(transfers)
	cmd := start()
	deadline := time.Now().Add(20 * time.Second)
	for !h.uploading(t) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no upload of %s in progress after 20s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	h.s.Log.Wait(t, transfers, before+1, 20*time.Second)
	for _, line := range strings.Split(h.s.Log.String(), "\n") {
		if regexp.MustCompile(transfers).MatchString(line) {
			t.Logf("interrupted: %s", line[strings.Index(line, "op="):])
		}
	}
	if n := h.s.Log.Count(transfers + `226`); n != 0 {
		t.Errorf("the interrupted overwrite of %s was answered 226", name)
	}
	testutil.AssertContent(t, filepath.Join(h.dir, name), old)
	h.assertClean(t, append(others, name)...)
}

// startTool starts an external client the test will kill, in dir, with
// its output in the test log.
func startTool(t *testing.T, dir string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "HOME=" + dir}
	cmd.WaitDelay = 5 * time.Second
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	t.Logf("$ %s %s (started, pid %d)", name, strings.Join(args, " "), cmd.Process.Pid)
	return cmd
}

// bigFile writes size pseudo-random bytes (seeded by seed) to dir/name
// without holding them, and returns the path and the hex SHA-256.
func bigFile(t *testing.T, dir, name string, size int64, seed byte) (string, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	src := newPayloadReader(size, seed)
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, src.Sum()
}

// failsWith runs a client command that must fail with the reply code:
// run must return an error and the server must have sent that reply. The
// server's log is the witness, not the client's output: a client that is
// already sending data when a refusal comes (the reply follows the 150 on
// S3) may see the data connection reset before it reads the reply.
func failsWith(t *testing.T, s *ftpstest.Server, code int, what string, run func() error) {
	t.Helper()
	expr := fmt.Sprintf(`msg=reply .* code=%d$`, code)
	before := s.Log.Count(expr)
	if err := run(); err == nil {
		t.Errorf("%s succeeded, want a failure on a %d", what, code)
		return
	}
	if n := s.Log.WaitCount(expr, before+1, 5*time.Second); n == before {
		t.Errorf("%s failed, but the server sent no %d", what, code)
	}
}
