package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the release version, set at build time with
// -ldflags "-X main.version=v1.2.3". It is the one package-level variable of
// the command and is never written at run time.
var version = "dev"

// Exit codes of run.
const (
	exitOK    = 0
	exitError = 1 // the command failed: bad config, cannot listen, ...
	exitUsage = 2 // the command line is wrong
)

// command is one subcommand of ftpsd.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order the usage shows them.
func commands() []command {
	return []command{
		{"serve", "run the FTPS server", runServe},
		{"check-config", "validate a config file and print the effective settings", runCheckConfig},
		{"reload", "check a config file and tell the running server to reload it", runReload},
		{"hash-password", "read a password and print its hash for [[users]] password_hash", runHashPassword},
		{"user", "add, change, disable, delete and list the users of [auth] users_file", runUser},
		{"who", "show the sessions of the running server and their transfers", runWho},
		{"ban", "list and lift the login bans of the running server", runBan},
		{"version", "print the version", runVersion},
	}
}

// run is the whole program behind main, with its environment passed in so
// tests can drive it. It returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ftpsd: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// runGroup runs a command made of subcommands ("ftpsd user", "ftpsd ban"):
// its -h text is intro followed by the subcommands' summaries, and args[0]
// picks the subcommand, which gets the rest of args.
func runGroup(ctx context.Context, name, synopsis, intro, example string, cmds []command,
	args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var desc strings.Builder
	desc.WriteString(intro)
	desc.WriteString("\n\nCommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(&desc, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(&desc, "\nRun \"ftpsd %s <command> -h\" for its flags.", name)
	fs := newFlagSet(name, synopsis, desc.String(), example, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "ftpsd %s: missing command\n", name)
		fs.Usage()
		return exitUsage
	}
	for _, c := range cmds {
		if c.name == fs.Arg(0) {
			return c.run(ctx, fs.Args()[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ftpsd %s: unknown command %q\n", name, fs.Arg(0))
	fs.Usage()
	return exitUsage
}

// usage writes the top-level help.
func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("ftpsd is an FTPS (FTP over TLS) server.\n\nUsage:\n  ftpsd <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"ftpsd <command> -h\" for the flags of a command and an example.\n")
	io.WriteString(w, b.String())
}

// fail reports err the way every subcommand does, one "ftpsd: " line per
// joined error (a config with several mistakes), and returns exitError.
func fail(stderr io.Writer, err error) int {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "ftpsd: %v\n", e)
	}
	return exitError
}

// newFlagSet returns a FlagSet whose -h output shows the synopsis, a
// description, the flags and an example.
func newFlagSet(name, synopsis, description, example string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ftpsd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: ftpsd %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(description))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(out, "\nFlags:\n")
			fs.PrintDefaults()
		}
		fmt.Fprintf(out, "\nExample:\n%s\n", strings.TrimRight(example, "\n"))
	}
	return fs
}

// parseFlags parses args and refuses positional arguments. ok is false when
// the command must stop, with code as its exit code (0 after -h).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false // the flag package already printed the error and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

// configFlag registers the -config flag shared by serve and check-config.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "path of the TOML configuration `FILE` (required); relative paths in it are relative to its directory")
}

// parseConfigFlags registers -config, parses args and requires -config:
// the start of every subcommand that reads the configuration. ok is false
// when the command must stop, with code as its exit code.
func parseConfigFlags(fs *flag.FlagSet, args []string) (path string, code int, ok bool) {
	p := configFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return "", code, false
	}
	if code, ok := requireConfig(fs, *p); !ok {
		return "", code, false
	}
	return *p, exitOK, true
}

// requireConfig reports a missing -config flag; ok is false when it is.
func requireConfig(fs *flag.FlagSet, path string) (code int, ok bool) {
	if path != "" {
		return exitOK, true
	}
	fmt.Fprintf(fs.Output(), "%s: missing -config FILE\n", fs.Name())
	fs.Usage()
	return exitUsage, false
}

// runVersion implements "ftpsd version".
func runVersion(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", "Print the ftpsd version and the Go version it was built with.", "  ftpsd version", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fmt.Fprintf(stdout, "ftpsd %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// versionString is the -ldflags version, or else the module version that
// "go install ...@vX" records, or "dev".
func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
