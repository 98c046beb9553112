package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// notifyTimeout bounds one notification: a datagram send blocks only when
// the manager's receive queue is full, and a stuck service manager must not
// stall startup, reload or shutdown.
const notifyTimeout = 2 * time.Second

// sdNotify sends state (newline-separated "KEY=value" assignments such as
// "READY=1" or "STATUS=serving") to the service manager over $NOTIFY_SOCKET,
// the sd_notify(3) protocol, without linking libsystemd. It returns nil when
// NOTIFY_SOCKET is unset: the server was not started by systemd with
// Type=notify, and there is nobody to tell.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	// systemd hands out an absolute path or an abstract socket name
	// starting with '@'. On Linux, Go's net package already turns a
	// leading '@' into the abstract namespace's NUL byte. Anything else
	// (a relative path, systemd 254's "vsock:") is not ours to guess at.
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET=%q: not an absolute path or abstract socket", addr)
	}
	conn, err := net.DialTimeout("unixgram", addr, notifyTimeout)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(notifyTimeout)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	n, err := conn.Write([]byte(state))
	if err == nil && n != len(state) {
		err = errors.New("short write")
	}
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// sdReloading is the notification that a reload started. systemd >= 253
// wants MONOTONIC_USEC (CLOCK_MONOTONIC in microseconds) with RELOADING=1,
// to tell this reload from an older one; READY=1 must follow when the
// reload is done, whether it succeeded or not.
func sdReloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// Cannot happen on Linux; older systemd accepts the bare form.
		return "RELOADING=1"
	}
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)
}
