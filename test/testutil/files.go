package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Payload returns n bytes of deterministic pseudo-random data, different
// for each seed, so a transfer that mixes up or truncates files shows.
func Payload(n int, seed byte) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// Sum is the hex SHA-256 of b.
func Sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// WriteFile writes a file under dir (name uses slashes), creating parent
// directories, and returns its path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o644))
	return p
}

// AssertContent fails unless the file at path holds exactly want,
// comparing SHA-256 sums (a multi-megabyte diff helps nobody).
func AssertContent(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if Sum(got) != Sum(want) {
		t.Fatalf("%s: %d bytes sha256 %s, want %d bytes sha256 %s", path, len(got), Sum(got)[:16], len(want), Sum(want)[:16])
	}
}

// AssertMissing fails if path exists.
func AssertMissing(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Fatalf("%s exists, want it gone", path)
	}
}

// AssertDirHolds fails unless dir holds exactly the entries named in want,
// so that a stray temporary file or a write outside a jail shows.
func AssertDirHolds(t testing.TB, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(entries))
	for i, e := range entries {
		got[i] = e.Name()
	}
	if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}
