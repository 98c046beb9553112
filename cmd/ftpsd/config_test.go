package main

import (
	"encoding"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ftpsd/ftpsd/auth"
)

// examplePath is config.example.toml at the repository root.
const examplePath = "../../config.example.toml"

// examplePassword is the password whose hash the example's demo user has.
const examplePassword = "demo-password-change-me"

// readExample returns the text of config.example.toml.
func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeConfig writes text as config.toml into a new temporary directory and
// returns its path. Relative paths in it then resolve inside that directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tomlKeys lists every TOML key reachable from t, dotted, the way
// toml.Key.String spells them: sections, their keys, and the keys of arrays
// of tables. Fields tagged `toml:"-"` are skipped.
func tomlKeys(t *testing.T, typ reflect.Type, prefix string) []string {
	t.Helper()
	textUnmarshaler := reflect.TypeFor[encoding.TextUnmarshaler]()
	var keys []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch name {
		case "-":
			continue
		case "":
			t.Errorf("%s.%s has no toml tag; config fields need an explicit snake_case key", typ, f.Name)
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		keys = append(keys, key)

		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem() // [[array]] of tables
		}
		if ft.Kind() != reflect.Struct || ft == reflect.TypeFor[time.Time]() ||
			reflect.PointerTo(ft).Implements(textUnmarshaler) {
			continue
		}
		keys = append(keys, tomlKeys(t, ft, key)...)
	}
	return keys
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	var cfg fileConfig
	md, err := toml.DecodeFile(examplePath, &cfg)
	if err != nil {
		t.Fatalf("decode %s: %v", examplePath, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("%s has unknown keys: %v", examplePath, u)
	}
	var have []string
	for _, k := range md.Keys() {
		have = append(have, k.String())
	}
	want := tomlKeys(t, reflect.TypeFor[fileConfig](), "")
	if len(want) < 30 {
		t.Fatalf("found only %d keys in fileConfig (%v); the reflection walk is broken", len(want), want)
	}
	for _, k := range want {
		if !slices.Contains(have, k) {
			t.Errorf("%s does not document key %q", examplePath, k)
		}
	}
}

func TestExampleDemoUser(t *testing.T) {
	var cfg fileConfig
	if _, err := toml.DecodeFile(examplePath, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Users) != 1 {
		t.Fatalf("example has %d users, want 1", len(cfg.Users))
	}
	u := cfg.Users[0]
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Errorf("demo password_hash %q is not argon2id", u.PasswordHash)
	}
	ok, err := auth.VerifyPassword(u.PasswordHash, examplePassword)
	if err != nil || !ok {
		t.Errorf("VerifyPassword(demo hash, %q) = %v, %v; want true, nil", examplePassword, ok, err)
	}
	perms, err := auth.ParsePerms(u.Permissions)
	if err != nil {
		t.Fatal(err)
	}
	all := auth.PermList | auth.PermRead | auth.PermWrite | auth.PermDelete | auth.PermMkdir | auth.PermRename
	if !perms.Has(all) {
		t.Errorf("demo permissions = %v, want all six", perms)
	}
}

func TestLoadExample(t *testing.T) {
	path := writeConfig(t, readExample(t))
	dir := filepath.Dir(path)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatalf("loadConfig(example): %v", err)
	}
	tests := []struct {
		name, got, want string
	}{
		{"server.state_dir", cfg.Server.StateDir, filepath.Join(dir, "var", "state")},
		{"tls state dir", cfg.TLS.StateDir, filepath.Join(dir, "var", "state")},
		{"users[0].home", cfg.Users[0].Home, filepath.Join(dir, "var", "home", "demo")},
		{"server.listen", cfg.Server.Listen, "127.0.0.1:2121"},
		{"passive.ports", cfg.Passive.Ports, "50000-50100"},
		{"tls.mode", cfg.TLS.Mode, "self-signed"},
		{"log.level", cfg.Log.Level, "info"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	// The smallest useful file: one user. Everything else is a default.
	hash := exampleHash(t)
	path := writeConfig(t, "[[users]]\nname = \"u\"\npassword_hash = '"+hash+"'\nhome = \"h\"\npermissions = [\"all\"]\n")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if cfg.Server.Listen != ":21" || cfg.Passive.Ports != "50000-50100" || cfg.TLS.Mode != "self-signed" ||
		cfg.Log.Level != "info" || cfg.Log.Format != "text" || cfg.Server.ShutdownTimeout != 30*time.Second {
		t.Errorf("defaults not filled: %+v", cfg)
	}
	if cfg.Users[0].Home != filepath.Join(filepath.Dir(path), "h") {
		t.Errorf("home = %q, not resolved against the config directory", cfg.Users[0].Home)
	}
}

// exampleHash is the demo user's password hash from the example.
func exampleHash(t *testing.T) string {
	t.Helper()
	var cfg fileConfig
	if _, err := toml.DecodeFile(examplePath, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Users) == 0 {
		t.Fatal("example has no users")
	}
	return cfg.Users[0].PasswordHash
}

// lineOf returns the 1-based line number of the first line of text that
// contains s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	i := strings.Index(text, s)
	if i < 0 {
		t.Fatalf("%q not in the example", s)
	}
	return strings.Count(text[:i], "\n") + 1
}

func TestLoadConfigErrors(t *testing.T) {
	example := readExample(t)
	// replace edits the example, which must contain old exactly once, so a
	// change of the example cannot turn a case into a no-op.
	replace := func(old, new string) func(*testing.T, string) string {
		return func(t *testing.T, s string) string {
			t.Helper()
			if n := strings.Count(s, old); n != 1 {
				t.Fatalf("%q occurs %d times in the example, want 1", old, n)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	appendText := func(extra string) func(*testing.T, string) string {
		return func(_ *testing.T, s string) string { return s + extra }
	}
	// line is "config.toml:LINE:", the line being that of marker.
	line := func(marker string) string {
		return "config.toml:" + strconv.Itoa(lineOf(t, example, marker)) + ":"
	}

	tests := []struct {
		name string
		edit func(*testing.T, string) string
		want []string
	}{
		{
			name: "syntax error has line and column",
			edit: replace(`max_connections = 100`, `max_connections = 100 300`),
			want: []string{line("max_connections = 100") + "22:", "max_connections = 100 300", "^"},
		},
		{
			name: "unterminated string has line",
			edit: replace(`listen = "127.0.0.1:2121"`, `listen = "127.0.0.1:2121`),
			want: []string{line(`listen = "127.0.0.1:2121"`)},
		},
		{
			name: "unknown key",
			edit: replace(`idle_timeout = "5m"`, `idel_timeout = "5m"`),
			want: []string{`config.toml: unknown key "server.idel_timeout"`},
		},
		{
			name: "unknown key in users",
			edit: replace(`name = "demo"`, "name = \"demo\"\nshell = \"/bin/sh\""),
			want: []string{`unknown key "users.shell"`},
		},
		{
			name: "unknown section",
			edit: appendText("\n[ftp]\nport = 21\n"),
			want: []string{`unknown key "ftp"`, `unknown key "ftp.port"`},
		},
		{
			name: "bad port range",
			edit: replace(`ports = "50000-50100"`, `ports = "70000-1"`),
			want: []string{"config.toml: passive.ports:", "70000"},
		},
		{
			name: "bad duration",
			edit: replace(`idle_timeout = "5m"`, `idle_timeout = "5 minutes"`),
			want: []string{line(`idle_timeout = "5m"`) + "17:", "server.idle_timeout", `"5 minutes"`},
		},
		{
			name: "wrong type",
			edit: replace(`max_connections = 100`, `max_connections = "100"`),
			want: []string{"config.toml:", "server.max_connections", "incompatible types"},
		},
		{
			name: "negative duration",
			edit: replace(`accept_timeout = "30s"`, `accept_timeout = "-30s"`),
			want: []string{"config.toml: passive.accept_timeout:"},
		},
		{
			name: "bad listen address",
			edit: replace(`listen = "127.0.0.1:2121"`, `listen = "127.0.0.1"`),
			want: []string{"config.toml: server.listen:"},
		},
		{
			name: "bad permission",
			edit: replace(`permissions = ["list", "read", "write", "delete", "mkdir", "rename"]`, `permissions = ["list", "exec"]`),
			want: []string{`config.toml: users "demo".permissions`, `"exec"`},
		},
		{
			name: "duplicate user",
			edit: func(t *testing.T, s string) string {
				i := strings.Index(s, "\n[[users]]\n")
				if i < 0 {
					t.Fatal("no [[users]] in the example")
				}
				return s + s[i:]
			},
			want: []string{"config.toml: users[1]", `"demo"`},
		},
		{
			name: "no users",
			edit: func(t *testing.T, s string) string {
				i := strings.Index(s, "\n[[users]]\n")
				if i < 0 {
					t.Fatal("no [[users]] in the example")
				}
				return s[:i]
			},
			want: []string{"config.toml: users:", "[[users]]"},
		},
		{
			name: "empty password hash",
			edit: func(t *testing.T, s string) string {
				i := strings.Index(s, "password_hash = ")
				j := strings.Index(s[i:], "\n")
				return s[:i] + `password_hash = ""` + s[i+j:]
			},
			want: []string{`config.toml: users "demo".password_hash`},
		},
		{
			name: "bad tls mode",
			edit: replace(`mode = "self-signed"`, `mode = "acme2"`),
			want: []string{"config.toml: tls.mode:", `"acme2"`},
		},
		{
			name: "cert file in self-signed mode",
			edit: replace(`cert_file = ""`, `cert_file = "cert.pem"`),
			want: []string{"config.toml: tls.cert_file"},
		},
		{
			name: "bad tls min version",
			edit: replace(`min_version = "1.2"`, `min_version = "1.1"`),
			want: []string{"config.toml: tls.min_version:"},
		},
		{
			name: "bad log level",
			edit: replace(`level = "info"`, `level = "verbose"`),
			want: []string{`config.toml: log.level: "verbose"`},
		},
		{
			name: "bad log format",
			edit: replace(`format = "text"`, `format = "xml"`),
			want: []string{`config.toml: log.format: "xml"`},
		},
		{
			name: "every section's error is reported",
			edit: func(t *testing.T, s string) string {
				s = replace(`level = "info"`, `level = "verbose"`)(t, s)
				return replace(`mode = "self-signed"`, `mode = "acme2"`)(t, s)
			},
			want: []string{"config.toml: log.level:", "config.toml: tls.mode:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tt.edit(t, example))
			_, err := loadConfig(path)
			if err == nil {
				t.Fatal("loadConfig succeeded, want an error")
			}
			// Report positions relative to the file name only.
			msg := strings.ReplaceAll(err.Error(), filepath.Dir(path)+string(filepath.Separator), "")
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "$argon2id$") {
				t.Errorf("error leaks a password hash:\n%s", msg)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := loadConfig(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Fatalf("loadConfig(missing) = %v, want an error naming the file", err)
	}
}

func TestLogConfig(t *testing.T) {
	tests := []struct {
		in      logConfig
		wantErr string
	}{
		{logConfig{}, ""},
		{logConfig{Level: "debug", Format: "json"}, ""},
		{logConfig{Level: "warn"}, ""},
		{logConfig{Level: "error"}, ""},
		{logConfig{Level: "trace"}, "log.level"},
		{logConfig{Format: "logfmt"}, "log.format"},
	}
	for _, tt := range tests {
		c := tt.in
		err := c.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%+v: Validate() = %v", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%+v: Validate() = %v, want an error naming %s", tt.in, err, tt.wantErr)
		}
	}
}
