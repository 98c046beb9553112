package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ftpsd/ftpsd/auth"
)

// maxPasswordLen bounds what hash-password reads, so a stray pipe of a large
// file is refused instead of hashed.
const maxPasswordLen = 1024

// runHashPassword implements "ftpsd hash-password".
func runHashPassword(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("hash-password", "< password",
		`Read one password line from standard input and print its argon2id hash
(PHC string), for the password_hash key of a [[users]] entry. A trailing
newline is not part of the password. Input is not hidden when typed on a
terminal; pipe it in to keep it out of view and out of the shell history.`,
		`  read -rs PW && printf '%s' "$PW" | ftpsd hash-password
  echo 'correct horse battery staple' | ftpsd hash-password`, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if isTerminal(stdin) {
		fmt.Fprint(stderr, "Password (shown as typed): ")
	}
	pw, err := readPassword(stdin)
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

// readPassword returns the first line of r without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading password: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	switch {
	case line == "":
		return "", errors.New("empty password: write the password on standard input")
	case len(line) > maxPasswordLen:
		return "", fmt.Errorf("password longer than %d bytes", maxPasswordLen)
	}
	return line, nil
}

// isTerminal reports whether r is a terminal, to decide on a prompt.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
