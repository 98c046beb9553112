package testutil

import (
	"strings"
	"testing"
)

// AssertErrContains checks the error a call returned against the substrings
// a table expects: no want means no error, else err must hold every one of
// want. what names the call in the failure messages.
func AssertErrContains(t testing.TB, what string, err error, want ...string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("%s = %v; want nil", what, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s = nil; want an error containing %q", what, want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s = %q; want it to contain %q", what, err, w)
		}
	}
}
