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

// Restart stops the server if it runs and starts versitygw again on the
// same port, directory and credentials, as an operator restarting the
// store would: what was written before is still there, and a client
// configured with Endpoint reaches it again. Cleanup stops the new
// process.
func (s *S3) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	path, err := exec.LookPath("versitygw")
	if err != nil {
		gp, gerr := exec.Command("go", "env", "GOPATH").Output()
		if gerr != nil {
			t.Fatalf("versitygw: %v", err)
		}
		path = filepath.Join(string(trimNL(gp)), "bin", "versitygw") // StartVersityGW found it there
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--access", s.Access, "--secret", s.Secret,
		"--port", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("restarting versitygw: %v", err)
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
			t.Fatalf("versitygw restarted on port %d exited at start: %s", s.Port, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw restarted on port %d not answering after 15s: %v", s.Port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
