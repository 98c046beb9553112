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
	path := configFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if code, ok := requireConfig(fs, *path); !ok {
		return code
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fail(stderr, err)
		fmt.Fprintln(stderr, "ftpsd: not reloaded: the server keeps its configuration")
		return exitError
	}
	pid, err := readPID(filepath.Join(cfg.Server.StateDir, pidFileName))
	if err != nil {
		return fail(stderr, fmt.Errorf("no running server found for %s: %w", *path, err))
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fail(stderr, fmt.Errorf("signalling ftpsd (pid %d): %w", pid, err))
	}
	fmt.Fprintf(stdout, "sent SIGHUP to ftpsd (pid %d); its log says whether the reload was applied\n", pid)
	return exitOK
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
