package main

import (
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/test/testutil"
)

func TestParseClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "192.0.2.7", want: "192.0.2.7"},
		{in: "192.0.2.7/32", want: "192.0.2.7"},
		{in: "2001:db8::1", want: "2001:db8::1"},
		{in: "2001:db8:1:2::/64", want: "2001:db8:1:2::"},
		{in: "::ffff:192.0.2.7", want: "::ffff:192.0.2.7"}, // auth.ClientKey unmaps it
		{in: "192.0.2.0/24", wantErr: "neither an IP address nor a banned client"},
		{in: "2001:db8::1/64", wantErr: "neither"}, // not the /64 itself
		{in: "fe80::1%eth0", wantErr: "is not an IP address"},
		{in: "host.example", wantErr: "is not an IP address"},
		{in: "", wantErr: "is not an IP address"},
	} {
		got, err := parseClient(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseClient(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got.String() != tc.want):
			t.Errorf("parseClient(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestFormatWho(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		bytes float64
		want  string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {35.2 * (1 << 20), "35.2 MiB"}, {3 << 30, "3.0 GiB"}, {1 << 60, "1024.0 PiB"},
	} {
		if got := formatBytes(tc.bytes); got != tc.want {
			t.Errorf("formatBytes(%v) = %q, want %q", tc.bytes, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0:00"}, {-time.Second, "0:00"}, {5 * time.Second, "0:05"}, {1499 * time.Millisecond, "0:01"},
		{59*time.Minute + 59*time.Second, "59:59"}, {time.Hour + 2*time.Minute + 3*time.Second, "1:02:03"},
	} {
		if got := formatIdle(tc.d); got != tc.want {
			t.Errorf("formatIdle(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	now := time.Date(2026, 12, 2, 13, 2, 11, 0, time.Local)
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{now.Add(-time.Hour), "12:02:11"},
		{now.Add(-14 * time.Hour), "2026-12-01 23:02"},
	} {
		if got := formatSince(tc.t, now); got != tc.want {
			t.Errorf("formatSince(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}

// TestControlSocket: the socket is 0600, answers the API, refuses to
// replace a live one, replaces a stale one, and is removed on Close.
func TestControlSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log, logs := testutil.NewLogger()
	store, err := auth.New(auth.Config{MaxFailures: 1, FailureDelay: time.Millisecond},
		[]auth.UserConfig{{Name: "alice", PasswordHash: exampleHash(t), Home: filepath.Join(dir, "home")}}, log)
	if err != nil {
		t.Fatal(err)
	}
	store.Authenticate(t.Context(), "alice", "wrong", netip.MustParseAddr("192.0.2.7"))
	api := &controlAPI{store: store, bansPath: filepath.Join(dir, "bans.json"), log: log}
	sock := filepath.Join(dir, controlSocketName)

	c, err := startControl(dir, api, log)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", fi, err)
	}
	if _, err := startControl(dir, api, log); err == nil || !strings.Contains(err.Error(), "another ftpsd answers on it") {
		t.Errorf("second startControl on a live socket: %v, want a refusal", err)
	}

	var bans bansDoc
	if err := controlCall(t.Context(), sock, http.MethodGet, "/bans", &bans); err != nil || len(bans.Bans) != 1 || bans.Bans[0].Client != "192.0.2.7/32" {
		t.Fatalf("GET /bans: %v, %+v; want 192.0.2.7/32", err, bans)
	}
	for _, tc := range []struct {
		path, wantErr string
	}{
		{"/bans/not-an-ip", `"not-an-ip" is not an IP address`},
		{"/bans/198.51.100.1", "198.51.100.1/32: no ban or failed login on record"},
		{"/bans/192.0.2.7%2F32", ""},
		{"/bans/192.0.2.7", "192.0.2.7/32: no ban or failed login on record"},
	} {
		var doc unbanDoc
		err := controlCall(t.Context(), sock, http.MethodDelete, tc.path, &doc)
		if tc.wantErr == "" && (err != nil || doc.Client != "192.0.2.7/32") || tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
			t.Errorf("DELETE %s: %v, %+v; want error %q", tc.path, err, doc, tc.wantErr)
		}
	}
	if data, err := os.ReadFile(api.bansPath); err != nil || strings.Contains(string(data), "192.0.2.7") {
		t.Errorf("bans file after the removal: %v\n%s", err, data)
	}
	if err := controlCall(t.Context(), sock, http.MethodPost, "/bans", &bans); err == nil || !strings.Contains(err.Error(), "405") {
		t.Errorf("POST /bans: %v, want 405", err)
	}

	c.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket after Close: %v", err)
	}
	// A socket nobody answers on, as a crash leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if c, err = startControl(dir, api, log); err != nil {
		t.Fatalf("startControl over a stale socket: %v", err)
	}
	defer c.Close()
	logs.Wait(t, `msg="replaced a stale control socket"`, 1, time.Second)
	if err := controlCall(t.Context(), sock, http.MethodGet, "/bans", &bans); err != nil {
		t.Errorf("GET /bans on the new socket: %v", err)
	}
}

// TestListenPrivate: the control socket is bound in a private directory
// and moved into place with mode 0600, even in a directory everyone may
// enter (a socket bound there directly would be reachable under the
// umask's mode until its chmod), and nothing else is left behind.
func TestListenPrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, controlSocketName)
	ln, err := listenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", fi, err)
	}
	testutil.AssertDirHolds(t, dir, controlSocketName)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the socket under its final name: %v", err)
	}
	c.Close()
}
