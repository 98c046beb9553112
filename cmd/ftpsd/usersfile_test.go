package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/auth"
)

// usersTable is one [[users]] table for a users file, with the example's
// hash.
func usersTable(t *testing.T, name, home string, extra ...string) string {
	t.Helper()
	return "[[users]]\nname = " + tomlString(name) + "\npassword_hash = '" + exampleHash(t) + "'\nhome = " + tomlString(home) +
		"\npermissions = [\"list\", \"read\"]\n" + strings.Join(extra, "\n") + "\n"
}

func TestParseUsersFile(t *testing.T) {
	hash := exampleHash(t)
	tests := []struct {
		name    string
		text    string
		want    []auth.UserConfig
		wantErr []string // all in the error; nil: no error
	}{
		{"empty", "", nil, nil},
		{"header only", usersFileHeader, nil, nil},
		{
			name: "two users, homes as written",
			text: usersTable(t, "alice", "h/alice") + "\n" + usersTable(t, "bob", "/srv/bob", "disabled = true"),
			want: []auth.UserConfig{
				{Name: "alice", PasswordHash: hash, Home: "h/alice", Permissions: []string{"list", "read"}},
				{Name: "bob", PasswordHash: hash, Home: "/srv/bob", Permissions: []string{"list", "read"}, Disabled: true},
			},
		},
		{
			name:    "unknown key has file and line, once",
			text:    usersTable(t, "alice", "a", `shell = "/bin/sh"`) + usersTable(t, "bob", "b", `shell = "/bin/sh"`),
			wantErr: []string{`users.toml:6: unknown key "users.shell"`},
		},
		{
			name:    "a section of the main file",
			text:    "[server]\nlisten = \":21\"\n" + usersTable(t, "alice", "a"),
			wantErr: []string{`users.toml:1: unknown key "server"`, "only [[users]] tables", `users.toml:2: unknown key "server.listen"`},
		},
		{
			name:    "syntax error has line and column",
			text:    "[[users]]\nname = \"alice\nhome = \"a\"\n",
			wantErr: []string{"users.toml:2:"},
		},
		{
			name:    "wrong type",
			text:    "[[users]]\nname = \"alice\"\ndisabled = \"yes\"\n",
			wantErr: []string{"users.toml:", "users.disabled", "incompatible types"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseUsersFile("users.toml", []byte(tt.text))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("parseUsersFile: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("parseUsersFile = %+v\nwant %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseUsersFile succeeded (%+v), want an error", got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "unknown key"); n > len(tt.wantErr) {
				t.Errorf("error repeats itself (%d unknown keys):\n%v", n, err)
			}
		})
	}
}

// TestLoadConfigUsersFile: loadConfig adds the users of [auth] users_file
// to those of the main file, resolves their relative homes against the
// users file's directory, and refuses mistakes naming the file that holds
// them.
func TestLoadConfigUsersFile(t *testing.T) {
	example := readExample(t)
	withoutUsers := example[:strings.Index(example, "\n[[users]]\n")]
	tests := []struct {
		name      string
		main      string // the main config; users_file is "sub/users.toml"
		users     *string
		wantUsers []string // name=home, home relative to the config's directory
		wantErr   []string
	}{
		{
			name:      "appended after the main file's users, homes relative to the users file",
			main:      example,
			users:     new(usersTable(t, "alice", "h/alice") + usersTable(t, "bob", "/srv/bob")),
			wantUsers: []string{"demo=var/home/demo", "alice=sub/h/alice", "bob=/srv/bob"},
		},
		{
			name:      "main file without users",
			main:      withoutUsers,
			users:     new(usersTable(t, "alice", "a")),
			wantUsers: []string{"alice=sub/a"},
		},
		{
			name:      "empty users file",
			main:      example,
			users:     new(usersFileHeader),
			wantUsers: []string{"demo=var/home/demo"},
		},
		{
			name:    "a name in both files",
			main:    example,
			users:   new(usersTable(t, "demo", "d")),
			wantErr: []string{`sub/users.toml: users "demo": the name is also in the [[users]] of the main file`},
		},
		{
			name:    "no user in either file",
			main:    withoutUsers,
			users:   new(usersFileHeader),
			wantErr: []string{"config.toml: users: no user", "auth.users_file", "sub/users.toml", "ftpsd user add"},
		},
		{
			name:    "missing users file",
			main:    example,
			wantErr: []string{"auth.users_file: open ", "sub/users.toml", "no such file", `"ftpsd user add NAME -home DIR -config FILE" creates it`},
		},
		{
			name:    "unknown key in the users file",
			main:    example,
			users:   new(usersTable(t, "alice", "a", `homedir = "x"`)),
			wantErr: []string{`sub/users.toml:6: unknown key "users.homedir"`},
		},
		{
			name:    "bad permission in the users file named there",
			main:    example,
			users:   new(strings.Replace(usersTable(t, "alice", "a"), `"read"`, `"exec"`, 1)),
			wantErr: []string{`sub/users.toml: users "alice".permissions: "exec" is not a permission`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, strings.Replace(tt.main, `users_file = ""`, `users_file = "sub/users.toml"`, 1))
			dir := filepath.Dir(path)
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.users != nil {
				if err := os.WriteFile(filepath.Join(dir, "sub", "users.toml"), []byte(*tt.users), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := loadConfig(path)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("loadConfig succeeded, want an error")
				}
				msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
				for _, w := range tt.wantErr {
					if !strings.Contains(msg, w) {
						t.Errorf("error lacks %q:\n%s", w, msg)
					}
				}
				if strings.Contains(msg, "$argon2id$") {
					t.Errorf("error leaks a password hash:\n%s", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			var got []string
			for _, u := range cfg.Users {
				rel := u.Home
				if r, err := filepath.Rel(dir, u.Home); err == nil && !strings.HasPrefix(r, "..") {
					rel = r
				}
				got = append(got, u.Name+"="+rel)
			}
			if !reflect.DeepEqual(got, tt.wantUsers) {
				t.Errorf("users = %q, want %q", got, tt.wantUsers)
			}
			if cfg.Auth.UsersFile != filepath.Join(dir, "sub", "users.toml") {
				t.Errorf("auth.users_file = %q, not resolved against the config's directory", cfg.Auth.UsersFile)
			}
		})
	}
}

// TestRenderUsersFile: what "ftpsd user" writes decodes to what it was
// given, whatever the strings hold, and starts with the header.
func TestRenderUsersFile(t *testing.T) {
	hash := exampleHash(t)
	tests := []struct {
		name    string
		users   []auth.UserConfig
		wantErr string
	}{
		{"none", nil, ""},
		{"plain", []auth.UserConfig{
			{Name: "alice", PasswordHash: hash, Home: "/srv/ftp/alice", Permissions: []string{"all"}},
			{Name: "bob", PasswordHash: "$2b$10$" + strings.Repeat("a", 53), Home: "rel/bob", Permissions: []string{"list", "read"}, Disabled: true},
		}, ""},
		{"quotes, backslashes, control characters, unicode", []auth.UserConfig{
			{Name: `o"brien\x`, PasswordHash: hash, Home: "/srv/ftp/tab\there/new\nline/\x7f/ünï €/'q'", Permissions: []string{}},
		}, ""},
		{"invalid UTF-8", []auth.UserConfig{{Name: "a\xff", PasswordHash: hash, Home: "/h"}}, "not valid UTF-8"},
		{"limits", []auth.UserConfig{
			{Name: "carol", PasswordHash: hash, Home: "/srv/carol", Permissions: []string{"all"},
				MaxSessions: new(3), DownloadRate: "2MiB", UploadRate: "500000", Quota: "1.5GiB", QuotaFiles: new(int64(1000)),
				AllowedNetworks: []string{"192.0.2.0/24", "2001:db8::/32"}},
			{Name: "dave", PasswordHash: hash, Home: "/srv/dave", Permissions: []string{"all"}, MaxSessions: new(0)},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := renderUsersFile(tt.users)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("renderUsersFile error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), usersFileHeader) {
				t.Errorf("no header:\n%s", data)
			}
			got, err := parseUsersFile("users.toml", data)
			if err != nil {
				t.Fatalf("rendered file does not decode: %v\n%s", err, data)
			}
			if len(got) != len(tt.users) {
				t.Fatalf("decoded %d users, want %d:\n%s", len(got), len(tt.users), data)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tt.users[i]) {
					t.Errorf("user %d decodes to %+v, want %+v\n%s", i, got[i], tt.users[i], data)
				}
			}
		})
	}
}
