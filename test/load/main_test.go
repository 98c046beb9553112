package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// args are the flags that point the tool at s as alice, plus more.
func args(s *ftpstest.Server, more ...string) []string {
	return append([]string{
		"-addr", s.Addr, "-servername", "localhost", "-cafile", s.CAFile,
		"-user", ftpstest.DefaultUser.Name, "-pass", ftpstest.DefaultUser.Password,
	}, more...)
}

// TestRun runs every operation for a second with two sessions against a
// test server: operations succeed, none fails, every data connection
// resumed its control session, and no file is left behind.
func TestRun(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	for _, name := range []string{"a", "b", "c"} {
		testutil.WriteFile(t, s.Home("alice"), "d/"+name, nil)
	}
	for _, op := range opKinds {
		t.Run(string(op), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			res, err := run(t.Context(), args(s, "-op", string(op), "-conns", "2", "-duration", "1s", "-size", "64KiB", "-dir", "d"), &stdout, &stderr)
			t.Logf("report:\n%s", stdout.String())
			if err != nil {
				t.Fatalf("run: %v\nstderr: %s", err, stderr.String())
			}
			if res.ok == 0 || res.failed() != 0 {
				t.Fatalf("%d operations ok and %d failed, want some and none", res.ok, res.failed())
			}
			if code := exitCode(res, err); code != exitOK {
				t.Errorf("exit code %d, want %d", code, exitOK)
			}
			if res.dataConns != res.resumed {
				t.Errorf("%d of %d data connections resumed the control session", res.resumed, res.dataConns)
			}
			if (op == opRetr || op == opStor) && res.bytes != res.ok*64<<10 {
				t.Errorf("moved %d bytes in %d operations of 64 KiB", res.bytes, res.ok)
			}
			if op == opList && res.items != 3*res.ok {
				t.Errorf("listed %d entries in %d listings of 3", res.items, res.ok)
			}
			left, _ := filepath.Glob(filepath.Join(s.Home("alice"), "ftpsd-load-*"))
			if len(left) > 0 {
				t.Errorf("files left behind: %q", left)
			}
		})
	}
}

// TestComparisonFlags checks what test/bench/compare relies on: -file
// downloads an existing file and leaves it, -stor-new uploads new files
// and removes them, -tls13 negotiates TLS 1.3 and the -json report says
// so, -start-on-stdin waits for its line before the clock starts.
func TestComparisonFlags(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	testutil.WriteFile(t, s.Home("alice"), "given.bin", bytes.Repeat([]byte("x"), 4096))
	tests := []struct {
		name  string
		flags []string
		check func(t *testing.T, rep map[string]any)
	}{
		{"retr -file", []string{"-op", "retr", "-file", "given.bin", "-size", "4KiB"}, func(t *testing.T, rep map[string]any) {
			if _, err := os.Stat(filepath.Join(s.Home("alice"), "given.bin")); err != nil {
				t.Errorf("the given file is gone: %v", err)
			}
		}},
		{"stor -stor-new", []string{"-op", "stor", "-stor-new", "-size", "64KiB"}, nil},
		{"session", []string{"-op", "session"}, func(t *testing.T, rep map[string]any) {
			if rep["items"].(float64) < rep["ok"].(float64) {
				t.Errorf("%v listing lines in %v sessions, want one per session (given.bin)", rep["items"], rep["ok"])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			a := args(s, append([]string{"-tls13", "-json", "-conns", "2", "-max-ops", "6", "-duration", "5s"}, tt.flags...)...)
			res, err := run(t.Context(), a, &stdout, &stderr)
			if err != nil || res.failed() != 0 || res.ok == 0 {
				t.Fatalf("run: %v, result %+v\nstderr: %s", err, res, stderr.String())
			}
			var rep map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("-json report: %v\n%s", err, stdout.String())
			}
			for k, n := range rep["data_tls"].(map[string]any) {
				if !strings.HasPrefix(k, "TLS 1.3 ") || n.(float64) == 0 {
					t.Errorf("data_tls %q: %v, want TLS 1.3", k, n)
				}
			}
			if rep["resumed"] != rep["data_conns"] || rep["data_conns"].(float64) == 0 {
				t.Errorf("%v of %v data connections resumed", rep["resumed"], rep["data_conns"])
			}
			if tt.check != nil {
				tt.check(t, rep)
			}
			left, _ := filepath.Glob(filepath.Join(s.Home("alice"), "ftpsd-load-*"))
			if len(left) > 0 {
				t.Errorf("files left behind: %q", left)
			}
		})
	}

	// -start-on-stdin: nothing is measured before the line arrives.
	cfg, err := parseArgs(args(s, "-op", "retr", "-file", "given.bin", "-size", "4KiB", "-conns", "1", "-max-ops", "2"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	gated := make(chan struct{})
	release := make(chan struct{})
	go func() {
		<-gated
		time.Sleep(time.Second)
		close(release)
	}()
	res, err := load(t.Context(), cfg, func() { close(gated); <-release })
	if err != nil || res.ok != 2 {
		t.Fatalf("gated run: %v, %+v", err, res)
	}
	if res.elapsed >= time.Second {
		t.Errorf("the wait at the gate was measured: elapsed %s for two 4 KiB downloads", res.elapsed)
	}
}

// TestFingerprint checks certificate pinning: the right fingerprint (in
// the colon form check-config prints) works, another one fails the first
// login before any load starts.
func TestFingerprint(t *testing.T) {
	s := ftpstest.NewServer(t, ftpstest.Options{})
	c := s.DialTLS(t)
	sum := sha256.Sum256(c.ControlState().PeerCertificates[0].Raw)
	c.Close()
	var pairs []string
	for _, b := range sum {
		pairs = append(pairs, hex.EncodeToString([]byte{b}))
	}
	good := strings.Join(pairs, ":")

	pinned := func(fp string) []string {
		return []string{
			"-addr", s.Addr, "-insecure-fingerprint", fp, "-user", "alice", "-pass", "alice-secret",
			"-op", "retr", "-size", "1KiB", "-conns", "1", "-max-ops", "3",
		}
	}
	var stdout, stderr bytes.Buffer
	res, err := run(t.Context(), pinned(good), &stdout, &stderr)
	if err != nil || res.ok != 3 || res.failed() != 0 || res.resumed != res.dataConns {
		t.Fatalf("pinned run: err %v, result %+v\nstderr: %s", err, res, stderr.String())
	}

	bad := strings.Repeat("00", sha256.Size)
	stdout.Reset()
	stderr.Reset()
	if _, err := run(t.Context(), pinned(bad), &stdout, &stderr); err == nil || !strings.Contains(stderr.String(), "does not match") {
		t.Fatalf("wrong fingerprint: err %v, stderr %q; want a mismatch", err, stderr.String())
	}
}

// TestArgs checks that bad command lines are usage errors (exit status 2)
// and that -h is not an error.
func TestArgs(t *testing.T) {
	base := []string{"-addr", "127.0.0.1:1", "-user", "u", "-pass", "p", "-cafile", "x.pem"}
	tests := []struct {
		name string
		args []string
	}{
		{"no addr", []string{"-user", "u", "-pass", "p", "-cafile", "x.pem"}},
		{"no trust", []string{"-addr", "127.0.0.1:1", "-user", "u", "-pass", "p"}},
		{"both trusts", append(base, "-insecure-fingerprint", strings.Repeat("ab", 32))},
		{"duration too long", append(base, "-duration", "11m")},
		{"no conns", append(base, "-conns", "0")},
		{"unknown op", append(base, "-op", "dele")},
		{"bad size", append(base, "-size", "1TB")},
		{"newline in dir", append(base, "-dir", "a\r\nDELE x")},
		{"short fingerprint", []string{"-addr", "127.0.0.1:1", "-user", "u", "-pass", "p", "-insecure-fingerprint", "abcd"}},
		{"positional", append(base, "extra")},
		{"file without retr", append(base, "-op", "stor", "-file", "x")},
		{"stor-new without stor", append(base, "-op", "retr", "-stor-new")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := run(t.Context(), tt.args, &out, &out)
			var ue usageError
			if !errors.As(err, &ue) || exitCode(res, err) != exitUsage {
				t.Fatalf("err %v (exit %d), want a usage error; output:\n%s", err, exitCode(res, err), out.String())
			}
		})
	}

	var out bytes.Buffer
	_, err := run(t.Context(), []string{"-h"}, &out, &out)
	if !errors.Is(err, flag.ErrHelp) || exitCode(nil, err) != exitOK {
		t.Fatalf("-h: err %v, want flag.ErrHelp and exit 0", err)
	}
	if !strings.Contains(out.String(), "-cafile var/state/tls/self-signed.crt") {
		t.Errorf("-h shows no example against config.example.toml:\n%s", out.String())
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "65536": 65536, "64KiB": 64 << 10, "1MiB": 1 << 20, "2GiB": 2 << 30, "10B": 10} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1MB", "x", "65GiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
}

// TestStopsWhenServerHangs points the tool at a listener that accepts and
// never answers: it must give up after -timeout, not wait forever.
func TestStopsWhenServerHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // holds every connection silently until ln closes
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	var out bytes.Buffer
	start := time.Now()
	_, err = run(t.Context(), []string{
		"-addr", ln.Addr().String(), "-user", "u", "-pass", "p",
		"-insecure-fingerprint", strings.Repeat("ab", 32), "-timeout", "200ms", "-duration", "1s",
	}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "first login") {
		t.Fatalf("err %v, want the first login to fail", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to give up", d)
	}
}
