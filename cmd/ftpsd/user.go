package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/ftpsd/ftpsd/auth"
)

// userCommands are the subcommands of "ftpsd user", in the order its usage
// shows them.
func userCommands() []command {
	return []command{
		{"add", "add a user; asks for its password", runUserAdd},
		{"passwd", "set the password of a user", runUserPasswd},
		{"del", "delete a user (its home is kept)", runUserDel},
		{"disable", "refuse the logins of a user and close its sessions, keeping it in the file", runUserDisable},
		{"enable", "let a disabled user log in again", runUserEnable},
		{"list", "list the users of both files: name, disabled, permissions, home (never hashes)", runUserList},
	}
}

// runUser implements "ftpsd user": it picks the subcommand.
func runUser(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runGroup(ctx, "user", "<command> [NAME] -config FILE [flags]",
		`Manage the users of the file named by [auth] users_file, like Pure-FTPd's
pure-pw. Every command takes -config FILE, the main configuration file. A
change is checked as serve checks the configuration, then written at once
(a temporary file renamed over the old one, which keeps its mode and owner;
a new file is created 0640), and the running server is told to reload, which
closes the sessions of deleted and disabled users. The users of the main
file's [[users]] are listed, but edited by hand.`,
		`  ftpsd user add alice -home /srv/ftp/alice -perm all -config /etc/ftpsd/config.toml
  ftpsd user list -config /etc/ftpsd/config.toml`, userCommands(), args, stdin, stdout, stderr)
}

// parseNameFlags parses "NAME [flags]" or "[flags] NAME" and requires
// -config (the flag behind config). ok is false when the command must stop,
// with code as its exit code (0 after -h).
func parseNameFlags(fs *flag.FlagSet, args []string, config *string) (name string, code int, ok bool) {
	return parseOperandFlags(fs, args, config, "NAME", func(name string) error {
		if name == "" || strings.ContainsFunc(name, unicode.IsControl) {
			return fmt.Errorf("NAME %q: empty or with a control character", name)
		}
		return nil
	})
}

// parseOperandFlags parses a command line of one operand and flags, in
// either order ("NAME -config FILE", "-config FILE NAME"): it requires the
// operand (called what in messages), checks it with check (whose error is
// the message, operand named), then requires
// -config (the flag behind config). ok is false when the command must
// stop, with code as its exit code (0 after -h).
func parseOperandFlags(fs *flag.FlagSet, args []string, config *string, what string, check func(string) error) (operand string, code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", exitOK, false
		}
		return "", exitUsage, false
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(fs.Output(), "%s: missing %s\n", fs.Name(), what)
		fs.Usage()
		return "", exitUsage, false
	}
	operand = fs.Arg(0)
	if code, ok := parseFlags(fs, fs.Args()[1:]); !ok {
		return "", code, false
	}
	if err := check(operand); err != nil {
		fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
		return "", exitUsage, false
	}
	if code, ok := requireConfig(fs, *config); !ok {
		return "", code, false
	}
	return operand, exitOK, true
}

// userFlagSet is newFlagSet for "ftpsd user <name>", with -config.
func userFlagSet(name, synopsis, description, example string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlagSet("user "+name, synopsis, description, example, stderr)
	return fs, configFlag(fs)
}

// runUserAdd implements "ftpsd user add".
func runUserAdd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, config := userFlagSet("add", "NAME -home DIR [-perm LIST] -config FILE",
		`Add a user to the users file. The password is asked twice without echo on
a terminal, or read as one line from standard input. A missing users file
is created 0640 and, when run as root, owned like the configuration file,
since the server reads both. The home is created (0750) by the server, not
here, so that the server's user owns it.`,
		`  ftpsd user add alice -home /srv/ftp/alice -perm all -config /etc/ftpsd/config.toml
  printf '%s\n' "$PW" | ftpsd user add bob -home /srv/ftp/bob -config /etc/ftpsd/config.toml`, stderr)
	home := fs.String("home", "", "the user's root `DIR` (required); a relative one is taken from the working directory")
	perm := fs.String("perm", "list,read", "comma-separated `LIST` of permissions: list, read, write, delete, mkdir, rename, or all")
	name, code, ok := parseNameFlags(fs, args, config)
	if !ok {
		return code
	}
	if *home == "" {
		fmt.Fprintf(stderr, "%s: missing -home DIR\n", fs.Name())
		fs.Usage()
		return exitUsage
	}
	perms, err := parsePermFlag(*perm)
	if err != nil {
		fmt.Fprintf(stderr, "%s: -perm: %v\n", fs.Name(), err)
		return exitUsage
	}
	dir, err := filepath.Abs(*home)
	if err != nil {
		return fail(stderr, fmt.Errorf("-home: %w", err))
	}
	// Refuse before asking for a password that would be thrown away; the
	// check is repeated under the lock.
	if e, err := openUsers(*config); err != nil {
		return fail(stderr, err)
	} else if err := e.checkNew(name); err != nil {
		return fail(stderr, err)
	}
	hash, err := newPasswordHash(ctx, stdin, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	return editUsers(*config, stdout, stderr, func(e *usersEditor) (string, error) {
		if err := e.checkNew(name); err != nil {
			return "", err
		}
		e.users = append(e.users, auth.UserConfig{Name: name, PasswordHash: hash, Home: dir, Permissions: perms})
		return fmt.Sprintf("added user %q (home %s, permissions %s) to %s", name, dir, strings.Join(perms, ","), e.path), nil
	})
}

// runUserPasswd implements "ftpsd user passwd".
func runUserPasswd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, config := userFlagSet("passwd", "NAME -config FILE",
		`Set the password of a user of the users file. The password is asked twice
without echo on a terminal, or read as one line from standard input. Open
sessions of the user stay open.`,
		`  ftpsd user passwd alice -config /etc/ftpsd/config.toml`, stderr)
	name, code, ok := parseNameFlags(fs, args, config)
	if !ok {
		return code
	}
	if e, err := openUsers(*config); err != nil {
		return fail(stderr, err)
	} else if _, err := e.index(name); err != nil {
		return fail(stderr, err)
	}
	hash, err := newPasswordHash(ctx, stdin, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	return editUser(*config, name, stdout, stderr, func(e *usersEditor, i int) (string, error) {
		e.users[i].PasswordHash = hash
		return fmt.Sprintf("changed the password of user %q in %s", name, e.path), nil
	})
}

// runUserDel implements "ftpsd user del".
func runUserDel(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs, config := userFlagSet("del", "NAME -config FILE",
		`Delete a user from the users file. Its home directory and files are kept.
The server closes the user's open sessions when it reloads.`,
		`  ftpsd user del alice -config /etc/ftpsd/config.toml`, stderr)
	name, code, ok := parseNameFlags(fs, args, config)
	if !ok {
		return code
	}
	return editUser(*config, name, stdout, stderr, func(e *usersEditor, i int) (string, error) {
		home := e.users[i].Home
		e.users = slices.Delete(e.users, i, i+1)
		return fmt.Sprintf("deleted user %q from %s; its home %s is kept", name, e.path, home), nil
	})
}

// runUserDisable implements "ftpsd user disable".
func runUserDisable(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	return setDisabled(args, stdout, stderr, true)
}

// runUserEnable implements "ftpsd user enable".
func runUserEnable(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	return setDisabled(args, stdout, stderr, false)
}

// setDisabled is "ftpsd user disable" and "enable". Setting the state a user
// already has changes nothing and succeeds, so scripts can repeat it.
func setDisabled(args []string, stdout, stderr io.Writer, disabled bool) int {
	name, desc := "enable", `Let a disabled user log in again.`
	if disabled {
		name, desc = "disable", `Refuse the logins of a user (it is answered as an unknown user) without
deleting it: "disabled = true" in its entry. The server closes the user's
open sessions when it reloads. "ftpsd user enable" undoes it.`
	}
	fs, config := userFlagSet(name, "NAME -config FILE", desc,
		"  ftpsd user "+name+" alice -config /etc/ftpsd/config.toml", stderr)
	user, code, ok := parseNameFlags(fs, args, config)
	if !ok {
		return code
	}
	return editUser(*config, user, stdout, stderr, func(e *usersEditor, i int) (string, error) {
		if e.users[i].Disabled == disabled {
			fmt.Fprintf(stdout, "user %q is already %sd; nothing to change\n", user, name)
			return "", nil
		}
		e.users[i].Disabled = disabled
		return fmt.Sprintf("%sd user %q in %s", name, user, e.path), nil
	})
}

// runUserList implements "ftpsd user list".
func runUserList(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags, config := userFlagSet("list", "-config FILE",
		`List the users of the main configuration file and of its users file, in
file order: name, whether disabled, permissions, home (absolute) and the file
that holds the user. Password hashes are never shown. Works without
[auth] users_file too.`,
		`  ftpsd user list -config /etc/ftpsd/config.toml`, stderr)
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if code, ok := requireConfig(flags, *config); !ok {
		return code
	}
	cfg, err := decodeConfig(*config)
	if err != nil {
		return fail(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDISABLED\tPERMISSIONS\tHOME\tFILE")
	rows := func(users []auth.UserConfig, file string) {
		for _, u := range users {
			disabled := "no"
			if u.Disabled {
				disabled = "yes"
			}
			perms := strings.Join(u.Permissions, ",")
			if p, err := auth.ParsePerms(u.Permissions); err == nil {
				perms = p.String() // "all" spelled out
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(u.Name), disabled, printable(perms), printable(u.Home), printable(file))
		}
	}
	rows(cfg.Users, filepath.Base(*config))
	if path := cfg.Auth.UsersFile; path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(stderr, "ftpsd: auth.users_file %s does not exist yet (\"ftpsd user add\" creates it)\n", path)
		case err != nil:
			return fail(stderr, fmt.Errorf("auth.users_file: %w", err))
		default:
			users, err := parseUsersFile(path, data)
			if err != nil {
				return fail(stderr, err)
			}
			resolveHomes(users, filepath.Dir(path))
			rows(users, filepath.Base(path))
		}
	}
	if err := tw.Flush(); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// printable quotes s if it would not print as itself: a hand-edited file
// must not send terminal escapes to the screen, nor break the columns.
func printable(s string) string {
	if s == "" || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// parsePermFlag splits a -perm list and checks its names.
func parsePermFlag(list string) ([]string, error) {
	var perms []string
	for p := range strings.SplitSeq(list, ",") {
		if p = strings.TrimSpace(p); p != "" {
			perms = append(perms, p)
		}
	}
	if len(perms) == 0 {
		return nil, errors.New("no permission given (a user without any cannot even list its home)")
	}
	if _, err := auth.ParsePerms(perms); err != nil {
		return nil, err
	}
	return perms, nil
}

// newPasswordHash reads a new password (see readNewPassword) and hashes it.
func newPasswordHash(ctx context.Context, stdin io.Reader, prompts io.Writer) (string, error) {
	pw, err := readNewPassword(ctx, stdin, prompts)
	if err != nil {
		return "", err
	}
	return auth.HashPassword(pw)
}

// usersEditor is the users file of a configuration, read for a change.
type usersEditor struct {
	config string            // the main configuration file, as given
	path   string            // the users file, absolute
	main   []auth.UserConfig // the users of the main file
	users  []auth.UserConfig // the users of the users file, homes as written
	info   fs.FileInfo       // of the users file; nil if it does not exist yet
}

// openUsers reads the users file of the configuration file config. A
// missing users file is empty: "add" creates it.
func openUsers(config string) (*usersEditor, error) {
	cfg, err := decodeConfig(config)
	if err != nil {
		return nil, err
	}
	if cfg.Auth.UsersFile == "" {
		return nil, fmt.Errorf(`%s: [auth] users_file is not set: set it (for example users_file = "users.toml") for "ftpsd user" to manage users in that file; the users of this file's [[users]] are edited by hand`, config)
	}
	e := &usersEditor{config: config, path: cfg.Auth.UsersFile, main: cfg.Users}
	data, err := os.ReadFile(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth.users_file: %w", err)
	}
	if e.info, err = os.Stat(e.path); err != nil {
		return nil, fmt.Errorf("auth.users_file: %w", err)
	}
	if e.users, err = parseUsersFile(e.path, data); err != nil {
		return nil, err
	}
	return e, nil
}

// index returns the position of the user name in the users file, or an
// error that says where the user is instead.
func (e *usersEditor) index(name string) (int, error) {
	if i := slices.IndexFunc(e.users, func(u auth.UserConfig) bool { return u.Name == name }); i >= 0 {
		return i, nil
	}
	if slices.ContainsFunc(e.main, func(u auth.UserConfig) bool { return u.Name == name }) {
		return -1, fmt.Errorf("user %q is in the [[users]] of %s, not in the users file %s: edit it there by hand", name, e.config, e.path)
	}
	return -1, fmt.Errorf("no user %q in %s", name, e.path)
}

// checkNew refuses a name that either file already has.
func (e *usersEditor) checkNew(name string) error {
	if slices.ContainsFunc(e.users, func(u auth.UserConfig) bool { return u.Name == name }) {
		return fmt.Errorf("user %q already exists in %s", name, e.path)
	}
	if slices.ContainsFunc(e.main, func(u auth.UserConfig) bool { return u.Name == name }) {
		return fmt.Errorf("user %q already exists in the [[users]] of %s", name, e.config)
	}
	return nil
}

// editUser is editUsers for a change to the existing user name, at index i
// of e.users.
func editUser(config, name string, stdout, stderr io.Writer, change func(e *usersEditor, i int) (string, error)) int {
	return editUsers(config, stdout, stderr, func(e *usersEditor) (string, error) {
		i, err := e.index(name)
		if err != nil {
			return "", err
		}
		return change(e, i)
	})
}

// editUsers applies change to the users file of config, under a lock: it
// checks the result as serve will load it (loadConfigUsers), writes it and
// tells the running server to reload. change returns what it did, or "" when
// there was nothing to do. It returns the exit code.
func editUsers(config string, stdout, stderr io.Writer, change func(*usersEditor) (string, error)) int {
	unchanged := func(err error) int {
		fail(stderr, err)
		fmt.Fprintln(stderr, "ftpsd: the users file is unchanged")
		return exitError
	}
	e, err := openUsers(config)
	if err != nil {
		return unchanged(err)
	}
	unlock, err := lockDir(filepath.Dir(e.path))
	if err != nil {
		return unchanged(err)
	}
	defer unlock()
	// Read again under the lock: another "ftpsd user" may have just written.
	if e, err = openUsers(config); err != nil {
		return unchanged(err)
	}
	done, err := change(e)
	if err != nil {
		return unchanged(err)
	}
	if done == "" {
		return exitOK
	}
	data, err := renderUsersFile(e.users)
	if err != nil {
		return unchanged(fmt.Errorf("%s: %w", e.path, err))
	}
	cfg, err := loadConfigUsers(config, data)
	if err != nil {
		return unchanged(err)
	}
	if err := writeUsersFile(e.path, data, e.info, config); err != nil {
		return unchanged(err)
	}
	fmt.Fprintln(stdout, done)
	if err := reloadServer(cfg, config, stdout); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// reloadServer tells the server that runs with cfg to reload, as "ftpsd
// reload" does, or says when the change applies if none runs.
func reloadServer(cfg *fileConfig, config string, stdout io.Writer) error {
	pid, err := signalReload(cfg)
	var notRunning errNotRunning
	switch {
	case errors.As(err, &notRunning):
		why := err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			why = "no " + filepath.Join(cfg.Server.StateDir, pidFileName)
		}
		fmt.Fprintf(stdout, "no running server found (%s): the change applies when ftpsd starts, or with \"ftpsd reload -config %s\"\n", why, config)
		return nil
	case err != nil:
		return fmt.Errorf("the change is saved, but %w; it applies with \"ftpsd reload -config %s\" (as root or the server's user) or at the next start", err, config)
	}
	fmt.Fprintf(stdout, "sent SIGHUP to ftpsd (pid %d) to reload; its log says whether the reload was applied\n", pid)
	return nil
}

// lockDir takes an exclusive lock on the directory dir, so that two "ftpsd
// user" commands cannot lose each other's change. The users file itself
// cannot hold the lock: each change replaces it by a rename.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("auth.users_file: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", dir, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s: another \"ftpsd user\" command holds it", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newUsersFileMode is the mode of a users file that "ftpsd user" creates:
// the hashes are not for everyone to read.
const newUsersFileMode fs.FileMode = 0o640

// writeUsersFile replaces the users file at path with data through a
// temporary file in the same directory, fsync and rename, so that a reload
// at any moment reads the old file or the new one, never a part. The file
// keeps its mode and owner (old is its FileInfo). A new file is created
// 0640 and, when running as root, owned like the main configuration file
// config: the server, which never runs as root, must read both.
func writeUsersFile(path string, data []byte, old fs.FileInfo, config string) error {
	mode, owner := newUsersFileMode, old
	if old != nil {
		mode = old.Mode().Perm()
		// Replace the target of a symlink, not the link.
		if target, err := filepath.EvalSymlinks(path); err == nil {
			path = target
		}
	} else if os.Geteuid() == 0 {
		owner, _ = os.Stat(config) // if that fails, the file stays root's
	}
	return writeFileAtomic(path, data, mode, func(f *os.File) error {
		if st, ok := fileOwner(owner); ok && (st[0] != os.Geteuid() || st[1] != os.Getegid()) {
			if err := f.Chown(st[0], st[1]); err != nil {
				return fmt.Errorf("%s: keeping its owner %d:%d: %w (run as root)", path, st[0], st[1], err)
			}
		}
		return nil
	})
}

// fileOwner returns the uid and gid of fi.
func fileOwner(fi fs.FileInfo) ([2]int, bool) {
	if fi == nil {
		return [2]int{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]int{}, false
	}
	return [2]int{int(st.Uid), int(st.Gid)}, true
}
