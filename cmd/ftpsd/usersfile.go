package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
)

// usersFile is the content of [auth] users_file: [[users]] tables only, with
// the keys of [[users]] in the main file.
type usersFile struct {
	Users []auth.UserConfig `toml:"users"`
}

// usersFileHeader starts every users file that "ftpsd user" writes. The file
// is rewritten from its data, so the header says what survives an edit.
const usersFileHeader = `# ftpsd users, managed by "ftpsd user" (see "ftpsd user -h").
# Edits by hand are kept only as data: comments and layout are not.
# Each [[users]] table takes the keys of [[users]] in the main configuration
# file: name, password_hash, home (absolute, or relative to this file's
# directory), permissions, disabled, and the limits max_sessions,
# download_rate, upload_rate, quota, quota_files, allowed_networks.
`

// parseUsersFile decodes the users file at path from data. Homes are left as
// written: the editor writes them back unchanged, and mergeUsersFile resolves
// them. Errors name the file and, where the decoder knows it, the line.
func parseUsersFile(path string, data []byte) ([]auth.UserConfig, error) {
	var uf usersFile
	md, err := decodeTOML(path, data, &uf)
	if err != nil {
		return nil, err
	}
	// A typo in one of many users is easier to find with its line; the
	// decoder reports a key once per table it is in, so keep the first.
	var errs []error
	var seen []string
	for _, k := range md.Undecoded() {
		if key := k.String(); !slices.Contains(seen, key) {
			seen = append(seen, key)
			hint := ""
			if k[0] != "users" {
				hint = " (a users file holds only [[users]] tables)"
			}
			errs = append(errs, fmt.Errorf("%s%s: unknown key %q%s", path, lineSuffix(data, k), key, hint))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return uf.Users, nil
}

// lineSuffix is ":N", N being the line of key k in data (a key, or a table
// header), or "" if it cannot be found.
func lineSuffix(data []byte, k toml.Key) string {
	n := keyLine(data, k)
	if n == 0 {
		for i, line := range strings.Split(string(data), "\n") {
			if h := strings.TrimSpace(line); strings.HasPrefix(h, "[") && strings.TrimSpace(strings.Trim(h, "[]")) == k.String() {
				n = i + 1
				break
			}
		}
	}
	if n == 0 {
		return ""
	}
	return ":" + strconv.Itoa(n)
}

// mergeUsersFile appends the users of [auth] users_file, if set, to c.Users.
// data is the file's content, or nil to read it from disk. Relative homes are
// resolved against the users file's directory. Mistakes within the users file
// are reported with its name, and so is a name that is in both files.
func (c *fileConfig) mergeUsersFile(data []byte) error {
	path := c.Auth.UsersFile
	if path == "" {
		return nil
	}
	if data == nil {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf(`auth.users_file: %w ("ftpsd user add NAME -home DIR -config FILE" creates it)`, err)
			}
			return fmt.Errorf("auth.users_file: %w", err)
		}
	}
	users, err := parseUsersFile(path, data)
	if err != nil {
		return err
	}
	resolveHomes(users, filepath.Dir(path))
	// An empty users file is fine when the main file has users.
	if len(users) > 0 {
		if err := auth.ValidateUsers(users); err != nil {
			return prefixLines(path, err)
		}
	}
	// validate would find these too, but by position in both lists joined.
	var errs []error
	for _, u := range users {
		if slices.ContainsFunc(c.Users, func(m auth.UserConfig) bool { return m.Name == u.Name }) {
			errs = append(errs, fmt.Errorf("%s: users %q: the name is also in the [[users]] of the main file; keep one", path, u.Name))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	c.Users = append(c.Users, users...)
	return nil
}

// resolveHomes makes the relative homes of users absolute against dir.
func resolveHomes(users []auth.UserConfig, dir string) {
	for i, u := range users {
		if u.Home != "" && !filepath.IsAbs(u.Home) && !ftps.IsS3Home(u.Home) {
			users[i].Home = filepath.Join(dir, u.Home)
		}
	}
}

// renderUsersFile is the users file holding users: the header, then one
// [[users]] table each, in order. It refuses what TOML cannot hold.
func renderUsersFile(users []auth.UserConfig) ([]byte, error) {
	var b strings.Builder
	b.WriteString(usersFileHeader)
	for i, u := range users {
		for _, s := range append([]string{u.Name, u.PasswordHash, u.Home}, u.Permissions...) {
			if !utf8.ValidString(s) {
				return nil, fmt.Errorf("users[%d]: %q is not valid UTF-8", i, s)
			}
		}
		perms := make([]string, len(u.Permissions))
		for j, p := range u.Permissions {
			perms[j] = tomlString(p)
		}
		fmt.Fprintf(&b, "\n[[users]]\nname = %s\npassword_hash = %s\nhome = %s\npermissions = [%s]\ndisabled = %t\n",
			tomlString(u.Name), tomlString(u.PasswordHash), tomlString(u.Home), strings.Join(perms, ", "), u.Disabled)
		writeUserLimits(&b, u)
	}
	return []byte(b.String()), nil
}

// writeUserLimits writes the limit keys a user sets (unset keys take the
// [limits] defaults and are left out).
func writeUserLimits(b *strings.Builder, u auth.UserConfig) {
	if u.MaxSessions != nil {
		fmt.Fprintf(b, "max_sessions = %d\n", *u.MaxSessions)
	}
	for _, f := range []struct {
		key string
		v   auth.Size
	}{{"download_rate", u.DownloadRate}, {"upload_rate", u.UploadRate}, {"quota", u.Quota}} {
		if f.v != "" {
			fmt.Fprintf(b, "%s = %s\n", f.key, tomlString(string(f.v)))
		}
	}
	if u.QuotaFiles != nil {
		fmt.Fprintf(b, "quota_files = %d\n", *u.QuotaFiles)
	}
	if len(u.AllowedNetworks) > 0 {
		nets := make([]string, len(u.AllowedNetworks))
		for i, n := range u.AllowedNetworks {
			nets[i] = tomlString(n)
		}
		fmt.Fprintf(b, "allowed_networks = [%s]\n", strings.Join(nets, ", "))
	}
}

// tomlString quotes s as a TOML basic string. strconv.Quote is not one: TOML
// has no \x, \a or \v escapes.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
