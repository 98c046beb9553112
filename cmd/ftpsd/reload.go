package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// runReload implements "ftpsd reload": check the file, then send SIGHUP to
// the server that runs with it (its pid is in server.state_dir).
func runReload(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("reload", "-config FILE",
		`Check the configuration file as "check-config" does and, if it is valid,
tell the running server to reload it (SIGHUP to the pid in
server.state_dir/ftpsd.pid). A file with mistakes is reported here and no
signal is sent. The server logs the outcome ("configuration reloaded").`,
		`  ftpsd reload -config /etc/ftpsd/config.toml`, stderr)
	path, code, ok := parseConfigFlags(fs, args)
	if !ok {
		return code
	}
	cfg, err := loadConfig(path)
	if err != nil {
		fail(stderr, err)
		fmt.Fprintln(stderr, "ftpsd: not reloaded: the server keeps its configuration")
		return exitError
	}
	pid, err := signalReload(cfg)
	var notRunning errNotRunning
	switch {
	case errors.As(err, &notRunning):
		return fail(stderr, fmt.Errorf("no running server found for %s: %w", path, notRunning.err))
	case err != nil:
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "sent SIGHUP to ftpsd (pid %d); its log says whether the reload was applied\n", pid)
	return exitOK
}

// errNotRunning is signalReload's error when no server runs with the
// configuration: no pid file, or a stale one.
type errNotRunning struct{ err error }

func (e errNotRunning) Error() string { return e.err.Error() }
func (e errNotRunning) Unwrap() error { return e.err }

// signalReload sends SIGHUP to the server that runs with cfg (the pid in
// its state directory) and returns its pid.
func signalReload(cfg *fileConfig) (int, error) {
	pid, err := readPID(filepath.Join(cfg.Server.StateDir, pidFileName))
	if err != nil {
		return 0, errNotRunning{err}
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return pid, fmt.Errorf("signalling ftpsd (pid %d): %w", pid, err)
	}
	return pid, nil
}

// readPID reads a pid file and checks that the process is an ftpsd.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: not a pid", path)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return 0, fmt.Errorf("%s: process %d is not running (stale pid file)", path, pid)
	}
	if name := strings.TrimSpace(string(comm)); !strings.HasPrefix(name, "ftpsd") {
		return 0, errors.New(path + ": process " + strconv.Itoa(pid) + " is " + name + ", not ftpsd")
	}
	return pid, nil
}
