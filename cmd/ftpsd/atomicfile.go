package main

import (
	"os"
	"path/filepath"
)

// writeFileAtomic replaces path with data through a temporary file in the
// same directory, fsync and rename, so that a reader (a reload, "ftpsd
// reload") sees the old file or the new one, never a part. prepare, if not
// nil, runs on the temporary file before data is written (to set its
// owner). The file gets mode perm.
func writeFileAtomic(path string, data []byte, perm os.FileMode, prepare func(*os.File) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if prepare != nil {
		if err := prepare(f); err != nil {
			return err
		}
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable. Some file systems cannot sync a
	// directory; the file is in place either way.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
