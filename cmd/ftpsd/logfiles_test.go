package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
)

func TestXferlogLine(t *testing.T) {
	end := time.Date(2026, 12, 2, 10, 1, 2, 0, time.Local)
	tests := []struct {
		name string
		rec  ftps.TransferRecord
		want string
	}{
		{"complete download", ftps.TransferRecord{End: end, Duration: 2600 * time.Millisecond, Remote: netip.MustParseAddr("203.0.113.5"),
			User: "alice", Path: "/reports/q3.pdf", Binary: true, Bytes: 1048576, Complete: true},
			"Wed Dec  2 10:01:02 2026 3 203.0.113.5 1048576 /reports/q3.pdf b _ o r alice ftp 0 * c\n"},
		{"aborted ascii upload, sub-second", ftps.TransferRecord{End: end, Duration: 20 * time.Millisecond, Remote: netip.MustParseAddr("2001:db8::7"),
			User: "bob", Path: "/in/my file\r\n.txt", Upload: true, Bytes: 10},
			"Wed Dec  2 10:01:02 2026 1 2001:db8::7 10 /in/my_file__.txt a _ i r bob ftp 0 * i\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := xferlogLine(tt.rec)
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			// 5 date fields and 13 more, whatever the path held.
			if n := len(strings.Fields(got)); n != 18 {
				t.Errorf("%d fields, want 18", n)
			}
		})
	}
}

// TestLogFileReopen: the log file is reopened under its name after it was
// moved away (what logrotate does before SIGUSR1).
func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ftpsd.log")
	var stderr bytes.Buffer
	out, err := openLogs(logConfig{Level: "info", Format: "json", File: path}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	log, _ := newLogger(logConfig{Level: "info", Format: "json"}, out.Writer())
	log.Info("before", "dur", 1500*time.Millisecond)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := out.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("after")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"msg":"before"`) || strings.Contains(string(old), `"after"`) {
		t.Errorf("rotated file: %s", old)
	}
	if !strings.Contains(string(cur), `"msg":"after"`) || strings.Contains(string(cur), `"before"`) {
		t.Errorf("reopened file: %s", cur)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != logFileMode {
		t.Errorf("reopened file mode: %v %v", fi.Mode(), err)
	}
	if strings.Count(stderr.String(), "\n") != 2 {
		t.Errorf("stderr got %q, want both lines", stderr.String())
	}
	// JSON durations are seconds, as numbers.
	var rec map[string]any
	json.Unmarshal([]byte(strings.SplitN(stderr.String(), "\n", 2)[0]), &rec)
	if d, ok := rec["dur"].(float64); !ok || d != 1.5 {
		t.Errorf("dur = %#v, want 1.5", rec["dur"])
	}
}
