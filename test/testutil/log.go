package testutil

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// LogBuffer collects log output written from several goroutines, for
// assertions and for the log shown when a test fails.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// NewLogger returns a debug-level text logger writing into a new buffer.
func NewLogger() (*slog.Logger, *LogBuffer) {
	b := &LogBuffer{}
	return b.Logger(), b
}

// Logger returns a debug-level text logger writing into l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether the log holds s.
func (l *LogBuffer) Contains(s string) bool {
	return strings.Contains(l.String(), s)
}

// Count is the number of log lines that match the regular expression.
func (l *LogBuffer) Count(expr string) int {
	re := regexp.MustCompile(expr)
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if re.MatchString(line) {
			n++
		}
	}
	return n
}

// WaitCount polls until expr matches at least want lines or timeout has
// passed, and returns the count then (for lines logged after a client or
// a goroutine is done).
func (l *LogBuffer) WaitCount(expr string, want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := l.Count(expr)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Wait fails the test unless expr matches at least want lines within
// timeout.
func (l *LogBuffer) Wait(t testing.TB, expr string, want int, timeout time.Duration) {
	t.Helper()
	if n := l.WaitCount(expr, want, timeout); n < want {
		t.Fatalf("the log has %d lines matching %q after %v, want %d", n, expr, timeout, want)
	}
}

// WaitFor polls cond until it holds, and fails the test if it does not
// within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
	}
}
