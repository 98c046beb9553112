package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// runServe implements "ftpsd serve".
func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	fs := newFlagSet("serve", "-config FILE",
		`Run the FTPS server until SIGINT or SIGTERM, then shut down gracefully:
stop accepting, let running transfers finish for up to server.shutdown_timeout,
then close the remaining sessions. The log goes to standard error.`,
		`  ftpsd serve -config /etc/ftpsd/config.toml`, stderr)
	path := configFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if code, ok := requireConfig(fs, *path); !ok {
		return code
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return fail(stderr, err)
	}
	if err := serve(ctx, cfg, newLogger(cfg.Log, stderr)); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// serve builds every component from the validated cfg, serves until ctx is
// done, then shuts down in dependency order: the server (graceful, bounded by
// server.shutdown_timeout), then the passive manager, then TLS.
func serve(ctx context.Context, cfg *fileConfig, log *slog.Logger) (err error) {
	tm, err := tlsctl.New(ctx, cfg.TLS, log.With("component", "tls"))
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	defer func() {
		if cerr := tm.Close(); cerr != nil {
			log.Error("closing TLS manager", "err", cerr)
		}
	}()

	pm, err := passive.New(cfg.Passive, log.With("component", "passive"))
	if err != nil {
		return fmt.Errorf("passive: %w", err)
	}
	defer func() { // runs before tm.Close
		if cerr := pm.Close(); cerr != nil {
			log.Error("closing passive manager", "err", cerr)
		}
	}()

	store, err := auth.New(cfg.Auth, cfg.Users, log.With("component", "auth"))
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}

	srv, err := ftps.New(cfg.Server, ftps.Deps{TLS: tm.ServerConfig(), Auth: store, Passive: pm, Log: log})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}

	// Listening here rather than in ListenAndServe makes a busy port fail
	// before "listening" is logged, and logs the real address (":0").
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	var iln net.Listener
	if cfg.Server.ImplicitListen != "" {
		if iln, err = new(net.ListenConfig).Listen(ctx, "tcp", cfg.Server.ImplicitListen); err != nil {
			ln.Close()
			return fmt.Errorf("server.implicit_listen: %w", err)
		}
		log.Info("listening for implicit FTPS", "addr", iln.Addr().String())
	}
	for _, w := range pm.Warnings(tcpAddrPort(ln.Addr()), cfg.Server.MaxConnections) {
		log.Warn(w)
	}
	cert := tm.Certificate()
	log.Info("listening", "addr", ln.Addr().String(), "tls_source", cert.Source,
		"cert_names", cert.Names, "cert_expires", cert.NotAfter, "passive_ports", cfg.Passive.Ports)

	// The server gets a context that the signal does not cancel: the
	// signal starts Shutdown, which finishes running transfers within its
	// timeout, instead of cutting every session at once.
	served := make(chan error, 2)
	listeners := 1
	go func() { served <- srv.Serve(context.WithoutCancel(ctx), ln) }()
	if iln != nil {
		listeners++
		go func() { served <- srv.ServeImplicit(context.WithoutCancel(ctx), iln) }()
	}

	select {
	case err := <-served: // stopped on its own: a fatal accept error
		listeners--
		if !errors.Is(err, ftps.ErrServerClosed) {
			log.Error("listener failed; shutting down", "err", err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
		for range listeners {
			<-served
		}
		if errors.Is(err, ftps.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	var serveErr error
	for range listeners {
		if err := <-served; !errors.Is(err, ftps.ErrServerClosed) && serveErr == nil {
			serveErr = err
		}
	}
	if shutErr != nil {
		log.Warn("shutdown deadline passed; remaining sessions were closed", "err", shutErr)
	}
	if serveErr != nil {
		return fmt.Errorf("server: %w", serveErr)
	}
	log.Info("stopped")
	return nil
}

// tcpAddrPort is the address of a TCP listener, or the zero AddrPort (which
// passive.Manager.Warnings takes as "all addresses") for anything else.
func tcpAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}
