package main

import (
	"fmt"
	"log/slog"
	"syscall"
)

// What the open-file limit must leave room for. A session holds its
// control connection, and while it transfers a data connection (or a
// passive listener) and a file; a user's home is one more, shared by all
// of that user's sessions, so counted per session for the worst case of
// sessions of different users. fdReserve is the rest: listeners, log
// files, the control socket, the state files, certificate reloads.
const (
	fdsPerIdleSession     = 2
	fdsPerTransferSession = 4
	fdReserve             = 64
)

// raiseFileLimit raises the soft open-file limit (RLIMIT_NOFILE) to the
// hard limit, and returns both as they are afterwards. The Go runtime
// already tries this at start; it is done again here so that a refusal
// (a seccomp filter without setrlimit, say) is reported rather than
// silent. err is the refusal; soft and hard are still the limits in force.
func raiseFileLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur >= lim.Max {
		return lim.Cur, lim.Max, nil
	}
	want := lim
	want.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return lim.Cur, lim.Max, fmt.Errorf("raising the soft open-file limit from %d to %d: %w", lim.Cur, lim.Max, err)
	}
	return want.Cur, want.Max, nil
}

// fileLimitCheck is what the open-file limit means for server.max_connections.
type fileLimitCheck struct {
	idle, transferring int  // sessions the limit allows: all idle, all transferring
	capsIdle           bool // fewer than max_connections can even be open
	capsTransfers      bool // fewer than max_connections can transfer at once
}

// checkFileLimit compares the open-file limit with max_connections.
func checkFileLimit(limit uint64, maxConns int) fileLimitCheck {
	room := int64(0)
	if limit > fdReserve {
		room = int64(min(limit, 1<<40)) - fdReserve
	}
	c := fileLimitCheck{
		idle:         int(room / fdsPerIdleSession),
		transferring: int(room / fdsPerTransferSession),
	}
	c.capsIdle = c.idle < maxConns
	c.capsTransfers = c.transferring < maxConns
	return c
}

// reportFileLimit raises the open-file limit and says in the log when it
// stands in the way of server.max_connections: a session beyond it fails
// ("530 Home directory not available" at login, or 425 for a transfer).
func reportFileLimit(log *slog.Logger, maxConns int) {
	soft, hard, err := raiseFileLimit()
	if err != nil {
		log.Warn("cannot raise the open-file limit to its hard limit", "soft", soft, "hard", hard, "err", err)
	}
	c := checkFileLimit(soft, maxConns)
	hint := "raise LimitNOFILE in the systemd unit (or ulimit -Hn) or lower server.max_connections"
	switch {
	case c.capsIdle:
		log.Warn("the open-file limit caps server.max_connections: sessions beyond it fail",
			"open_file_limit", soft, "hard_limit", hard, "max_connections", maxConns,
			"sessions_possible", c.idle, "transferring_at_once", c.transferring, "fix", hint)
	case c.capsTransfers:
		log.Warn("the open-file limit caps transfers below server.max_connections: transfers beyond it fail with 425",
			"open_file_limit", soft, "hard_limit", hard, "max_connections", maxConns,
			"transferring_at_once", c.transferring, "fix", hint)
	default:
		log.Debug("open-file limit", "soft", soft, "hard", hard, "max_connections", maxConns)
	}
}
