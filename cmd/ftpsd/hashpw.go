package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/ftpsd/ftpsd/auth"
)

// maxPasswordLen bounds what hash-password reads, so a stray pipe of a large
// file is refused instead of hashed.
const maxPasswordLen = 1024

// runHashPassword implements "ftpsd hash-password".
func runHashPassword(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("hash-password", "[< password]",
		`Read a password and print its argon2id hash (PHC string), for the
password_hash key of a [[users]] entry. On a terminal the password is asked
twice and not shown. Otherwise one line is read from standard input; a
trailing newline is not part of the password.`,
		`  ftpsd hash-password
  printf '%s' "$PW" | ftpsd hash-password`, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	pw, err := readNewPassword(ctx, stdin, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, hash)
	return exitOK
}

// readNewPassword reads a password to be set: on a terminal, twice and
// without echo, prompting on prompts; otherwise the first line of stdin.
func readNewPassword(ctx context.Context, stdin io.Reader, prompts io.Writer) (string, error) {
	fd, ok := terminalFd(stdin)
	if !ok {
		return readPassword(stdin)
	}
	pw, err := promptPassword(ctx, fd, prompts, "Password: ")
	if err != nil {
		return "", err
	}
	again, err := promptPassword(ctx, fd, prompts, "Retype password: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the passwords do not match")
	}
	return pw, nil
}

// promptPassword writes prompt and reads one line from the terminal fd with
// echo off. If ctx ends first (Ctrl-C: main catches SIGINT), it puts the
// terminal back as it was, since the process exits without ReadPassword
// returning, which would otherwise leave echo off in the user's shell.
func promptPassword(ctx context.Context, fd int, prompts io.Writer, prompt string) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("reading password: %w", err)
	}
	fmt.Fprint(prompts, prompt)
	type line struct {
		b   []byte
		err error
	}
	read := make(chan line, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		read <- line{b, err}
	}()
	var l line
	select {
	case l = <-read:
	case <-ctx.Done():
		term.Restore(fd, state)
		fmt.Fprintln(prompts)
		return "", errors.New("interrupted")
	}
	// The typed newline was not echoed either.
	fmt.Fprintln(prompts)
	// EOF is Ctrl-D on an empty line: an empty password.
	if l.err != nil && !errors.Is(l.err, io.EOF) {
		return "", fmt.Errorf("reading password: %w", l.err)
	}
	return checkPassword(string(l.b))
}

// readPassword returns the first line of r without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading password: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", errors.New("empty password: write the password on standard input")
	}
	return checkPassword(line)
}

// checkPassword refuses an empty or overlong password.
func checkPassword(pw string) (string, error) {
	switch {
	case pw == "":
		return "", errors.New("empty password")
	case len(pw) > maxPasswordLen:
		return "", fmt.Errorf("password longer than %d bytes", maxPasswordLen)
	}
	return pw, nil
}

// terminalFd returns the file descriptor of r if r is a terminal.
func terminalFd(r io.Reader) (int, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}
