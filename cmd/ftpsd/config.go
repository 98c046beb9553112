package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// fileConfig is the whole configuration file. Each section is owned by the
// package that uses it; this struct only composes them, so a key is defined
// (and validated) in exactly one place.
type fileConfig struct {
	Server  ftps.Config        `toml:"server"`
	TLS     tlsctl.Config      `toml:"tls"`
	Passive passive.Config     `toml:"passive"`
	Auth    auth.Config        `toml:"auth"`
	Users   []auth.UserConfig  `toml:"users"`
	Limits  auth.LimitsConfig  `toml:"limits"`
	Log     logConfig          `toml:"log"`
	Metrics metricsConfig      `toml:"metrics"`
	Cluster auth.ClusterConfig `toml:"cluster"`
	Storage storageConfig      `toml:"storage"`
}

// storageConfig is the [storage] section: the backends other than the
// local file system, which users select by their home.
type storageConfig struct {
	S3 ftps.S3Config `toml:"s3"`
}

// logConfig is the [log] section: how the daemon writes its log to stderr.
type logConfig struct {
	Level  string `toml:"level"`  // "debug" | "info" (default) | "warn" | "error"
	Format string `toml:"format"` // "text" (default) | "json"
	// File, when set, receives the log too (stderr always does); it is
	// reopened on SIGUSR1 and on reload, for logrotate.
	File string `toml:"file"`
	// Xferlog, when set, receives one line per file transfer in the
	// xferlog(5) format of vsftpd and ProFTPD; reopened like File.
	Xferlog string `toml:"xferlog"`
}

// Validate fills the defaults and checks the values, naming the key in errors.
func (c *logConfig) Validate() error {
	if c.Level == "" {
		c.Level = "info"
	}
	if c.Format == "" {
		c.Format = "text"
	}
	if _, err := c.level(); err != nil {
		return err
	}
	switch c.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not a log format (want text or json)", c.Format)
	}
	return nil
}

// level maps the configured level name to its slog.Level.
func (c *logConfig) level() (slog.Level, error) {
	switch strings.ToLower(c.Level) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log.level: %q is not a log level (want debug, info, warn or error)", c.Level)
}

// loadConfig reads, decodes and validates the configuration file at path.
//
// Syntax and type errors carry the file name, line and column; unknown keys
// are refused so that a typo never silently falls back to a default. Relative
// paths in the file are resolved against the file's directory, so a config
// works the same whatever the daemon's working directory is. The users of
// [auth] users_file are added to those of the file.
func loadConfig(path string) (*fileConfig, error) {
	return loadConfigUsers(path, nil)
}

// loadConfigUsers is loadConfig with the content of the users file given in
// usersData (nil: read from disk), so that "ftpsd user" checks a change the
// way serve will read it, before writing it.
func loadConfigUsers(path string, usersData []byte) (*fileConfig, error) {
	cfg, err := decodeConfig(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.mergeUsersFile(usersData); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, prefixLines(path, err)
	}
	return cfg, nil
}

// decodeConfig reads and decodes the file at path and resolves its relative
// paths, without the users file and without validation.
func decodeConfig(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg fileConfig
	md, err := decodeTOML(path, data, &cfg)
	if err != nil {
		return nil, err
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		errs := make([]error, 0, len(undecoded))
		for _, k := range undecoded {
			errs = append(errs, fmt.Errorf("%s: unknown key %q", path, k.String()))
		}
		return nil, errors.Join(errs...)
	}

	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.resolvePaths(dir)
	return &cfg, nil
}

// decodeTOML decodes data, the file at path, into v and refuses durations
// without a unit; the caller checks the undecoded keys its own way.
func decodeTOML[T any](path string, data []byte, v *T) (toml.MetaData, error) {
	md, err := toml.Decode(string(data), v)
	if err != nil {
		return md, decodeError(path, err)
	}
	return md, unitlessDurations(path, data, md, reflect.TypeFor[T]())
}

// unitlessDurations refuses a duration written as a bare number: the TOML
// decoder takes "login_timeout = 60" as 60 nanoseconds, which would time
// every session out at once.
func unitlessDurations(path string, data []byte, md toml.MetaData, root reflect.Type) error {
	var errs []error
	for _, k := range md.Keys() {
		if md.Type(k...) != "Integer" || !isDurationField(root, k) {
			continue
		}
		errs = append(errs, fmt.Errorf("%s:%d: %s: a duration needs a unit: use a string such as \"60s\", \"5m\" or \"500ms\"",
			path, keyLine(data, k), k.String()))
	}
	return errors.Join(errs...)
}

// isDurationField reports whether the TOML key k of a struct of type t
// decodes into a time.Duration.
func isDurationField(t reflect.Type, k toml.Key) bool {
	for _, name := range k {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return false
		}
		f, ok := fieldByTOMLName(t, name)
		if !ok {
			return false
		}
		t = f.Type
	}
	for t.Kind() == reflect.Pointer { // an optional duration (auth.login_cache_ttl)
		t = t.Elem()
	}
	return t == reflect.TypeFor[time.Duration]()
}

func fieldByTOMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == name || tag == "" && strings.EqualFold(f.Name, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keyLine finds the line of key k in a TOML document (0 if not found): the
// first "name =" line of k's last element under the table header that holds
// it. It understands the plain layout of ftpsd's files ([table], then
// key = value), which is all the decoder has already accepted.
func keyLine(data []byte, k toml.Key) int {
	table, name := strings.Join(k[:len(k)-1], "."), k[len(k)-1]
	current := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			current = strings.TrimSpace(strings.Trim(line, "[]"))
			continue
		}
		before, _, ok := strings.Cut(line, "=")
		if ok && current == table && strings.Trim(strings.TrimSpace(before), `"'`) == name {
			return i + 1
		}
	}
	return 0
}

// decodeError turns a toml decoding error into "file:line:col: key: message"
// followed by the offending lines of the file, or "file: message" when the
// decoder gave no position (an open error already names the file).
func decodeError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg = pe.LastKey + ": " + msg
		}
		return fmt.Errorf("%s:%d:%d: %s%s", path, pe.Position.Line, pe.Position.Col, msg, sourceContext(pe))
	}
	if strings.HasPrefix(err.Error(), "toml: ") {
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "toml: "))
	}
	return err
}

// sourceContext returns the excerpt of the file that ErrorWithPosition shows
// (the lines before the error and a caret line), without its header, or ""
// when there is none.
func sourceContext(pe toml.ParseError) string {
	full := pe.ErrorWithPosition()
	i := strings.Index(full, "\nAt line ")
	if i < 0 {
		return ""
	}
	_, after, ok := strings.Cut(full[i:], ":\n\n") // "At line 3, column 5:\n\n"
	if !ok {
		return ""
	}
	after = strings.TrimRight(after, "\n")
	if after == "" {
		return ""
	}
	return "\n\n" + after
}

// prefixLines prefixes every joined error with the config file name, so each
// line of the message says where to look.
func prefixLines(path string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		out = append(out, fmt.Errorf("%s: %w", path, e))
	}
	return errors.Join(out...)
}

// resolvePaths makes the relative paths of the file absolute against dir, the
// config file's directory. Empty paths stay empty so that Validate can apply
// its default.
func (c *fileConfig) resolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.Server.StateDir = abs(c.Server.StateDir)
	c.TLS.CertFile = abs(c.TLS.CertFile)
	c.TLS.KeyFile = abs(c.TLS.KeyFile)
	c.TLS.Storage = abs(c.TLS.Storage)
	c.TLS.TrustedRoots = abs(c.TLS.TrustedRoots)
	c.TLS.DNS.TSIGSecretFile = abs(c.TLS.DNS.TSIGSecretFile)
	c.Log.File = abs(c.Log.File)
	c.Log.Xferlog = abs(c.Log.Xferlog)
	c.Auth.UsersFile = abs(c.Auth.UsersFile)
	c.Storage.S3.SecretAccessKeyFile = abs(c.Storage.S3.SecretAccessKeyFile)
	for i := range c.Users {
		if !ftps.IsS3Home(c.Users[i].Home) {
			c.Users[i].Home = abs(c.Users[i].Home)
		}
	}
}

// validate runs every section's Validate (which fills its defaults) and
// returns all the problems found, not only the first, so one edit fixes them.
func (c *fileConfig) validate() error {
	var errs []error
	if err := c.Server.Validate(); err != nil {
		errs = append(errs, err)
	}
	// tlsctl keeps its state (the self-signed certificate) under the
	// server's state directory; Server.Validate filled its default.
	c.TLS.StateDir = c.Server.StateDir
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	// One key for the administrator: the data listeners trust the same
	// balancers as the control listeners.
	c.Passive.TrustedProxies = c.Server.Proxies()
	c.Passive.ProxyHeaderTimeout = c.Server.ProxyHeaderTimeout
	if err := c.Passive.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	// auth applies the [limits] defaults to each user and hands the
	// server-wide caps to ftps.
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	c.Auth.Limits = c.Limits
	switch {
	case len(c.Users) == 0 && c.Auth.UsersFile == "":
		errs = append(errs, errors.New(`users: no user: add a [[users]] entry with name, password_hash (from "ftpsd hash-password"), home and permissions, or set [auth] users_file and add users with "ftpsd user add"`))
	case len(c.Users) == 0:
		errs = append(errs, fmt.Errorf(`users: no user, neither a [[users]] entry here nor one in auth.users_file %s: add one with "ftpsd user add"`, c.Auth.UsersFile))
	default:
		// The users of both files together: a name in both is a duplicate.
		if err := auth.ValidateUsers(c.Users); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, checkHomes(c.Users)...)
		}
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Metrics.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Cluster.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Storage.S3.Validate(); err != nil {
		errs = append(errs, err)
	}
	c.Server.S3 = c.Storage.S3
	return errors.Join(errs...)
}

// checkHomes reports homes that exist but cannot be one (a file, say), or
// cannot be looked at. A missing home is fine: serve creates it. It is part
// of validate so that check-config, serve and a reload refuse the same
// files; it writes nothing.
func checkHomes(users []auth.UserConfig) []error {
	var errs []error
	for _, u := range users {
		if ftps.IsS3Home(u.Home) {
			if err := ftps.ValidateS3Home(u.Home); err != nil {
				errs = append(errs, fmt.Errorf("users %q: home: %w", u.Name, err))
			}
			continue
		}
		fi, err := os.Stat(u.Home)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, fmt.Errorf("users %q: home: %w", u.Name, err))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("users %q: home: %q is not a directory", u.Name, u.Home))
		}
	}
	return errs
}
