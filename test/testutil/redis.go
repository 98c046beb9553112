package testutil

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server the test started on 127.0.0.1, in the
// foreground, without persistence. Cleanup stops it.
type Redis struct {
	Port int
	path string
	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts redis-server on a free port of 127.0.0.1. Without
// redis-server the test is skipped, or fails under CI=true (bash
// test/run.sh installs it).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not on PATH and CI=true (bash test/run.sh installs it): %v", err)
		}
		t.Skipf("redis-server is not installed: skipping (apt-get install redis-server, or bash test/run.sh; with CI=true this fails)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &Redis{Port: port, path: path, t: t}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Addr is host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// URL is the redis:// URL of database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Start starts the server (again) on its port and waits until it accepts
// connections.
func (r *Redis) Start() {
	r.t.Helper()
	if r.cmd != nil {
		r.t.Fatal("redis-server already running")
	}
	cmd := exec.Command(r.path, "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-r.done:
			r.cmd = nil
			r.t.Fatalf("redis-server on port %d exited at start (port taken?)", r.Port)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d not accepting after 10s: %v", r.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server by its PID (SIGTERM, then SIGKILL after 5s) and
// waits for it; a stopped server is left alone.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}
