package main

import (
	"strings"
	"syscall"
	"testing"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestCheckFileLimit: how many sessions an open-file limit allows, idle and
// all transferring, and whether that caps max_connections.
func TestCheckFileLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		limit    uint64
		maxConns int
		want     fileLimitCheck
	}{
		{"defaults", 1024, 100, fileLimitCheck{idle: 480, transferring: 240}},
		{"issue 10: 10,000 sessions, limit 20,000", 20000, 10000,
			fileLimitCheck{idle: 9968, transferring: 4984, capsIdle: true, capsTransfers: true}},
		{"too low even when idle", 5000, 10000,
			fileLimitCheck{idle: 2468, transferring: 1234, capsIdle: true, capsTransfers: true}},
		{"systemd unit", 65536, 10000, fileLimitCheck{idle: 32736, transferring: 16368}},
		{"below the reserve", 10, 1, fileLimitCheck{capsIdle: true, capsTransfers: true}},
		{"unlimited (RLIM_INFINITY)", ^uint64(0), 1 << 30,
			fileLimitCheck{idle: (1<<40 - fdReserve) / 2, transferring: (1<<40 - fdReserve) / 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkFileLimit(tt.limit, tt.maxConns); got != tt.want {
				t.Errorf("checkFileLimit(%d, %d) = %+v, want %+v", tt.limit, tt.maxConns, got, tt.want)
			}
		})
	}
}

// setSoftLimit sets the soft open-file limit of this process and restores
// the original one when the test ends.
func setSoftLimit(t *testing.T, soft uint64) syscall.Rlimit {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restoring the open-file limit: %v", err)
		}
	})
	low := syscall.Rlimit{Cur: min(soft, orig.Max), Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	return orig
}

// TestRaiseFileLimit: a soft limit below the hard one is raised to it
// (lowering the soft limit is always allowed, so this runs unprivileged).
// Not parallel: it changes the process's limit.
func TestRaiseFileLimit(t *testing.T) {
	orig := setSoftLimit(t, 256)
	soft, hard, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if soft != orig.Max || hard != orig.Max || now.Cur != orig.Max {
		t.Errorf("raiseFileLimit = %d, %d; limit now %d; want all %d (the hard limit)", soft, hard, now.Cur, orig.Max)
	}
}

// TestReportFileLimit: the start-up log says when the limit caps
// max_connections, and with how many sessions it allows; a limit that
// covers it gives no warning.
func TestReportFileLimit(t *testing.T) {
	setSoftLimit(t, 256)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max > 1<<30 {
		t.Skipf("hard open-file limit %d: no max_connections is above it", lim.Max)
	}
	tests := []struct {
		name     string
		maxConns int
		want     []string // in the log; nil: no warning
	}{
		{"covered", 10, nil},
		{"caps sessions", int(lim.Max), []string{"level=WARN", "the open-file limit caps server.max_connections",
			"sessions_possible=", "hard_limit=", "LimitNOFILE"}},
		{"caps transfers", int(lim.Max-fdReserve) / 2, []string{"level=WARN",
			"the open-file limit caps transfers below server.max_connections", "transferring_at_once="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := testutil.NewLogger()
			reportFileLimit(log, tt.maxConns)
			out := buf.String()
			if tt.want == nil && strings.Contains(out, "WARN") {
				t.Errorf("unexpected warning:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
		})
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if now.Cur != lim.Max {
		t.Errorf("soft limit %d after reportFileLimit, want the hard limit %d", now.Cur, lim.Max)
	}
}
