package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/test/acmetest"
	"github.com/ftpsd/ftpsd/test/testutil"
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

// TestCheckConfigS3Store: check-config asks the store of the s3:// homes
// (a listing of one key, nothing written): a real versitygw is reported
// reachable; a wrong secret, a missing bucket and a closed port are
// warnings that say what to fix, and check-config still exits 0 (the store
// may be down while the configuration is right).
func TestCheckConfigS3Store(t *testing.T) {
	gw := testutil.StartVersityGW(t, "bucket")
	secretFile := func(secret string) string {
		p := filepath.Join(t.TempDir(), "s3-secret")
		if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	closed := acmetest.FreePort(t) // nothing listens there
	tests := []struct {
		name, endpoint, home, secret string
		want                         []string
	}{
		{"reachable", gw.Endpoint(), "s3://bucket/users/demo/", gw.Secret, []string{"bucket bucket", "reachable"}},
		{"wrong secret", gw.Endpoint(), "s3://bucket/users/demo/", "not-the-secret", []string{"NOT REACHABLE", `storage.s3: bucket "bucket": credentials refused: the secret access key is wrong`}},
		{"no bucket", gw.Endpoint(), "s3://nobucket/demo/", gw.Secret, []string{`storage.s3: bucket "nobucket": the home's bucket does not exist`}},
		{"closed port", "http://127.0.0.1:" + strconv.Itoa(closed), "s3://bucket/demo/", gw.Secret, []string{`storage.s3: bucket "bucket": cannot reach storage.s3.endpoint`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := exampleInTemp(t,
				`home = "var/home/demo"`, `home = "`+tt.home+`"`,
				`endpoint = ""`, `endpoint = "`+tt.endpoint+`"`,
				`path_style = false`, `path_style = true`,
				`access_key_id = ""`, `access_key_id = "`+gw.Access+`"`,
				`secret_access_key_file = ""`, `secret_access_key_file = "`+secretFile(tt.secret)+`"`)
			r := runCmd(t, "", "check-config", "-config", path)
			if r.code != exitOK {
				t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(gw.Dir, gw.Bucket)); len(entries) != 0 {
		t.Errorf("check-config wrote %d entries into the bucket", len(entries))
	}
}
