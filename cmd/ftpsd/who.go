package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ftpsd/ftpsd/ftps"
)

// runWho implements "ftpsd who".
func runWho(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("who", "[-json] -config FILE",
		`Show the sessions of the running server, one line each, like pure-ftpwho:
the user ("-" before login), the client's address and port, when it
connected, how long since its last command, and its running transfer with
the bytes moved so far and the average rate. The server answers on its
control socket, server.state_dir/ftpsd.sock (mode 0600: run this as the
server's user or root). -json prints the server's answer for scripts.`,
		`  ftpsd who -config /etc/ftpsd/config.toml
  ftpsd who -json -config /etc/ftpsd/config.toml`, stderr)
	var doc sessionsDoc
	if code, done := queryControl(ctx, fs, args, "/sessions", &doc, stdout, stderr); done {
		return code
	}
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tCLIENT\tSINCE\tIDLE\tTRANSFER")
	for _, s := range doc.Sessions {
		user := s.User
		if user == "" {
			user = "-"
		}
		xfer := ""
		if x := s.Transfer; x != nil {
			xfer = fmt.Sprintf("%s %s %s/s", printable(x.Op), formatBytes(float64(x.Bytes)), formatBytes(x.BytesPerSecond))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", user, s.Client, formatSince(s.Since, doc.Now),
			formatIdle(time.Duration(s.IdleSeconds*float64(time.Second))), xfer)
	}
	tw.Flush()
	// An idle session's empty TRANSFER would leave the padding behind.
	for line := range strings.Lines(table.String()) {
		fmt.Fprintln(stdout, strings.TrimRight(line, " \n"))
	}
	if len(doc.Users) > 0 {
		fmt.Fprintln(stdout)
		for _, u := range doc.Users {
			fmt.Fprintf(stdout, "%s: %s\n", u.Name, printable(u.Summary))
		}
	}
	return exitOK
}

// banCommands are the subcommands of "ftpsd ban".
func banCommands() []command {
	return []command{
		{"list", "list banned clients and those with failed logins counting toward a ban", runBanList},
		{"remove", "lift the ban of a client and forget its failed logins", runBanRemove},
	}
}

// runBan implements "ftpsd ban": it picks the subcommand.
func runBan(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runGroup(ctx, "ban", "<command> [ADDR] -config FILE [flags]",
		`List and lift the login bans of the running server (see [auth]
max_failures). The server answers on its control socket,
server.state_dir/ftpsd.sock (mode 0600: run this as the server's user or
root). A lifted ban is saved at once (server.state_dir/bans.json).
Networks in [auth] never_ban are never banned.`,
		`  ftpsd ban list -config /etc/ftpsd/config.toml
  ftpsd ban remove 192.0.2.7 -config /etc/ftpsd/config.toml`, banCommands(), args, stdin, stdout, stderr)
}

// runBanList implements "ftpsd ban list".
func runBanList(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("ban list", "[-json] -config FILE",
		`List the clients the login throttle holds: those banned, with the end of
their ban, and those whose failed logins are counting toward one. A client
is an IPv4 address or an IPv6 /64.`,
		`  ftpsd ban list -config /etc/ftpsd/config.toml`, stderr)
	var doc bansDoc
	if code, done := queryControl(ctx, fs, args, "/bans", &doc, stdout, stderr); done {
		return code
	}
	if len(doc.Bans) == 0 {
		fmt.Fprintln(stdout, "no bans, no failed logins counting")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tBANNED UNTIL\tFAILURES")
	for _, b := range doc.Bans {
		until := "-"
		if !b.BannedUntil.IsZero() {
			until = fmt.Sprintf("%s (%s left)", b.BannedUntil.Local().Format(time.DateTime),
				b.BannedUntil.Sub(doc.Now).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", strings.TrimSuffix(b.Client, "/32"), until, b.Failures)
	}
	tw.Flush()
	return exitOK
}

// runBanRemove implements "ftpsd ban remove".
func runBanRemove(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("ban remove", "ADDR -config FILE",
		`Lift the ban of a client and forget its failed logins, at once and for
good (the saved bans are rewritten). ADDR is an IP address (an IPv6
address lifts its /64) or a client as "ftpsd ban list" shows it.`,
		`  ftpsd ban remove 192.0.2.7 -config /etc/ftpsd/config.toml
  ftpsd ban remove 2001:db8:1:2::/64 -config /etc/ftpsd/config.toml`, stderr)
	config := configFlag(fs)
	addr, code, ok := parseOperandFlags(fs, args, config, "ADDR", func(s string) error {
		if _, err := parseClient(s); err != nil {
			return fmt.Errorf("ADDR: %w", err)
		}
		return nil
	})
	if !ok {
		return code
	}
	sock, err := controlSocketOf(*config)
	if err != nil {
		return fail(stderr, err)
	}
	var doc unbanDoc
	if err := controlCall(ctx, sock, http.MethodDelete, "/bans/"+url.PathEscape(addr), &doc); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "lifted: %s can log in again\n", strings.TrimSuffix(doc.Client, "/32"))
	return exitOK
}

// queryControl is the start of a subcommand that shows the running
// server's state: it parses "[-json] -config FILE", asks the control socket
// for path and decodes the answer into doc. done is true when the command
// is over, with code its exit code: a usage error, a failure, or -json (the
// answer is printed as JSON); else the caller prints doc for people.
func queryControl(ctx context.Context, fs *flag.FlagSet, args []string, path string, doc any, stdout, stderr io.Writer) (code int, done bool) {
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	config, code, ok := parseConfigFlags(fs, args)
	if !ok {
		return code, true
	}
	sock, err := controlSocketOf(config)
	if err != nil {
		return fail(stderr, err), true
	}
	if err := controlCall(ctx, sock, http.MethodGet, path, doc); err != nil {
		return fail(stderr, err), true
	}
	if *asJSON {
		return printJSON(stdout, stderr, doc), true
	}
	return exitOK, false
}

// controlSocketOf finds the control socket of the server that runs with
// the configuration at path. Only the file is decoded, not validated: a
// mistake made in it since the server started must not hide the server.
func controlSocketOf(path string) (string, error) {
	cfg, err := decodeConfig(path)
	if err != nil {
		return "", err
	}
	dir := cfg.Server.StateDir
	if dir == "" {
		var def ftps.Config
		def.Validate() // fills the default state_dir
		dir = def.StateDir
	}
	return filepath.Join(dir, controlSocketName), nil
}

// controlCall sends one request to the control socket and decodes its
// JSON answer into out.
func controlCall(ctx context.Context, sock, method, path string, out any) error {
	if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no running ftpsd: %s not found", sock)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://ftpsd"+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no running ftpsd: %s refuses connections (left by a server that crashed?)", sock)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%s: permission denied: run this as the server's user or root", sock)
	case err != nil:
		return fmt.Errorf("%s: %w", sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", sock, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorDoc
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s: %s %s: %s", sock, method, path, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: %s %s: %w", sock, method, path, err)
	}
	return nil
}

func printJSON(stdout, stderr io.Writer, v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fail(stderr, err)
	}
	stdout.Write(append(b, '\n'))
	return exitOK
}

// formatBytes writes n bytes with binary units: "512 B", "35.2 MiB".
func formatBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// formatIdle writes d as m:ss, or h:mm:ss from an hour on.
func formatIdle(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s < 0 {
		s = 0
	}
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// formatSince writes the local time of t: the time of day when it is the
// same day as now, else the date too.
func formatSince(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format(time.TimeOnly)
	}
	return t.Format("2006-01-02 15:04")
}
