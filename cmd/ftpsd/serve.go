package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// Files serve keeps in server.state_dir.
const (
	pidFileName  = "ftpsd.pid" // for "ftpsd reload"; the control socket is beside it (control.go)
	bansFileName = "bans.json" // login bans and failure counts, kept across restarts
	bansSaveTick = time.Minute // how often bans are saved while serving
)

// runServe implements "ftpsd serve".
func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	return serveCommand(ctx, args, stderr, os.Geteuid())
}

// serveCommand is runServe with the effective user id passed in, so that
// tests running as root can still exercise serving in-process.
func serveCommand(ctx context.Context, args []string, stderr io.Writer, euid int) int {
	fs := newFlagSet("serve", "-config FILE",
		`Run the FTPS server until SIGINT or SIGTERM, then shut down gracefully:
stop accepting, let running transfers finish for up to server.shutdown_timeout,
then close the remaining sessions. SIGHUP (or "ftpsd reload") re-reads the
configuration without interrupting anything. The log goes to standard error.

ftpsd refuses to run as root. Run it as an unprivileged user: the systemd
unit docs/deploy/ftpsd.service does so with the one capability that port 21
needs (CAP_NET_BIND_SERVICE).`,
		`  ftpsd serve -config /etc/ftpsd/config.toml`, stderr)
	path, code, ok := parseConfigFlags(fs, args)
	if !ok {
		return code
	}
	if euid == 0 {
		return fail(stderr, errors.New(rootRefusal))
	}
	// Catch SIGHUP before anything slow (an ACME obtain) happens: its
	// default action would end the process. A reload asked for during
	// start-up runs once the server is up.
	sigs := signals{hup: make(chan os.Signal, 1), usr1: make(chan os.Signal, 1)}
	signal.Notify(sigs.hup, syscall.SIGHUP)
	signal.Notify(sigs.usr1, syscall.SIGUSR1)
	defer signal.Stop(sigs.hup)
	defer signal.Stop(sigs.usr1)

	cfg, err := loadConfig(path)
	if err != nil {
		return fail(stderr, err)
	}
	out, err := openLogs(cfg.Log, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	defer out.Close()
	log, level := newLogger(cfg.Log, out.Writer())
	d := &daemon{path: path, log: log, level: level, out: out, cfg: cfg}
	if err := d.serve(ctx, sigs); err != nil {
		log.Error("stopped", "err", err)
		return fail(stderr, err)
	}
	return exitOK
}

// signals are the signals serve acts on besides SIGINT and SIGTERM.
type signals struct {
	hup  chan os.Signal // reload the configuration
	usr1 chan os.Signal // reopen the log files
}

// rootRefusal is the error of serve started as root.
const rootRefusal = `refusing to run as root: uploads would be owned by root and a flaw would give away the host. Run ftpsd as an unprivileged user, in one of these ways:
  1. the shipped systemd unit (docs/deploy/ftpsd.service): User=ftpsd with AmbientCapabilities=CAP_NET_BIND_SERVICE for port 21;
  2. setcap cap_net_bind_service=+ep /usr/local/bin/ftpsd, then start it as that user (e.g. runuser -u ftpsd -- ftpsd serve -config FILE);
  3. server.listen on a port above 1023 (e.g. ":2121") and forward port 21 to it in the firewall`

// daemon is the running server: its components and the configuration in
// force, which a reload replaces.
type daemon struct {
	path  string
	log   *slog.Logger
	level *slog.LevelVar
	out   *logOutputs
	cfg   *fileConfig // in force; replaced by reload

	tm    *tlsctl.Manager
	pm    *passive.Manager
	store *auth.Store
	srv   *ftps.Server
}

// serve builds every component from the validated cfg, serves until ctx is
// done, reloading on hup, then shuts down in dependency order: the server
// (graceful, bounded by server.shutdown_timeout), then the passive manager,
// then TLS.
func (d *daemon) serve(ctx context.Context, sigs signals) (err error) {
	cfg, log := d.cfg, d.log
	reportFileLimit(log, cfg.Server.MaxConnections)
	if err := os.MkdirAll(cfg.Server.StateDir, 0o700); err != nil {
		return fmt.Errorf("server.state_dir: %w", err)
	}
	d.tm, err = tlsctl.New(ctx, cfg.TLS, log.With("component", "tls"))
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	defer func() {
		if cerr := d.tm.Close(); cerr != nil {
			log.Error("closing TLS manager", "err", cerr)
		}
	}()

	d.pm, err = passive.New(cfg.Passive, log.With("component", "passive"))
	if err != nil {
		return fmt.Errorf("passive: %w", err)
	}
	defer func() { // runs before tm.Close
		if cerr := d.pm.Close(); cerr != nil {
			log.Error("closing passive manager", "err", cerr)
		}
	}()

	d.store, err = auth.New(cfg.Auth, cfg.Users, log.With("component", "auth"))
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	bans := filepath.Join(cfg.Server.StateDir, bansFileName)
	if n, err := d.store.LoadBans(bans); err != nil {
		log.Warn("could not restore login bans", "file", bans, "err", err)
	} else if n > 0 {
		log.Info("restored login bans and failure counts", "file", bans, "entries", n)
	}
	defer d.saveBans()
	if cfg.Cluster.Redis != "" {
		auth.SetRedisLogger(log.With("component", "redis"))
		if err := d.store.JoinCluster(cfg.Cluster); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		defer d.store.Close() // deferred before the server starts: runs after it stopped
	}

	var reg *prometheus.Registry
	var metrics *ftps.Metrics
	if cfg.Metrics.Listen != "" {
		if reg, metrics, err = newRegistry(d.pm, d.store, d.tm); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	d.srv, err = ftps.New(cfg.Server, ftps.Deps{TLS: d.tm.ServerConfig(), Auth: d.store, Passive: d.pm, Log: log,
		OnTransfer: d.out.Transfer, Metrics: metrics})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	go logS3(ctx, cfg, log.With("component", "s3")) // a slow store must not delay the start

	// Listening here rather than in ListenAndServe makes a busy port fail
	// before "listening" is logged, and logs the real address (":0").
	ln, err := listen(ctx, "server.listen", cfg.Server.Listen)
	if err != nil {
		return err
	}
	var iln net.Listener
	if cfg.Server.ImplicitListen != "" {
		if iln, err = listen(ctx, "server.implicit_listen", cfg.Server.ImplicitListen); err != nil {
			ln.Close()
			return err
		}
		log.Info("listening for implicit FTPS", "addr", iln.Addr().String())
	}
	var mln net.Listener
	if cfg.Metrics.Listen != "" {
		if mln, err = listen(ctx, "metrics.listen", cfg.Metrics.Listen); err != nil {
			ln.Close()
			if iln != nil {
				iln.Close()
			}
			return err
		}
	}
	for _, w := range d.pm.Warnings(tcpAddrPort(ln.Addr()), cfg.Server.MaxConnections) {
		log.Warn(w)
	}
	for _, w := range cfg.Metrics.warnings() {
		log.Warn(w)
	}
	for _, w := range append(clusterWarnings(&cfg.Cluster), s3Warnings(&cfg.Storage.S3)...) {
		log.Warn(w)
	}
	cert := d.tm.Certificate()
	log.Info("listening", "addr", ln.Addr().String(), "tls_source", cert.Source,
		"cert_names", cert.Names, "cert_expires", cert.NotAfter, "passive_ports", cfg.Passive.Ports)
	pidFile := filepath.Join(cfg.Server.StateDir, pidFileName)
	if err := writeFileAtomic(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644, nil); err != nil {
		log.Warn("could not write the pid file; \"ftpsd reload\" will not find this process", "file", pidFile, "err", err)
	} else {
		defer os.Remove(pidFile)
	}
	clog := log.With("component", "control")
	ctl, err := startControl(cfg.Server.StateDir, &controlAPI{srv: d.srv, store: d.store, bansPath: bans, log: clog}, clog)
	if err != nil {
		log.Warn("no control socket: \"ftpsd who\" and \"ftpsd ban\" will not reach this process", "err", err)
	} else {
		defer ctl.Close() // after the drain: "ftpsd who" shows the transfers finishing
	}

	// The server gets a context that the signal does not cancel: the
	// signal starts Shutdown, which finishes running transfers within its
	// timeout, instead of cutting every session at once.
	served := make(chan error, 2)
	listeners := 1
	go func() { served <- d.srv.Serve(context.WithoutCancel(ctx), ln) }()
	if iln != nil {
		listeners++
		go func() { served <- d.srv.ServeImplicit(context.WithoutCancel(ctx), iln) }()
	}
	if mln != nil {
		ml := log.With("component", "metrics")
		ms := startMetrics(mln, metricsHandler(reg, daemonHealth(d, listeners), ml), ml)
		// Stopped last: /healthz answers 503 while the server drains.
		defer ms.stop(ml)
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("systemd notification failed", "err", err)
	}

	// One path to the end: a fatal listener error or a signal both
	// drain through drain below.
	var stopErr error
	tick := time.NewTicker(bansSaveTick)
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-served: // a listener stopped on its own: a fatal accept error
			listeners--
			if !errors.Is(err, ftps.ErrServerClosed) {
				log.Error("listener failed; shutting down", "err", err)
				stopErr = fmt.Errorf("server: %w", err)
			}
			break loop
		case <-sigs.hup:
			sdNotify(sdReloading())
			d.reload(ctx)
			sdNotify("READY=1")
		case <-sigs.usr1:
			d.reopenLogs()
		case <-tick.C:
			d.saveBans()
		case <-ctx.Done():
			break loop
		}
	}
	if err := d.drain(served, listeners); stopErr == nil {
		stopErr = err
	}
	if stopErr == nil {
		log.Info("stopped")
	}
	return stopErr
}

// drain shuts the server down gracefully (bounded by shutdown_timeout) and
// waits for the listeners still serving to return.
func (d *daemon) drain(served <-chan error, listeners int) error {
	sdNotify("STOPPING=1")
	timeout := d.cfg.Server.ShutdownTimeout
	d.log.Info("shutting down", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	shutErr := d.srv.Shutdown(ctx)
	var serveErr error
	for range listeners {
		if err := <-served; !errors.Is(err, ftps.ErrServerClosed) && serveErr == nil {
			serveErr = err
		}
	}
	if shutErr != nil {
		d.log.Warn("shutdown deadline passed; remaining sessions were closed", "err", shutErr)
	}
	if serveErr != nil {
		return fmt.Errorf("server: %w", serveErr)
	}
	return nil
}

// listen opens a control listener; a port below 1024 refused for lack of
// privilege gets the ways out in the error.
func listen(ctx context.Context, key, addr string) (net.Listener, error) {
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EACCES) {
		if _, port, perr := net.SplitHostPort(addr); perr == nil {
			if n, perr := net.LookupPort("tcp", port); perr == nil && n < 1024 {
				return nil, fmt.Errorf("%s: %w: ports below 1024 need a privilege; either use the systemd unit docs/deploy/ftpsd.service (AmbientCapabilities=CAP_NET_BIND_SERVICE), or run \"setcap cap_net_bind_service=+ep %s\", or listen on a port above 1023 and forward %d to it",
					key, err, executable(), n)
			}
		}
	}
	return nil, fmt.Errorf("%s: %w", key, err)
}

// executable is the path of this program, for messages.
func executable() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "/usr/local/bin/ftpsd"
}

// reopenLogs opens the log files again, after logrotate moved them.
func (d *daemon) reopenLogs() {
	if err := d.out.Reopen(); err != nil {
		d.log.Error("reopening log files", "err", err)
		return
	}
	d.log.Info("log files reopened")
}

// clusterWarnings are the [cluster] settings worth a WARN line at start
// and in check-config.
func clusterWarnings(c *auth.ClusterConfig) []string {
	if c.PasswordInURL() {
		return []string{"cluster.redis holds a password, readable by whoever reads the configuration file: move it to cluster.redis_password_file (mode 0600)"}
	}
	return nil
}

// saveBans writes the login throttle to the state directory, so that a
// restart is not a way to reset a ban.
func (d *daemon) saveBans() {
	path := filepath.Join(d.cfg.Server.StateDir, bansFileName)
	if err := d.store.SaveBans(path); err != nil {
		d.log.Warn("could not save login bans", "file", path, "err", err)
	}
}

// reload re-reads the configuration file and puts it in force without
// interrupting anything. A file that fails validation, or whose users or
// certificate cannot be used, is refused as a whole (one ERROR line) and
// the configuration in force stays. Keys that need a restart keep their
// values, with one WARN line each.
func (d *daemon) reload(ctx context.Context) {
	start := time.Now()
	d.reopenLogs()
	d.log.Info("reloading configuration", "file", d.path)
	cfg, err := loadConfig(d.path)
	if err != nil {
		d.log.Error("configuration reload refused; the configuration in force is kept", "file", d.path, "err", err)
		return
	}
	for _, k := range keepRestartOnly(d.cfg, cfg) {
		d.log.Warn("restart needed for "+k.key+"; the value in force is kept", "in_force", k.old, "configured", k.new)
	}

	// Prepare everything that can fail before changing anything.
	users, err := d.store.PrepareReload(cfg.Auth, cfg.Users)
	if err != nil {
		d.log.Error("configuration reload refused; the configuration in force is kept", "file", d.path, "err", err)
		return
	}
	certs, err := d.tm.PrepareReload(ctx, cfg.TLS)
	if err != nil {
		d.log.Error("configuration reload refused; the configuration in force is kept", "file", d.path, "err", fmt.Errorf("tls: %w", err))
		return
	}
	for _, k := range certs.Restart {
		d.log.Warn("restart needed for " + k + "; the value in force is kept")
	}
	if err := d.srv.Reload(cfg.Server); err != nil { // validated and listeners kept: cannot fail
		certs.Discard()
		d.log.Error("configuration reload refused; the configuration in force is kept", "file", d.path, "err", fmt.Errorf("server: %w", err))
		return
	}
	if err := d.pm.Reload(cfg.Passive); err != nil { // likewise, ports kept
		certs.Discard()
		d.log.Error("configuration reload refused; the configuration in force is kept", "file", d.path, "err", fmt.Errorf("passive: %w", err))
		return
	}
	certs.Apply()
	users.Apply()
	d.srv.ApplyLimits()
	if lvl, err := cfg.Log.level(); err == nil {
		d.level.Set(lvl)
	}
	old := d.cfg
	d.cfg = cfg
	if cfg.Storage.S3 != old.Storage.S3 {
		go logS3(context.Background(), cfg, d.log.With("component", "s3"))
	}
	if cfg.Server.MaxConnections != old.Server.MaxConnections {
		reportFileLimit(d.log, cfg.Server.MaxConnections)
	}
	gone := goneUsers(old.Users, cfg.Users)
	closed := d.srv.CloseUsers(func(name string) bool { return slices.Contains(gone, name) })
	d.log.Info("configuration reloaded", "file", d.path, "users", len(enabledUsers(cfg.Users)),
		"users_removed_or_disabled", gone, "sessions_closed", closed, "dur", time.Since(start).Round(time.Millisecond))
	d.saveBans()
}

// restartKey is a setting that changed but needs a restart.
type restartKey struct {
	key, old, new string
}

// keepRestartOnly resets in next the settings that cannot change while the
// server runs (listeners, the passive range, the state directory, the log
// format and the hash memory budget) to their values in cur, and returns
// those that differed.
func keepRestartOnly(cur, next *fileConfig) []restartKey {
	var out []restartKey
	keep := func(key string, c, n *string) {
		if *c != *n {
			out = append(out, restartKey{key, *c, *n})
			*n = *c
		}
	}
	keep("server.listen", &cur.Server.Listen, &next.Server.Listen)
	keep("server.implicit_listen", &cur.Server.ImplicitListen, &next.Server.ImplicitListen)
	keep("server.state_dir", &cur.Server.StateDir, &next.Server.StateDir)
	next.TLS.StateDir = next.Server.StateDir
	keep("passive.ports", &cur.Passive.Ports, &next.Passive.Ports)
	keep("log.format", &cur.Log.Format, &next.Log.Format)
	keep("log.file", &cur.Log.File, &next.Log.File)
	keep("log.xferlog", &cur.Log.Xferlog, &next.Log.Xferlog)
	keep("metrics.listen", &cur.Metrics.Listen, &next.Metrics.Listen)
	if cur.Cluster != next.Cluster {
		// Not shown: the URL may hold a password.
		out = append(out, restartKey{"cluster", "(not shown)", "(changed)"})
		next.Cluster = cur.Cluster
	}
	if cur.Auth.MaxHashMemoryMiB != next.Auth.MaxHashMemoryMiB {
		out = append(out, restartKey{"auth.max_hash_memory_mib", strconv.Itoa(cur.Auth.MaxHashMemoryMiB), strconv.Itoa(next.Auth.MaxHashMemoryMiB)})
		next.Auth.MaxHashMemoryMiB = cur.Auth.MaxHashMemoryMiB
	}
	return out
}

// enabledUsers are the users that may log in.
func enabledUsers(users []auth.UserConfig) []string {
	var names []string
	for _, u := range users {
		if !u.Disabled {
			names = append(names, u.Name)
		}
	}
	return names
}

// goneUsers are the names that could log in under before and cannot under
// after: removed or disabled. Their sessions are closed.
func goneUsers(before, after []auth.UserConfig) []string {
	now := enabledUsers(after)
	var gone []string
	for _, name := range enabledUsers(before) {
		if !slices.Contains(now, name) {
			gone = append(gone, name)
		}
	}
	return gone
}

// tcpAddrPort is the address of a TCP listener, or the zero AddrPort (which
// passive.Manager.Warnings takes as "all addresses") for anything else.
func tcpAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// checkS3 asks the store of the s3:// homes for each of their buckets
// (bounded: the store may be down), for check-config and serve.
func checkS3(ctx context.Context, cfg *fileConfig) []ftps.S3Check {
	var homes []string
	for _, u := range cfg.Users {
		if ftps.IsS3Home(u.Home) {
			homes = append(homes, u.Home)
		}
	}
	if len(homes) == 0 {
		return nil
	}
	return ftps.CheckS3(ctx, cfg.Storage.S3, homes) // each request bounded by storage.s3.timeout
}

// logS3 logs at start what the store of the s3:// homes answered: a wrong
// secret or a missing bucket shows before a user's first command does.
func logS3(ctx context.Context, cfg *fileConfig, log *slog.Logger) {
	for _, c := range checkS3(ctx, cfg) {
		if c.Err != nil {
			log.Warn("object storage check failed: the users of this bucket get 451 until it is fixed", "bucket", c.Bucket, "err", c.Err)
		} else {
			log.Info("object storage reachable", "bucket", c.Bucket, "endpoint", cmp.Or(cfg.Storage.S3.Endpoint, "(AWS)"))
		}
	}
}

// s3Warnings are the [storage.s3] settings worth a WARN line.
func s3Warnings(c *ftps.S3Config) []string {
	if c.SecretAccessKey != "" {
		return []string{"storage.s3.secret_access_key is readable by whoever reads the configuration file: move it to storage.s3.secret_access_key_file (mode 0600)"}
	}
	return nil
}
