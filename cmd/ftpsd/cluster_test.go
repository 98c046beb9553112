package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigCluster: check-config accepts a [cluster] redis URL
// without asking Redis, warns about a password in the URL (never printing
// it), is silent with redis_password_file, and names the key of a bad URL.
func TestCheckConfigCluster(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "redis.pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		edits    []string
		wantCode int
		want     string // in stdout (exitOK) or stderr
		warn     bool
	}{
		{name: "url", edits: []string{`redis = ""`, `redis = "redis://127.0.0.1:1/0"`}, wantCode: exitOK},
		{name: "password in url", edits: []string{`redis = ""`, `redis = "redis://:hunter2@127.0.0.1:1/0"`}, wantCode: exitOK, warn: true},
		{name: "password file", edits: []string{`redis = ""`, `redis = "redis://127.0.0.1:1/0"`, `redis_password_file = ""`, `redis_password_file = "` + pw + `"`}, wantCode: exitOK},
		{name: "bad url", edits: []string{`redis = ""`, `redis = "http://127.0.0.1/"`}, wantCode: exitError, want: "cluster.redis: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, "", "check-config", "-config", exampleInTemp(t, tt.edits...))
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d: %s%s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, tt.want) {
				t.Errorf("output lacks %q:\n%s%s", tt.want, r.stdout, r.stderr)
			}
			if warned := strings.Contains(r.stdout, "cluster.redis holds a password"); warned != tt.warn {
				t.Errorf("warned %t, want %t:\n%s", warned, tt.warn, r.stdout)
			}
			if strings.Contains(r.stdout+r.stderr, "hunter2") {
				t.Errorf("the password was printed:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}
