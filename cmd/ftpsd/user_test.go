package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/sys/unix"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// userConfig is the example configuration with users_file = "users.toml",
// in a new temporary directory, edited by the old/new pairs.
func userConfig(t *testing.T, oldNew ...string) string {
	t.Helper()
	return exampleInTemp(t, append([]string{`users_file = ""`, `users_file = "users.toml"`}, oldNew...)...)
}

// fileUsers decodes the users file at path.
func fileUsers(t *testing.T, path string) []auth.UserConfig {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), usersFileHeader) {
		t.Errorf("%s lacks the header:\n%s", path, data)
	}
	users, err := parseUsersFile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// findUser returns the user name of users, failing the test if absent.
func findUser(t *testing.T, users []auth.UserConfig, name string) auth.UserConfig {
	t.Helper()
	for _, u := range users {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no user %q in %+v", name, users)
	return auth.UserConfig{}
}

// wantPassword fails the test unless hash verifies pw as want says.
func wantPassword(t *testing.T, hash, pw string, want bool) {
	t.Helper()
	ok, err := auth.VerifyPassword(hash, pw)
	if err != nil || ok != want {
		t.Errorf("VerifyPassword(hash, %q) = %v, %v; want %v", pw, ok, err, want)
	}
}

// TestUserRoundTrip runs every "ftpsd user" command in turn, in-process,
// and checks the users file after each.
func TestUserRoundTrip(t *testing.T) {
	config := userConfig(t)
	dir := filepath.Dir(config)
	carol := usersTable(t, "carol", "rel/carol")
	t.Chdir(dir) // -home is relative to the working directory
	users := filepath.Join(dir, "users.toml")
	mode := func(want fs.FileMode) func(*testing.T, []auth.UserConfig) {
		return func(t *testing.T, _ []auth.UserConfig) {
			fi, err := os.Stat(users)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != want {
				t.Errorf("users file mode %v, want %v", fi.Mode(), want)
			}
		}
	}
	var sameFile os.FileInfo // set by a step's before, compared by its check

	steps := []struct {
		name     string
		before   func(t *testing.T)
		stdin    string
		args     []string
		wantCode int
		wantOut  []string
		check    func(t *testing.T, users []auth.UserConfig)
	}{
		{
			name: "add creates the file 0640", stdin: "alice-pw\n",
			args:     []string{"add", "alice", "-home", "homes/alice", "-perm", "list,read,write", "-config", config},
			wantCode: exitOK,
			wantOut:  []string{`added user "alice"`, filepath.Join(dir, "homes", "alice"), "list,read,write", "no running server found", "ftpsd reload -config " + config},
			check: func(t *testing.T, us []auth.UserConfig) {
				mode(0o640)(t, us)
				a := findUser(t, us, "alice")
				if a.Home != filepath.Join(dir, "homes", "alice") || strings.Join(a.Permissions, ",") != "list,read,write" || a.Disabled {
					t.Errorf("alice = %+v", a)
				}
				wantPassword(t, a.PasswordHash, "alice-pw", true)
				if !strings.HasPrefix(a.PasswordHash, "$argon2id$") {
					t.Errorf("hash %q is not argon2id", a.PasswordHash)
				}
			},
		},
		{
			name:   "add keeps the mode; flags before NAME; read-only by default",
			before: func(t *testing.T) { must(t, os.Chmod(users, 0o600)) },
			stdin:  "bob-pw", args: []string{"add", "-config", config, "-home", "/srv/bob", "bob"},
			wantCode: exitOK, wantOut: []string{`added user "bob"`},
			check: func(t *testing.T, us []auth.UserConfig) {
				mode(0o600)(t, us)
				if len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob" {
					t.Fatalf("users = %+v, want alice, bob", us)
				}
				if p := strings.Join(us[1].Permissions, ","); p != "list,read" {
					t.Errorf("bob's permissions = %q, want the read-only default", p)
				}
				wantPassword(t, us[1].PasswordHash, "bob-pw", true)
			},
		},
		{
			name:  "passwd",
			stdin: "alice-new\n", args: []string{"passwd", "alice", "-config", config},
			wantCode: exitOK, wantOut: []string{`changed the password of user "alice"`},
			check: func(t *testing.T, us []auth.UserConfig) {
				mode(0o600)(t, us)
				a := findUser(t, us, "alice")
				wantPassword(t, a.PasswordHash, "alice-new", true)
				wantPassword(t, a.PasswordHash, "alice-pw", false)
				wantPassword(t, findUser(t, us, "bob").PasswordHash, "bob-pw", true)
			},
		},
		{
			name: "disable", args: []string{"disable", "alice", "-config", config},
			wantCode: exitOK, wantOut: []string{`disabled user "alice"`},
			check: func(t *testing.T, us []auth.UserConfig) {
				if !findUser(t, us, "alice").Disabled || findUser(t, us, "bob").Disabled {
					t.Errorf("users = %+v, want alice disabled only", us)
				}
			},
		},
		{
			name: "disable again changes nothing",
			before: func(t *testing.T) {
				fi, err := os.Stat(users)
				must(t, err)
				sameFile = fi
			},
			args:     []string{"disable", "alice", "-config", config},
			wantCode: exitOK, wantOut: []string{`user "alice" is already disabled; nothing to change`},
			check: func(t *testing.T, _ []auth.UserConfig) {
				fi, err := os.Stat(users)
				must(t, err)
				if !os.SameFile(fi, sameFile) || !fi.ModTime().Equal(sameFile.ModTime()) {
					t.Error("the users file was rewritten")
				}
			},
		},
		{
			name: "list", args: []string{"list", "-config", config},
			wantCode: exitOK,
			wantOut: []string{
				"NAME", "DISABLED", "PERMISSIONS", "HOME",
				"demo ", "list,read,write,delete,mkdir,rename", filepath.Join(dir, "var", "home", "demo"), "config.toml",
				"alice", "yes", "list,read,write ", filepath.Join(dir, "homes", "alice"), "users.toml",
				"bob", "/srv/bob",
			},
		},
		{
			name: "enable", args: []string{"enable", "alice", "-config", config},
			wantCode: exitOK, wantOut: []string{`enabled user "alice"`},
			check: func(t *testing.T, us []auth.UserConfig) {
				if findUser(t, us, "alice").Disabled {
					t.Error("alice still disabled")
				}
			},
		},
		{
			name: "edits by hand are kept as data, comments are not",
			before: func(t *testing.T) {
				f, err := os.OpenFile(users, os.O_APPEND|os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteString("\n# a comment by hand\n" + carol)
				must(t, err)
				must(t, f.Close())
			},
			args:     []string{"disable", "carol", "-config", config},
			wantCode: exitOK,
			check: func(t *testing.T, us []auth.UserConfig) {
				c := findUser(t, us, "carol")
				if !c.Disabled || c.Home != "rel/carol" {
					t.Errorf("carol = %+v, want disabled with the relative home kept", c)
				}
				data, err := os.ReadFile(users)
				must(t, err)
				if strings.Contains(string(data), "a comment by hand") {
					t.Error("the comment by hand survived: the header says it does not")
				}
			},
		},
		{
			name: "del", args: []string{"del", "bob", "-config", config},
			wantCode: exitOK, wantOut: []string{`deleted user "bob"`, "its home /srv/bob is kept"},
			check: func(t *testing.T, us []auth.UserConfig) {
				if len(us) != 2 || us[0].Name != "alice" || us[1].Name != "carol" {
					t.Errorf("users = %+v, want alice, carol", us)
				}
			},
		},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before(t)
		}
		r := runCmd(t, st.stdin, append([]string{"user"}, st.args...)...)
		if r.code != st.wantCode {
			t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", st.name, r.code, st.wantCode, r.stdout, r.stderr)
		}
		for _, w := range st.wantOut {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%s: stdout lacks %q:\n%s", st.name, w, r.stdout)
			}
		}
		if pw := strings.TrimSpace(st.stdin); strings.Contains(r.stdout+r.stderr, "$argon2id$") || pw != "" && strings.Contains(r.stdout+r.stderr, pw) {
			t.Errorf("%s: output shows a hash or the password:\n%s%s", st.name, r.stdout, r.stderr)
		}
		if st.check != nil {
			t.Run(st.name, func(t *testing.T) { st.check(t, fileUsers(t, users)) })
		}
		// What the commands wrote is what serve loads.
		if _, err := loadConfig(config); err != nil {
			t.Fatalf("%s: the result does not load: %v", st.name, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestUserErrors: a refused command says why, exits 1 (or 2 for a wrong
// command line) and leaves the users file as it was.
func TestUserErrors(t *testing.T) {
	alice := func(t *testing.T) string { return usersFileHeader + "\n" + usersTable(t, "alice", "/srv/alice") }
	tests := []struct {
		name       string
		main       func(t *testing.T, config string) string // edits the main file (users_file = "users.toml"); nil: none
		users      func(t *testing.T) string                // the users file before; nil: none
		stdin      string
		args       []string // after "user"; CONFIG is the config's path
		wantCode   int
		wantStderr []string
	}{
		{"no users_file", func(t *testing.T, s string) string { return strings.Replace(s, `users_file = "users.toml"`, "", 1) }, nil, "pw",
			[]string{"add", "x", "-home", "/h", "-config", "CONFIG"}, exitError,
			[]string{"config.toml: [auth] users_file is not set", `users_file = "users.toml"`, "edited by hand"}},
		{"add a name of the main file", nil, alice, "pw",
			[]string{"add", "demo", "-home", "/h", "-config", "CONFIG"}, exitError,
			[]string{`user "demo" already exists in the [[users]] of`}},
		{"add a name of the users file", nil, alice, "pw",
			[]string{"add", "alice", "-home", "/h", "-config", "CONFIG"}, exitError,
			[]string{`user "alice" already exists in`, "users.toml"}},
		{"passwd of a main-file user", nil, alice, "pw",
			[]string{"passwd", "demo", "-config", "CONFIG"}, exitError,
			[]string{`user "demo" is in the [[users]] of`, "edit it there by hand"}},
		{"del of an unknown user", nil, alice, "",
			[]string{"del", "zed", "-config", "CONFIG"}, exitError,
			[]string{`no user "zed" in`, "the users file is unchanged"}},
		{"disable of an unknown user", nil, nil, "",
			[]string{"disable", "zed", "-config", "CONFIG"}, exitError, []string{`no user "zed"`}},
		{"empty password", nil, alice, "\n",
			[]string{"add", "bob", "-home", "/h", "-config", "CONFIG"}, exitError, []string{"empty password"}},
		{"home is a file", nil, alice, "pw",
			[]string{"add", "bob", "-home", "CONFIG", "-config", "CONFIG"}, exitError,
			[]string{`users "bob": home:`, "is not a directory", "the users file is unchanged"}},
		{"deleting the last user", func(t *testing.T, s string) string { return s[:strings.Index(s, "\n[[users]]\n")] }, alice, "",
			[]string{"del", "alice", "-config", "CONFIG"}, exitError,
			[]string{"users: no user", "auth.users_file", "the users file is unchanged"}},
		{"users file with an unknown key", nil, func(t *testing.T) string { return usersTable(t, "alice", "/a", "shel = 1") }, "",
			[]string{"disable", "alice", "-config", "CONFIG"}, exitError,
			[]string{`users.toml:6: unknown key "users.shel"`, "the users file is unchanged"}},
		{"missing -home", nil, nil, "pw", []string{"add", "bob", "-config", "CONFIG"}, exitUsage, []string{"missing -home DIR"}},
		{"bad -perm", nil, nil, "pw", []string{"add", "bob", "-home", "/h", "-perm", "list,exec", "-config", "CONFIG"}, exitUsage,
			[]string{`-perm: "exec" is not a permission`}},
		{"empty -perm", nil, nil, "pw", []string{"add", "bob", "-home", "/h", "-perm", " , ", "-config", "CONFIG"}, exitUsage,
			[]string{"-perm: no permission given"}},
		{"missing -config", nil, nil, "pw", []string{"passwd", "bob"}, exitUsage, []string{"missing -config FILE"}},
		{"missing NAME", nil, nil, "", []string{"del", "-config", "CONFIG"}, exitUsage, []string{"ftpsd user del: missing NAME"}},
		{"two names", nil, nil, "", []string{"del", "a", "b", "-config", "CONFIG"}, exitUsage, []string{`unexpected argument "b"`}},
		{"control character in NAME", nil, nil, "pw", []string{"add", "a\tb", "-home", "/h", "-config", "CONFIG"}, exitUsage,
			[]string{"control character"}},
		{"list with a NAME", nil, nil, "", []string{"list", "alice", "-config", "CONFIG"}, exitUsage, []string{`unexpected argument "alice"`}},
		{"no command", nil, nil, "", nil, exitUsage, []string{"ftpsd user: missing command", "Commands:"}},
		{"unknown command", nil, nil, "", []string{"rename"}, exitUsage, []string{`ftpsd user: unknown command "rename"`}},
		{"help", nil, nil, "", []string{"-h"}, exitOK, []string{"Usage: ftpsd user <command>", "passwd", "disable", "pure-pw"}},
		{"add help", nil, nil, "", []string{"add", "-h"}, exitOK, []string{"Usage: ftpsd user add NAME -home DIR", "-perm LIST", "without echo"}},
		{"list help", nil, nil, "", []string{"list", "-h"}, exitOK, []string{"Usage: ftpsd user list -config FILE", "never shown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			config := userConfig(t)
			if tt.main != nil {
				b, err := os.ReadFile(config)
				must(t, err)
				must(t, os.WriteFile(config, []byte(tt.main(t, string(b))), 0o600))
			}
			users := filepath.Join(filepath.Dir(config), "users.toml")
			var before []byte
			if tt.users != nil {
				before = []byte(tt.users(t))
				must(t, os.WriteFile(users, before, 0o640))
			}
			args := []string{"user"}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "CONFIG", config))
			}
			r := runCmd(t, tt.stdin, args...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if tt.wantCode != exitOK && r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			after, err := os.ReadFile(users)
			if tt.users == nil {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a users file was created: %v", err)
				}
			} else if !bytes.Equal(after, before) {
				t.Errorf("the users file changed:\n%s", after)
			}
		})
	}
}

// TestUserFileOwnership: a change keeps the users file's owner and mode,
// and replaces the target of a symlink; a new file is owned like the main
// configuration file. Changing owners needs root.
func TestUserFileOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files other owners")
	}
	tests := []struct {
		name      string
		setup     func(t *testing.T, config, users string) string // returns the path to check
		args      []string
		wantOwner [2]int
		wantMode  fs.FileMode
	}{
		{"existing file keeps owner and mode", func(t *testing.T, config, users string) string {
			must(t, os.WriteFile(users, []byte(usersTable(t, "alice", "/a")), 0o604))
			must(t, os.Chmod(users, 0o604))
			must(t, os.Chown(users, 1000, 1001))
			return users
		}, []string{"passwd", "alice"}, [2]int{1000, 1001}, 0o604},
		{"new file is owned like the config", func(t *testing.T, config, users string) string {
			must(t, os.Chown(config, 1234, 1235))
			return users
		}, []string{"add", "bob", "-home", "/b"}, [2]int{1234, 1235}, 0o640},
		{"symlink: the target is replaced", func(t *testing.T, config, users string) string {
			target := filepath.Join(t.TempDir(), "real-users.toml")
			must(t, os.WriteFile(target, []byte(usersTable(t, "alice", "/a")), 0o620))
			must(t, os.Chmod(target, 0o620))
			must(t, os.Chown(target, 1000, 1001))
			must(t, os.Symlink(target, users))
			return target
		}, []string{"passwd", "alice"}, [2]int{1000, 1001}, 0o620},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			config := userConfig(t)
			users := filepath.Join(filepath.Dir(config), "users.toml")
			check := tt.setup(t, config, users)
			r := runCmd(t, "new-pw\n", append(append([]string{"user"}, tt.args...), "-config", config)...)
			if r.code != exitOK {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			fi, err := os.Lstat(check)
			must(t, err)
			if owner, _ := fileOwner(fi); owner != tt.wantOwner || fi.Mode() != tt.wantMode {
				t.Errorf("%s: owner %v mode %v, want %v %v", check, owner, fi.Mode(), tt.wantOwner, tt.wantMode)
			}
			if check != users {
				if fi, err := os.Lstat(users); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("the symlink was replaced: %v %v", fi.Mode(), err)
				}
			}
			var found bool
			for _, u := range fileUsers(t, check) {
				if ok, _ := auth.VerifyPassword(u.PasswordHash, "new-pw"); ok {
					found = true
				}
			}
			if !found {
				t.Error("the change is not in the file")
			}
			if entries, _ := os.ReadDir(filepath.Dir(check)); len(entries) > 0 {
				for _, e := range entries {
					if strings.Contains(e.Name(), ".tmp-") {
						t.Errorf("temporary file %s left behind", e.Name())
					}
				}
			}
		})
	}
}

// TestUserAgainstServer changes users while a server runs in-process: each
// change signals this very process (its pid is in the pid file), and the
// server's reload applies it to logins and to open sessions. It must not
// run in parallel with other tests, since the SIGHUP goes to the whole
// test process.
func TestUserAgainstServer(t *testing.T) {
	config := userConfig(t, inProcess(
		`failure_delay = "1s"`, `failure_delay = "100ms"`,
		`max_failures = 5`, `max_failures = 50`, // the refused logins below must not ban 127.0.0.1
	)...)
	dir := filepath.Dir(config)
	user := func(stdin string, args ...string) result {
		t.Helper()
		r := runCmd(t, stdin, append(append([]string{"user"}, args...), "-config", config)...)
		if r.code != exitOK {
			t.Fatalf("user %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		return r
	}
	// The users file must exist before the server starts.
	user("bob-pw\n", "add", "bob", "-home", filepath.Join(dir, "homes", "bob"))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var log testutil.LogBuffer
	done := make(chan int, 1)
	go func() { done <- serveCommand(ctx, []string{"-config", config}, &log, unprivileged) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop:\n%s", log.String())
		}
	}()
	var addr string
	waitFor(t, 20*time.Second, "the \"listening\" log line", &log, done, func() bool {
		if rec := logLine(log.String(), "listening"); rec != nil {
			addr, _ = rec["addr"].(string)
		}
		return addr != ""
	})

	pem, err := os.ReadFile(filepath.Join(dir, "var", "state", "tls", "self-signed.crt"))
	must(t, err)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in self-signed.crt")
	}
	tlsConfig := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	login := func(name, pw string) (*ftp.ServerConn, error) {
		t.Helper()
		c, err := ftp.Dial(addr, ftp.DialWithExplicitTLS(tlsConfig), ftp.DialWithTimeout(10*time.Second), ftp.DialWithContext(t.Context()))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if err := c.Login(name, pw); err != nil {
			c.Quit()
			return nil, err
		}
		return c, nil
	}
	// change runs "ftpsd user args" and waits for the reload it asks for.
	change := func(stdin string, args ...string) {
		t.Helper()
		before := strings.Count(log.String(), `"msg":"configuration reloaded"`)
		r := user(stdin, args...)
		if want := "sent SIGHUP to ftpsd (pid " + strconv.Itoa(os.Getpid()) + ")"; !strings.Contains(r.stdout, want) {
			t.Fatalf("user %v: stdout lacks %q:\n%s", args, want, r.stdout)
		}
		waitFor(t, 20*time.Second, "\"configuration reloaded\" after user "+args[0], &log, done, func() bool {
			if strings.Contains(log.String(), "configuration reload refused") {
				t.Fatalf("reload refused:\n%s", log.String())
			}
			return strings.Count(log.String(), `"msg":"configuration reloaded"`) > before
		})
	}
	wantLogin := func(name, pw string) *ftp.ServerConn {
		t.Helper()
		c, err := login(name, pw)
		if err != nil {
			t.Fatalf("login %s/%s: %v", name, pw, err)
		}
		return c
	}
	wantRefused := func(name, pw string) {
		t.Helper()
		if c, err := login(name, pw); err == nil {
			c.Quit()
			t.Fatalf("login %s/%s succeeded, want 530", name, pw)
		} else if !strings.Contains(err.Error(), "530") {
			t.Fatalf("login %s/%s: %v, want 530", name, pw, err)
		}
	}

	wantLogin("bob", "bob-pw").Quit()
	wantRefused("alice", "alice-pw")

	change("alice-pw\n", "add", "alice", "-home", filepath.Join(dir, "homes", "alice"), "-perm", "all")
	wantLogin("alice", "alice-pw").Quit()

	change("alice-new\n", "passwd", "alice")
	wantRefused("alice", "alice-pw")
	session := wantLogin("alice", "alice-new")
	defer session.Quit()

	change("", "del", "bob")
	wantRefused("bob", "bob-pw")

	// A disabled user's open session is closed with 421.
	if err := session.NoOp(); err != nil {
		t.Fatalf("NOOP before disable: %v", err)
	}
	change("", "disable", "alice")
	var closedErr error
	for deadline := time.Now().Add(10 * time.Second); closedErr == nil && time.Now().Before(deadline); {
		closedErr = session.NoOp()
		time.Sleep(100 * time.Millisecond)
	}
	if closedErr == nil || !strings.Contains(closedErr.Error(), "421") {
		t.Errorf("the disabled user's session got %v, want 421", closedErr)
	}
	var rec map[string]any // the last reload's
	for _, line := range strings.Split(log.String(), "\n") {
		if r := logLine(line, "configuration reloaded"); r != nil {
			rec = r
		}
	}
	if n, _ := rec["sessions_closed"].(float64); n != 1 {
		t.Errorf("the last reload closed %v sessions, want 1: %v", rec["sessions_closed"], rec)
	}
	wantRefused("alice", "alice-new")
}

// waitFor polls cond every 20ms until it holds, failing the test after
// timeout or when serve exits.
func waitFor(t *testing.T, timeout time.Duration, what string, log *testutil.LogBuffer, done <-chan int, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d while waiting for %s:\n%s", code, what, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v:\n%s", what, timeout, log.String())
		}
	}
}

// openPty opens a pseudo-terminal: the master, which the test reads and
// writes, and the slave, which becomes the child's terminal.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	master = os.NewFile(uintptr(mfd), "/dev/ptmx") // non-blocking: reads take deadlines
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// buildFtpsd builds the command into a temporary directory.
func buildFtpsd(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "ftpsd")
	if out, err := exec.Command(goCmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestPasswordNoEcho types passwords into hash-password and user add on a
// pseudo-terminal, as a person would, and checks that the terminal never
// shows them and that Ctrl-C leaves echo on.
func TestPasswordNoEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := buildFtpsd(t)
	const secret = "s3cret-typed-on-a-tty"
	tests := []struct {
		name     string
		args     func(dir string) []string
		typed    []string // each after a prompt, once echo is off
		wantCode int
		wantOut  []string
		check    func(t *testing.T, dir, out string)
	}{
		{
			name:     "hash-password",
			args:     func(string) []string { return []string{"hash-password"} },
			typed:    []string{secret + "\r", secret + "\r"}, // Enter sends CR; the terminal maps it
			wantCode: 0,
			wantOut:  []string{"Password: ", "Retype password: ", "$argon2id$"},
			check: func(t *testing.T, _, out string) {
				i := strings.Index(out, "$argon2id$")
				hash, _, _ := strings.Cut(out[i:], "\r\n")
				wantPassword(t, hash, secret, true)
			},
		},
		{
			name: "user add",
			args: func(dir string) []string {
				return []string{"user", "add", "alice", "-home", "/srv/alice", "-config", filepath.Join(dir, "config.toml")}
			},
			typed:    []string{secret + "\n", secret + "\n"},
			wantCode: 0,
			wantOut:  []string{"Password: ", "Retype password: ", `added user "alice"`},
			check: func(t *testing.T, dir, _ string) {
				wantPassword(t, findUser(t, fileUsers(t, filepath.Join(dir, "users.toml")), "alice").PasswordHash, secret, true)
			},
		},
		{
			name:     "mismatch",
			args:     func(string) []string { return []string{"hash-password"} },
			typed:    []string{secret + "\n", secret + "-not\n"},
			wantCode: exitError,
			wantOut:  []string{"Retype password: ", "ftpsd: the passwords do not match"},
		},
		{
			name:     "Ctrl-C restores echo",
			args:     func(string) []string { return []string{"hash-password"} },
			typed:    []string{secret[:5] + "\x03"},
			wantCode: exitError,
			wantOut:  []string{"Password: ", "ftpsd: interrupted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			config := userConfig(t)
			dir := filepath.Dir(config)
			master, slave := openPty(t)
			var out testutil.LogBuffer
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := master.Read(buf)
					out.Write(buf[:n])
					if err != nil {
						return
					}
				}
			}()
			cmd := exec.Command(bin, tt.args(dir)...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			// Its own session with the pty as controlling terminal, so that
			// Ctrl-C there is its SIGINT.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			must(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer cmd.Process.Kill()

			echo := func() bool {
				tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
				must(t, err)
				return tio.Lflag&unix.ECHO != 0
			}
			prompts := []string{"Password: ", "Retype password: "}
			for i, typed := range tt.typed {
				// Type only once the prompt is out and echo is off, as
				// a person would; earlier, the terminal would echo.
				deadline := time.Now().Add(20 * time.Second)
				for !strings.Contains(out.String(), prompts[i]) || echo() {
					if time.Now().After(deadline) {
						t.Fatalf("no prompt %q with echo off; output so far:\n%q", prompts[i], out.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
				_, err := master.Write([]byte(typed))
				must(t, err)
			}
			var err error
			select {
			case err = <-exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("the command did not exit; output:\n%q", out.String())
			}
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // let the reader drain the master
			got := out.String()
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; output:\n%q", code, tt.wantCode, got)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%q", w, got)
				}
			}
			if strings.Contains(got, secret[:5]) {
				t.Errorf("the password was echoed:\n%q", got)
			}
			if !echo() {
				t.Error("echo is still off after the command exited")
			}
			if tt.check != nil {
				tt.check(t, dir, got)
			}
		})
	}
}
