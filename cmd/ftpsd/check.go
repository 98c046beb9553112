package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// runCheckConfig implements "ftpsd check-config".
func runCheckConfig(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", "-config FILE",
		`Validate a configuration file the way "serve" does, including loading the
certificate files, then print the effective settings with their defaults filled in,
the firewall ports to open, and warnings. Password hashes are never printed.
It writes nothing: no state directory, no certificate, no home directory
(so running it as root leaves nothing that the service user cannot read).
Exits 1 with the offending key or line:column if the file is not valid.`,
		`  ftpsd check-config -config /etc/ftpsd/config.toml`, stderr)
	path, code, ok := parseConfigFlags(fs, args)
	if !ok {
		return code
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return fail(stderr, err)
	}
	// Component logs (e.g. "generated self-signed certificate") go to
	// stderr so that stdout is only the report.
	log, _ := newLogger(cfg.Log, stderr)

	// Inspect never asks an ACME CA: check-config must be side-effect free
	// towards the CA (rate limits).
	cert, err := tlsctl.Inspect(ctx, cfg.TLS, log.With("component", "tls"))
	if err != nil {
		return fail(stderr, fmt.Errorf("tls: %w", err))
	}
	pm, err := passive.New(cfg.Passive, log.With("component", "passive"))
	if err != nil {
		return fail(stderr, fmt.Errorf("passive: %w", err))
	}
	defer pm.Close()

	warnings := pm.Warnings(listenAddrPort(cfg.Server.Listen), cfg.Server.MaxConnections)
	warnings = append(warnings, cfg.Metrics.warnings()...)
	warnings = append(warnings, clusterWarnings(&cfg.Cluster)...)
	warnings = append(warnings, s3Warnings(&cfg.Storage.S3)...)
	s3 := checkS3(ctx, cfg)
	for _, c := range s3 {
		switch {
		case c.Err == nil:
		case c.Bucket == "":
			warnings = append(warnings, fmt.Sprintf("storage.s3: no client: %v", c.Err))
		default:
			warnings = append(warnings, fmt.Sprintf("storage.s3: bucket %q: %v", c.Bucket, c.Err))
		}
	}
	if err := writeReport(stdout, path, cfg, cert, s3, warnings); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// writeReport prints the effective settings of a validated config.
func writeReport(w io.Writer, path string, cfg *fileConfig, cert tlsctl.CertInfo, s3 []ftps.S3Check, warnings []string) error {
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	row := func(indent int, key, format string, a ...any) {
		fmt.Fprintf(tw, "%s%s\t%s\n", strings.Repeat("  ", indent), key, fmt.Sprintf(format, a...))
	}
	// Section headers end in a tab too, so that one column runs through
	// the whole report.
	section := func(name string) { fmt.Fprintf(tw, "%s\t\n", name) }

	fmt.Fprintf(tw, "config %s: OK\n\n", path)

	section("server")
	row(1, "listen", "%s", cfg.Server.Listen)
	if cfg.Server.ImplicitListen != "" {
		row(1, "implicit listen", "%s", cfg.Server.ImplicitListen)
	}
	row(1, "state dir", "%s", cfg.Server.StateDir)
	row(1, "banner", "220 %s", cfg.Server.Banner)
	row(1, "plaintext login", "%s", allowed(cfg.Server.AllowPlaintextLogin))
	row(1, "plaintext data", "%s", allowed(cfg.Server.AllowPlaintextData))
	row(1, "active mode", "%s", allowed(cfg.Server.ActiveMode))
	row(1, "max connections", "%d total, %d per IP", cfg.Server.MaxConnections, cfg.Server.MaxConnectionsPerIP)
	row(1, "timeouts", "idle %s, login %s, TLS handshake %s, data %s, shutdown %s",
		cfg.Server.IdleTimeout, cfg.Server.LoginTimeout, cfg.Server.TLSHandshakeTimeout,
		cfg.Server.DataTimeout, cfg.Server.ShutdownTimeout)

	section("tls")
	row(1, "source", "%s", cert.Source)
	if cert.File != "" {
		row(1, "file", "%s", cert.File)
	}
	row(1, "names", "%s", strings.Join(cert.Names, ", "))
	if cert.NotAfter.IsZero() {
		if cfg.TLS.Mode == tlsctl.ModeSelfSigned {
			row(1, "valid", "not generated yet: serve generates it at start into %s", cert.File)
		} else {
			row(1, "valid", "not obtained yet: serve obtains it at start")
		}
	} else {
		row(1, "valid", "%s to %s%s", cert.NotBefore.UTC().Format(time.RFC3339),
			cert.NotAfter.UTC().Format(time.RFC3339), expiryNote(cert.NotAfter))
		row(1, "sha256", "%s", colonHex(cert.SHA256))
	}
	if cfg.TLS.Mode == tlsctl.ModeACME {
		row(1, "acme ca", "%s", cfg.TLS.CA)
		row(1, "challenges", "%s", strings.Join(cfg.TLS.Challenges, ", "))
		row(1, "storage", "%s", cfg.TLS.Storage)
	}
	row(1, "min version", "TLS %s", cfg.TLS.MinVersion)

	first, last := cfg.Passive.PortRange()
	section("passive")
	row(1, "ports", "%s (%d ports)", portRange(first, last), int(last)-int(first)+1)
	if cfg.Passive.PublicAddress == "" {
		row(1, "public address", "(none: the control connection's local address)")
	} else {
		row(1, "public address", "%s", cfg.Passive.PublicAddress)
	}
	if len(cfg.Passive.LocalNetworks) > 0 {
		row(1, "local networks", "%s (get the local address)", strings.Join(cfg.Passive.LocalNetworks, ", "))
	} else {
		row(1, "local networks", "(none: only loopback clients get the local address)")
	}
	row(1, "tls resumption", "%s", cfg.Passive.TLSResumption)
	if len(cfg.Server.TrustedProxies) > 0 {
		row(1, "trusted proxies", "%s (PROXY protocol required; no other source served)", strings.Join(cfg.Server.TrustedProxies, ", "))
	}

	section("firewall")
	row(1, controlPort(cfg.Server.Listen)+"/tcp", "allow inbound: control connections")
	if cfg.Server.ImplicitListen != "" {
		row(1, controlPort(cfg.Server.ImplicitListen)+"/tcp", "allow inbound: implicit FTPS control connections")
	}
	row(1, portRange(first, last)+"/tcp", "allow inbound: passive data connections")
	if len(cfg.Server.TrustedProxies) > 0 {
		row(1, "(balancer)", "allow the ports above from %s only", strings.Join(cfg.Server.TrustedProxies, ", "))
	}
	if cfg.TLS.Mode == tlsctl.ModeACME {
		if slices.Contains(cfg.TLS.Challenges, tlsctl.ChallengeHTTP01) {
			row(1, "80/tcp", "allow inbound from the CA (http-01), forwarded to port %d here", cfg.TLS.HTTPPort)
		}
		if slices.Contains(cfg.TLS.Challenges, tlsctl.ChallengeTLSALPN01) {
			row(1, "443/tcp", "allow inbound from the CA (tls-alpn-01), forwarded to port %d here", cfg.TLS.TLSALPNPort)
		}
		if slices.Contains(cfg.TLS.Challenges, tlsctl.ChallengeDNS01) {
			row(1, "(dns-01)", "no inbound port; outbound TCP 53 to %s", cfg.TLS.DNS.Server)
		}
	}

	section("users")
	if cfg.Auth.UsersFile != "" {
		row(1, "(users file)", "%s", cfg.Auth.UsersFile)
	}
	limits := auth.EffectiveLimits(cfg.Limits, cfg.Users)
	for i, u := range cfg.Users {
		perms := strings.Join(u.Permissions, ",")
		if p, err := auth.ParsePerms(u.Permissions); err == nil {
			perms = p.String()
		}
		if perms == "" {
			perms = "(none)"
		}
		row(1, u.Name, "home %s%s, permissions %s%s", u.Home, homeNote(u.Home), perms, disabledNote(u.Disabled))
		row(2, "limits", "%s", limits[i])
	}

	caps := auth.ServerCaps(cfg.Limits)
	section("limits")
	row(1, "total download", "%s", rateText(caps.DownloadRate))
	row(1, "total upload", "%s", rateText(caps.UploadRate))

	section("log")
	row(1, "level", "%s", cfg.Log.Level)
	row(1, "format", "%s", cfg.Log.Format)

	if len(s3) > 0 {
		c := cfg.Storage.S3
		section("storage.s3")
		row(1, "endpoint", "%s, region %s, path style %t", cmp.Or(c.Endpoint, "(AWS)"), c.Region, c.PathStyle)
		row(1, "uploads", "parts of %d MiB, timeout %s, mfmt %s", c.PartSizeMiB, c.Timeout, c.MFMT)
		for _, b := range s3 {
			state := "reachable"
			if b.Err != nil {
				state = "NOT REACHABLE (see warnings)"
			}
			row(1, "bucket "+cmp.Or(b.Bucket, "(all)"), "%s", state)
		}
	}

	section("metrics")
	if cfg.Metrics.Listen == "" {
		row(1, "listen", "(off)")
	} else {
		row(1, "listen", "http://%s/metrics and /healthz", cfg.Metrics.Listen)
	}

	if err := tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(table.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n")) // headers' padding
	}
	// Warnings are long sentences: outside the table, or they would widen
	// its first column.
	if len(warnings) > 0 {
		fmt.Fprintln(w, "warnings")
		for _, s := range warnings {
			fmt.Fprintf(w, "  - %s\n", s)
		}
	}
	return nil
}

// listenAddrPort is the configured control address as passive's Warnings
// wants it: "localhost" is loopback, an empty host the zero address (all
// addresses).
func listenAddrPort(listen string) netip.AddrPort {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return netip.AddrPort{}
	}
	n, err := net.LookupPort("tcp", port)
	if err != nil {
		return netip.AddrPort{}
	}
	if host == "localhost" {
		return netip.AddrPortFrom(netip.IPv6Loopback(), uint16(n))
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPortFrom(netip.Addr{}, uint16(n))
	}
	return netip.AddrPortFrom(ip, uint16(n))
}

// colonHex writes a hex fingerprint in pairs, "ab:cd:...", as FileZilla and
// openssl show it.
func colonHex(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i:min(i+2, len(h))])
	}
	return b.String()
}

// homeNote flags a home directory that serve will have to create, or cannot
// use.
func homeNote(home string) string {
	if ftps.IsS3Home(home) {
		return " (object storage: [storage.s3])"
	}
	fi, err := os.Stat(home)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return " (missing: serve creates it)"
	case err != nil:
		return fmt.Sprintf(" (%v)", err)
	case !fi.IsDir():
		return " (NOT A DIRECTORY)"
	}
	return ""
}

// disabledNote flags a user that may not log in.
func disabledNote(disabled bool) string {
	if disabled {
		return " (DISABLED: logins refused)"
	}
	return ""
}

// rateText renders a rate in bytes per second; 0 is no limit.
func rateText(bps int64) string {
	if bps == 0 {
		return "unlimited"
	}
	return auth.FormatSize(bps) + "/s"
}

// allowed renders a permissive boolean switch.
func allowed(b bool) string {
	if b {
		return "allowed"
	}
	return "refused"
}

// expiryNote flags a certificate that expired or expires soon.
func expiryNote(notAfter time.Time) string {
	switch left := time.Until(notAfter); {
	case left <= 0:
		return " (EXPIRED)"
	case left < 30*24*time.Hour:
		return fmt.Sprintf(" (expires in %d days)", int(left.Hours()/24))
	}
	return ""
}

// portRange renders a port range as "first-last", or one port alone.
func portRange(first, last uint16) string {
	if first == last {
		return fmt.Sprint(first)
	}
	return fmt.Sprintf("%d-%d", first, last)
}

// controlPort is the port of a validated listen address, as a number when it
// is given as a service name ("ftp" -> 21).
func controlPort(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if n, err := net.LookupPort("tcp", port); err == nil {
		return fmt.Sprint(n)
	}
	return port
}
