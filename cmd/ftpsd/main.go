// Command ftpsd is an FTPS (FTP over TLS) server.
//
// It is the composition root of the project: it reads one TOML file, hands
// each section to the package that owns it (ftps, passive, tlsctl, auth),
// wires them together and runs the server until SIGINT or SIGTERM, then
// shuts it down gracefully. Run "ftpsd -h" for the subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal starts the graceful shutdown, a second one
	// gets the default action and ends the process at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
