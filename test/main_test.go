package test

import (
	"os"
	"testing"

	"github.com/ftpsd/ftpsd/test/ftpsdproc"
)

// TestMain removes the ftpsd binary that the tests running real processes
// share (ftpsdproc.Build) once they are done.
func TestMain(m *testing.M) {
	os.Exit(ftpsdproc.Main(m))
}
