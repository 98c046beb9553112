package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigS3 checks [storage.s3] and s3:// homes through
// check-config: the home is accepted without a directory being made, and
// each bad value names its key.
func TestCheckConfigS3(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "s3-secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const home = `home = "var/home/demo"`
	tests := []struct {
		name     string
		edits    []string
		wantCode int
		want     string
		warn     bool
	}{
		{name: "s3 home", edits: []string{home, `home = "s3://bucket/users/demo/"`, `endpoint = ""`, `endpoint = "http://127.0.0.1:7070"`}, wantCode: exitOK},
		{name: "static credentials", edits: []string{home, `home = "s3://bucket/"`, `access_key_id = ""`, `access_key_id = "AK"`, `secret_access_key_file = ""`, `secret_access_key_file = "` + secret + `"`}, wantCode: exitOK},
		{name: "inline secret", edits: []string{home, `home = "s3://bucket/"`, `access_key_id = ""`, `access_key_id = "AK"`, `secret_access_key = ""`, `secret_access_key = "hunter2"`}, wantCode: exitOK, warn: true},
		{name: "home with dots", edits: []string{home, `home = "s3://bucket/a/../b/"`}, wantCode: exitError, want: "prefix must be clean"},
		{name: "home without bucket", edits: []string{home, `home = "s3:///x/"`}, wantCode: exitError, want: "names no bucket"},
		{name: "bad endpoint", edits: []string{`endpoint = ""`, `endpoint = "ftp://x"`}, wantCode: exitError, want: "storage.s3.endpoint: "},
		{name: "bad part size", edits: []string{`part_size_mib = 8`, `part_size_mib = 2`}, wantCode: exitError, want: "storage.s3.part_size_mib: "},
		{name: "key without secret", edits: []string{`access_key_id = ""`, `access_key_id = "AK"`}, wantCode: exitError, want: "storage.s3.secret_access_key_file: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := exampleInTemp(t, tt.edits...)
			r := runCmd(t, "", "check-config", "-config", path)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d: %s%s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, tt.want) {
				t.Errorf("output lacks %q:\n%s%s", tt.want, r.stdout, r.stderr)
			}
			if warned := strings.Contains(r.stdout, "storage.s3.secret_access_key is readable"); warned != tt.warn {
				t.Errorf("warned %t, want %t:\n%s", warned, tt.warn, r.stdout)
			}
			if strings.Contains(r.stdout+r.stderr, "hunter2") {
				t.Errorf("the secret was printed:\n%s%s", r.stdout, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), "s3:")); err == nil {
				t.Error("an s3:// home was made a directory")
			}
		})
	}
}
