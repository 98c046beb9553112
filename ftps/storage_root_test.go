package ftps

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
)

func TestIsTempName(t *testing.T) {
	for name, want := range map[string]bool{
		tempName():                  true,
		".ftpsd-ABCDEFGHIJKL.part":  true,
		".ftpsd-ABC.part":           false,
		"ftpsd-ABCDEFGHIJKL.part":   false,
		".ftpsd-ABCDEFGHIJKL.partx": false,
	} {
		if got := isTempName(name); got != want {
			t.Errorf("isTempName(%q) = %t, want %t", name, got, want)
		}
	}
}

// TestRootReadDir: a listing comes in bounded chunks, hides temporary
// upload files, shows a link inside the home under its own name as what it
// points to, and leaves out links that are broken or lead out.
func TestRootReadDir(t *testing.T) {
	st, dir := newTestStorage(t)
	outside := t.TempDir()
	const n = 600
	for i := range n {
		os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), nil, 0o644)
	}
	os.WriteFile(filepath.Join(dir, tempName()), nil, 0o600)
	os.Symlink("f1", filepath.Join(dir, "good-link"))
	os.Symlink(outside, filepath.Join(dir, "out-link"))
	os.Symlink("missing", filepath.Join(dir, "broken-link"))

	d, err := st.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var names []string
	for {
		infos, err := d.Next(256)
		if len(infos) > 256 {
			t.Fatalf("chunk of %d entries", len(infos))
		}
		for _, fi := range infos {
			names = append(names, fi.Name())
			if fi.Name() == "good-link" && !fi.Mode().IsRegular() {
				t.Errorf("good-link shown as %v, want what it points to", fi.Mode())
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(names)
	if len(names) != n+1 {
		t.Errorf("%d entries, want %d files and good-link", len(names), n+1)
	}
	for _, name := range names {
		if isTempName(name) || name == "out-link" || name == "broken-link" {
			t.Errorf("listing shows %q", name)
		}
	}
	if i := sort.SearchStrings(names, "good-link"); i == len(names) || names[i] != "good-link" {
		t.Error("listing hides good-link")
	}
}

// TestRootOpen: only regular files are read, from an offset within them.
func TestRootOpen(t *testing.T) {
	st, dir := newTestStorage(t)
	os.WriteFile(filepath.Join(dir, "f"), []byte("0123456789"), 0o644)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		offset int64
		want   string
		err    error
	}{
		{"f", 0, "0123456789", nil},
		{"f", 7, "789", nil},
		{"f", 10, "", nil},
		{"f", 11, "", errBeyondEnd},
		{"d", 0, "", errNotRegular},
		{"fifo", 0, "", errNotRegular}, // and it does not block
		{"missing", 0, "", os.ErrNotExist},
	}
	for _, tt := range tests {
		f, _, err := st.Open(tt.name, tt.offset)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Open(%q, %d) = %v, want %v", tt.name, tt.offset, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q, %d): %v", tt.name, tt.offset, err)
			continue
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if string(got) != tt.want {
			t.Errorf("Open(%q, %d) reads %q, want %q", tt.name, tt.offset, got, tt.want)
		}
	}
}

// TestRootRmdir: RMD removes directories only.
func TestRootRmdir(t *testing.T) {
	st, dir := newTestStorage(t)
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	if r := errReply(st.Rmdir("f")); r != (reply{550, "Not a directory."}) {
		t.Errorf("Rmdir of a file: %v", r)
	}
	if err := st.Rmdir("d"); err != nil {
		t.Errorf("Rmdir of a directory: %v", err)
	}
}
