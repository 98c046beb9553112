package test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestInterruptedOverwrite: a client killed in the middle of an upload
// over an existing file (its TLS stream ends without close_notify, its
// control connection drops) leaves the old file or object as it was, and
// no temporary file or multipart upload behind: the listing shows the old
// file only.
func TestInterruptedOverwrite(t *testing.T) {
	t.Parallel()
	// Each client uploads src slowly (16 MB/s: an S3 part of 8 MiB fills
	// in half a second) to old.bin, and lists the home.
	clients := []struct {
		name   string
		upload func(t *testing.T, s *ftpstest.Server, src string) *exec.Cmd
		nlst   func(t *testing.T, s *ftpstest.Server) string
	}{
		{
			name: "curl",
			upload: func(t *testing.T, s *ftpstest.Server, src string) *exec.Cmd {
				c := newCurl(t, s, "--tlsv1.3")
				return startTool(t, c.dir, c.bin, c.args("--limit-rate", "16M", "-T", src, c.url("old.bin"))...)
			},
			nlst: func(t *testing.T, s *ftpstest.Server) string {
				return newCurl(t, s, "--tlsv1.3").ok("--list-only", "ftp://"+s.Addr+"/")
			},
		},
		{
			name: "lftp",
			upload: func(t *testing.T, s *ftpstest.Server, src string) *exec.Cmd {
				c := newLftp(t, s, "")
				return startTool(t, c.dir, c.bin, c.args("set net:limit-rate 16M", "put "+src+" -o old.bin")...)
			},
			nlst: func(t *testing.T, s *ftpstest.Server) string {
				return newLftp(t, s, "").ok("nlist")
			},
		},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b backend) {
				h := b.start(t, ftpstest.Options{})
				src, _ := bigFile(t, t.TempDir(), "new.bin", 64<<20, 50)
				h.interruptOverwrite(t, "old.bin", testutil.Payload(3<<20+5, 51), func() *exec.Cmd {
					return cl.upload(t, h.s, src)
				})
				if got := strings.ReplaceAll(cl.nlst(t, h.s), "\r\n", "\n"); got != "old.bin\n" {
					t.Errorf("NLST after the interrupted overwrite = %q, want only old.bin", got)
				}
			})
		})
	}
}
