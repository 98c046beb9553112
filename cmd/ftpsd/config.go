package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

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
	Server  ftps.Config       `toml:"server"`
	TLS     tlsctl.Config     `toml:"tls"`
	Passive passive.Config    `toml:"passive"`
	Auth    auth.Config       `toml:"auth"`
	Users   []auth.UserConfig `toml:"users"`
	Log     logConfig         `toml:"log"`
}

// logConfig is the [log] section: how the daemon writes its log to stderr.
type logConfig struct {
	Level  string `toml:"level"`  // "debug" | "info" (default) | "warn" | "error"
	Format string `toml:"format"` // "text" (default) | "json"
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
// works the same whatever the daemon's working directory is.
func loadConfig(path string) (*fileConfig, error) {
	var cfg fileConfig
	md, err := toml.DecodeFile(path, &cfg)
	if err != nil {
		return nil, decodeError(path, err)
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

	if err := cfg.validate(); err != nil {
		return nil, prefixLines(path, err)
	}
	return &cfg, nil
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
	for i := range c.Users {
		c.Users[i].Home = abs(c.Users[i].Home)
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
	if err := c.Passive.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Users) == 0 {
		errs = append(errs, errors.New(`users: no [[users]] entry; add one with name, password_hash (from "ftpsd hash-password"), home and permissions`))
	} else if err := auth.ValidateUsers(c.Users); err != nil {
		errs = append(errs, err)
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// newLogger builds the daemon's logger on w from a validated [log] section.
func newLogger(c logConfig, w io.Writer) *slog.Logger {
	lvl, err := c.level()
	if err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
