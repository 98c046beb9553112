package auth

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestStoreReload: a reload adds, removes, disables and changes users for
// the next login; a reload with a bad user or an unusable home changes
// nothing; bans and failure counts survive it.
func TestStoreReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	user := func(name, pw string) UserConfig {
		return UserConfig{Name: name, PasswordHash: mustHash(t, pw), Home: filepath.Join(dir, name), Permissions: []string{"all"}}
	}
	cfg := Config{MaxFailures: 2, FailureDelay: time.Millisecond}
	s, err := New(cfg, []UserConfig{user("alice", "a1"), user("bob", "b1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	banned := netip.MustParseAddr("192.0.2.7")
	for range 2 {
		s.Authenticate(ctx, "alice", "wrong", banned)
	}
	next := netip.MustParseAddr("198.51.100.1")
	login := func(name, pw string) error { // from a new address each time: no ban interferes
		next = next.Next()
		_, err := s.Authenticate(ctx, name, pw, next)
		return err
	}
	if err := login("bob", "b1"); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	disabled := user("bob", "b1")
	disabled.Disabled = true
	broken := user("carol", "c1")
	broken.Home = file
	steps := []struct {
		name    string
		users   []UserConfig
		wantErr string
		logins  map[[2]string]error // {name, password} -> want
	}{
		{"unusable home refused", []UserConfig{user("alice", "a2"), broken}, `users "carol".home: ` + `"` + file + `" is not a directory`,
			map[[2]string]error{{"alice", "a1"}: nil, {"bob", "b1"}: nil, {"carol", "c1"}: ErrInvalidCredentials}},
		{"bad hash refused", []UserConfig{{Name: "alice", PasswordHash: "plain", Home: filepath.Join(dir, "alice")}}, `users "alice".password_hash`,
			map[[2]string]error{{"alice", "a1"}: nil}},
		{"password changed, user added, bob disabled", []UserConfig{user("alice", "a2"), disabled, user("dave", "d1")}, "",
			map[[2]string]error{{"alice", "a1"}: ErrInvalidCredentials, {"alice", "a2"}: nil, {"bob", "b1"}: ErrInvalidCredentials, {"dave", "d1"}: nil}},
		{"dave removed", []UserConfig{user("alice", "a2")}, "",
			map[[2]string]error{{"dave", "d1"}: ErrInvalidCredentials, {"alice", "a2"}: nil}},
	}
	for _, st := range steps {
		p, err := s.PrepareReload(cfg, st.users)
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Fatalf("%s: PrepareReload = %v, want %q", st.name, err, st.wantErr)
			}
		} else if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		} else {
			p.Apply()
		}
		for in, want := range st.logins {
			if err := login(in[0], in[1]); !errors.Is(err, want) {
				t.Errorf("%s: login %s/%s = %v, want %v", st.name, in[0], in[1], err, want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "dave")); err != nil {
		t.Errorf("the added user's home was not created: %v", err)
	}
	if _, err := s.Authenticate(ctx, "alice", "a2", banned); !errors.Is(err, ErrBlocked) {
		t.Errorf("after the reloads the banned address got %v, want ErrBlocked", err)
	}
}

// TestBansSurviveRestart: SaveBans and LoadBans carry bans and failure
// counts to a new Store; expired ones are dropped; a missing file is no
// error and a corrupt one is.
func TestBansSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := []UserConfig{{Name: "alice", PasswordHash: mustHash(t, "pw"), Home: filepath.Join(dir, "alice")}}
	cfg := Config{MaxFailures: 3, FailureDelay: time.Millisecond, BanDuration: time.Hour, FailureWindow: time.Hour}
	ctx := context.Background()
	bannedIP, countedIP := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")

	first, err := New(cfg, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		first.Authenticate(ctx, "alice", "wrong", bannedIP)
	}
	first.Authenticate(ctx, "alice", "wrong", countedIP)
	first.Authenticate(ctx, "alice", "wrong", countedIP)
	path := filepath.Join(dir, "bans.json")
	if err := first.SaveBans(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bans file: %v, %v", fi, err)
	}

	second, err := New(cfg, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := second.LoadBans(path); err != nil || n != 2 {
		t.Fatalf("LoadBans = %d, %v; want 2 entries", n, err)
	}
	if _, err := second.Authenticate(ctx, "alice", "pw", bannedIP); !errors.Is(err, ErrBlocked) {
		t.Errorf("banned address after a restart: %v, want ErrBlocked", err)
	}
	// Two failures were carried over: the third starts a ban.
	if _, err := second.Authenticate(ctx, "alice", "wrong", countedIP); !errors.Is(err, ErrBlocked) {
		t.Errorf("third failure after a restart: %v, want ErrBlocked (the count survived)", err)
	}

	// An hour and a minute later everything has expired.
	third, err := New(cfg, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	third.now = func() time.Time { return time.Now().Add(time.Hour + time.Minute) }
	if n, err := third.LoadBans(path); err != nil || n != 0 {
		t.Errorf("expired bans: LoadBans = %d, %v; want 0", n, err)
	}
	if n, err := third.LoadBans(filepath.Join(dir, "missing.json")); err != nil || n != 0 {
		t.Errorf("missing file: %d, %v", n, err)
	}
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := third.LoadBans(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt file: %v, want an error naming it", err)
	}
}

// TestParallelRightPasswords: more right passwords at once from one address
// than max_failures (FileZilla's transfer connections, an office behind one
// NAT address) all log in: those beyond the budget wait their turn instead
// of being refused.
func TestParallelRightPasswords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := New(Config{MaxFailures: 3, FailureDelay: time.Millisecond},
		[]UserConfig{{Name: "alice", PasswordHash: mustHash(t, "pw"), Home: filepath.Join(dir, "alice")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.9")
	release := holdAllHashing(t, s)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := s.Authenticate(context.Background(), "alice", "pw", ip)
			errs <- err
		}()
	}
	testutil.WaitFor(t, 10*time.Second, "all attempts arrived", func() bool {
		return s.throttle.inFlight(ClientKey(ip))+int(s.waiting.Load()) == 8
	})
	release()
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("a right password got %v", err)
		}
	}
}
