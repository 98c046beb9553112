package main

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSdNotify plays the service manager: it listens on a real unixgram
// socket and checks that sdNotify delivers the state as one datagram.
// Not parallel: NOTIFY_SOCKET is process-wide (t.Setenv).
func TestSdNotify(t *testing.T) {
	// A short directory, not t.TempDir(): a socket path must fit in
	// sun_path (108 bytes), and test names make t.TempDir() long.
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	tests := []struct {
		name    string
		listen  string // socket the manager listens on; "" = none
		env     string // NOTIFY_SOCKET; "" = unset
		state   string
		wantErr string // substring; "" = no error
	}{
		{name: "unset", state: "READY=1"},
		{name: "path", listen: filepath.Join(dir, "notify"), env: filepath.Join(dir, "notify"), state: "READY=1"},
		{name: "abstract", listen: "@ftpsd-test-" + rand.Text(), env: "@", state: "STOPPING=1"},
		{name: "several assignments", listen: filepath.Join(dir, "multi"), env: filepath.Join(dir, "multi"), state: "READY=1\nSTATUS=serving on :21"},
		{name: "nobody listening", env: filepath.Join(dir, "missing"), state: "READY=1", wantErr: "sd_notify:"},
		{name: "relative path", env: "notify.sock", state: "READY=1", wantErr: "not an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == "@" {
				env = tt.listen // the random abstract name
			}
			var conn *net.UnixConn
			if tt.listen != "" {
				var err error
				conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tt.listen, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				if strings.HasPrefix(tt.listen, "@") {
					// Abstract means no file: not "./@ftpsd-test-...".
					if _, err := os.Lstat(tt.listen); !os.IsNotExist(err) {
						t.Fatalf("abstract socket %s exists as a file (err %v)", tt.listen, err)
					}
				}
			}
			t.Setenv("NOTIFY_SOCKET", env) // restored after the test
			if env == "" {
				os.Unsetenv("NOTIFY_SOCKET") // really unset, not empty
			}

			err := sdNotify(tt.state)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("sdNotify: err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("sdNotify: %v", err)
			}
			if conn == nil {
				return
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("manager read: %v", err)
			}
			if got := string(buf[:n]); got != tt.state {
				t.Errorf("manager got %q, want %q", got, tt.state)
			}
		})
	}
}

func TestSdReloading(t *testing.T) {
	monoUsec := func() int64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		return ts.Nano() / 1000
	}
	before := monoUsec()
	got := sdReloading()
	after := monoUsec()

	first, usec, ok := strings.Cut(got, "\nMONOTONIC_USEC=")
	if !ok || first != "RELOADING=1" {
		t.Fatalf("sdReloading() = %q, want RELOADING=1\\nMONOTONIC_USEC=<n>", got)
	}
	v, err := strconv.ParseInt(usec, 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC=%q: %v", usec, err)
	}
	// Bracketed by two readings of the same clock: catches a wrong clock
	// (REALTIME is decades larger) or unit (ns is 1000 times larger).
	if v < before || v > after {
		t.Errorf("MONOTONIC_USEC=%d, want within [%d, %d]", v, before, after)
	}
}
