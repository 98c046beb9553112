package testutil

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// S3 is a versitygw S3 server the test started on 127.0.0.1 over a posix
// directory, with one bucket. Cleanup stops it.
type S3 struct {
	Port           int
	Bucket         string
	Access, Secret string
	// Dir is the gateway's top directory: Dir/Bucket holds the objects.
	Dir  string
	bin  string
	stop func()
}

// Stop stops the server now (Cleanup would); a stopped server is left alone.
func (s *S3) Stop() { s.stop() }

// Endpoint is the server's URL.
func (s *S3) Endpoint() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// StartVersityGW starts versitygw on a free port with bucket made (as the
// posix backend's bucket directory). Without versitygw the test is
// skipped, or fails under CI=true (bash test/run.sh installs it).
func StartVersityGW(t testing.TB, bucket string) *S3 {
	t.Helper()
	path, err := exec.LookPath("versitygw")
	if err != nil {
		if gp, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			cand := filepath.Join(string(trimNL(gp)), "bin", "versitygw")
			if _, serr := os.Stat(cand); serr == nil {
				path, err = cand, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("versitygw is not on PATH and CI=true (bash test/run.sh installs it): %v", err)
		}
		t.Skipf("versitygw is not installed: skipping (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, or bash test/run.sh; with CI=true this fails)")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &S3{Port: port, Bucket: bucket, Access: "ftpsdtestkey", Secret: "ftpsdtestsecret0123456789", Dir: dir, bin: path}
	s.launch(t)
	return s
}

// Restart stops the server if it runs and starts versitygw again on the
// same port, directory and credentials, as an operator restarting the
// store would: what was written before is still there, and a client
// configured with Endpoint reaches it again. Cleanup stops the new
// process.
func (s *S3) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.launch(t)
}

// launch starts versitygw on s's port and directory and waits until it
// answers.
func (s *S3) launch(t testing.TB) {
	t.Helper()
	cmd := exec.Command(s.bin, "--access", s.Access, "--secret", s.Secret,
		"--port", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), "posix", s.Dir)
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	s.stop = sync.OnceFunc(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	t.Cleanup(s.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint() + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("versitygw on port %d exited at start: %s", s.Port, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on port %d not answering after 15s: %v", s.Port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
