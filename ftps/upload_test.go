package ftps

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newTestStorage is a root storage over a fresh directory.
func newTestStorage(t *testing.T) (*rootStorage, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := openRootStorage(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

// noTempFiles fails if a temporary upload file is left in dir.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if isTempName(e.Name()) {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

// TestUploadCommitRules: what each way of writing leaves behind when the
// upload completes, may be truncated (no close_notify), or is cancelled.
func TestUploadCommitRules(t *testing.T) {
	tests := []struct {
		name      string
		old       string // "" for no file
		mode      writeMode
		offset    int64
		data      string
		truncated bool
		cancel    bool
		want      string
		wantCode  int    // settle's reply (not for cancel)
		wantText  string // in the reply
	}{
		{"new file, complete", "", writeNew, 0, "abc", false, false, "abc", 226, ""},
		{"new file, truncated keeps its bytes", "", writeNew, 0, "abc", true, false, "abc", 426, "3 bytes received and kept (file size 3)"},
		{"new file, cancel keeps its bytes", "", writeNew, 0, "abc", false, true, "abc", 0, ""},
		{"replace, complete", "old", writeReplace, 0, "new!", false, false, "new!", 226, ""},
		{"replace, truncated discards", "old", writeReplace, 0, "new!", true, false, "old", 426, "old file kept"},
		{"replace, cancel keeps the old file", "old", writeReplace, 0, "new!", false, true, "old", 0, ""},
		{"REST+STOR drops the old tail at commit", "0123456789", writeAt, 2, "ab", false, false, "01ab", 226, ""},
		{"REST+STOR truncated: kept, tail dropped", "0123456789", writeAt, 4, "ab", true, false, "0123ab", 426, "file size 6"},
		{"append reports the file size", "xyz", writeAppend, 0, "12", true, false, "xyz12", 426, "2 bytes received and kept (file size 5)"},
		{"append creates", "", writeAppend, 0, "12", false, false, "12", 226, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, dir := newTestStorage(t)
			target := filepath.Join(dir, "f")
			if tt.old != "" {
				if err := os.WriteFile(target, []byte(tt.old), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			up := &upload{st: st, name: "f", mode: tt.mode, offset: tt.offset}
			w, err := up.open()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(tt.data)); err != nil {
				t.Fatal(err)
			}
			if tt.cancel {
				up.cancel()
			} else {
				r := settle(slog.New(slog.DiscardHandler), "test", up, int64(len(tt.data)), tt.truncated)
				if r.code != tt.wantCode || !strings.Contains(r.text, tt.wantText) {
					t.Errorf("reply %v, want %d with %q", r, tt.wantCode, tt.wantText)
				}
			}
			if got, err := os.ReadFile(target); err != nil || string(got) != tt.want {
				t.Errorf("file holds %q (%v), want %q", got, err, tt.want)
			}
			noTempFiles(t, dir)
			if tt.mode == writeReplace && tt.old != "" {
				if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o640 {
					t.Errorf("mode after replace: %v, %v; want the old 0640", fi.Mode(), err)
				}
			}
		})
	}
}

// TestUploadNewRefusesExisting: an in-place new file never overwrites (the
// target appeared after the checks).
func TestUploadNewRefusesExisting(t *testing.T) {
	st, dir := newTestStorage(t)
	os.WriteFile(filepath.Join(dir, "f"), []byte("theirs"), 0o644)
	up := &upload{st: st, name: "f", mode: writeNew}
	_, err := up.open()
	if r := createFailed(err); r != (reply{550, "File exists."}) {
		t.Errorf("open over an existing file: %v, reply %v", err, r)
	}
}

// TestReplaceThroughParentHandle: the temporary file is created, renamed
// and removed through one handle on the parent directory, so a directory
// moved away meanwhile gets the new file (or loses the temporary one) and
// the directory now at its old path is untouched.
func TestReplaceThroughParentHandle(t *testing.T) {
	for _, cancel := range []bool{false, true} {
		st, dir := newTestStorage(t)
		os.Mkdir(filepath.Join(dir, "d"), 0o755)
		os.WriteFile(filepath.Join(dir, "d", "f"), []byte("old"), 0o644)
		up := &upload{st: st, name: "d/f", mode: writeReplace}
		w, err := up.open()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("new"))
		if err := os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "moved")); err != nil {
			t.Fatal(err)
		}
		os.Mkdir(filepath.Join(dir, "d"), 0o755)
		want := "new"
		if cancel {
			up.cancel()
			want = "old"
		} else if _, err := up.commit(); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "moved", "f")); string(got) != want {
			t.Errorf("cancel=%t: moved/f holds %q, want %q", cancel, got, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "d", "f")); !os.IsNotExist(err) {
			t.Errorf("cancel=%t: the new d/f was written: %v", cancel, err)
		}
		noTempFiles(t, filepath.Join(dir, "moved"))
		noTempFiles(t, filepath.Join(dir, "d"))
	}
}
