// Command ftpsd-load puts load on an FTPS server: parallel sessions over
// explicit TLS repeat one operation (download, upload, listing, login, or
// just holding an idle session) until a duration or an operation count is
// reached, then it prints operations per second, MB/s, latency percentiles
// and the errors by reply code.
//
// It is a maintainer's measuring tool, not a test, and not installed with
// ftpsd: build it with "go build -o ftpsd-load ./test/load".
// docs/performance.md says how the figures published for ftpsd were taken
// with it. Run "ftpsd-load -h" for the flags and an example.
//
// Each session is a small FTP client of its own (client.go): every read
// and write has a deadline, and the whole run is cut at -duration plus
// -timeout at the latest, so the tool stops by itself whatever the server
// does. Every data connection resumes its own control session's TLS
// session, as the server requires by default.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a setup error, or at least one operation failed
	exitUsage  = 2
)

// usageError is a bad command line (exit status 2).
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal ends the run early (with a report); a second one
	// gets the default action.
	context.AfterFunc(ctx, stop)
	res, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(res, err))
}

func exitCode(res *result, err error) int {
	var ue usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case err != nil:
		return exitFailed
	case res.failed() > 0:
		return exitFailed
	}
	return exitOK
}

// run parses args, runs the load and prints the report on stdout. Errors
// that stop the run before it starts (a bad flag, an unreadable CA file, a
// failed first login) are printed on stderr and returned; failed
// operations are in the result.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (*result, error) {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return nil, err
	}
	// A script measuring the server's memory waits for this line.
	cfg.idleReady = func() { fmt.Fprintf(stderr, "ftpsd-load: all %d idle sessions are logged in\n", cfg.conns) }
	var gate func()
	if cfg.startOnStdin {
		gate = func() {
			fmt.Fprintln(stderr, "ftpsd-load: ready")
			bufio.NewReader(os.Stdin).ReadString('\n') // EOF starts too
		}
	}
	res, err := load(ctx, cfg, gate)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsd-load: %v\n", err)
		return nil, err
	}
	if cfg.json {
		err = res.printJSON(stdout)
	} else {
		res.print(stdout)
	}
	return res, err
}
