package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/testutil"
	"github.com/ftpsd/ftpsd/tlsctl"
)

func TestMetricsConfig(t *testing.T) {
	tests := []struct {
		cfg     metricsConfig
		wantErr string // "" for valid
		warns   bool
	}{
		{metricsConfig{}, "", false},
		{metricsConfig{Listen: "127.0.0.1:9129"}, "", false},
		{metricsConfig{Listen: "[::1]:9129"}, "", false},
		{metricsConfig{Listen: "localhost:0"}, "", false},
		{metricsConfig{Listen: ":9129"}, "", true}, // every interface
		{metricsConfig{Listen: "0.0.0.0:9129"}, "", true},
		{metricsConfig{Listen: "192.0.2.10:9129"}, "", true},
		{metricsConfig{Listen: "monitoring.example:9129"}, "", true},
		{metricsConfig{Listen: ":9129", AllowRemote: true}, "", false},
		{metricsConfig{Listen: "9129"}, "metrics.listen", false},
		{metricsConfig{Listen: "127.0.0.1:http"}, "metrics.listen", false},
		{metricsConfig{Listen: "127.0.0.1:70000"}, "metrics.listen", false},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%+v: Validate() = %v", tt.cfg, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%+v: Validate() = %v, want an error naming %s", tt.cfg, err, tt.wantErr)
		}
		if err == nil {
			if w := tt.cfg.warnings(); (len(w) > 0) != tt.warns {
				t.Errorf("%+v: warnings() = %q, want warning: %t", tt.cfg, w, tt.warns)
			}
		}
	}
}

func TestCertHealth(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	valid := tlsctl.CertInfo{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	tests := []struct {
		name   string
		cert   tlsctl.CertInfo
		ok     bool
		reason string
	}{
		{"valid", valid, true, "ok"},
		{"none yet", tlsctl.CertInfo{Source: tlsctl.ModeACME}, false, "no certificate"},
		{"expired", tlsctl.CertInfo{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}, false, "certificate expired"},
		{"not yet valid", tlsctl.CertInfo{NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}, false, "certificate not valid before"},
	}
	for _, tt := range tests {
		ok, reason := certHealth(tt.cert, now)
		if ok != tt.ok || !strings.HasPrefix(reason, tt.reason) || strings.Contains(reason, "\n") {
			t.Errorf("%s: certHealth = %t, %q; want %t, %q...", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
}

// components builds real passive, auth and tlsctl components for the
// registry, and an ftps.Server that is not serving.
func components(t *testing.T) (*passive.Manager, *auth.Store, *tlsctl.Manager, *ftps.Server) {
	t.Helper()
	dir := t.TempDir()
	tm, err := tlsctl.New(t.Context(), tlsctl.Config{StateDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tm.Close() })
	pm, err := passive.New(passive.Config{Ports: "40000-40009"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pm.Close() })
	hash, err := auth.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	store, err := auth.New(auth.Config{}, []auth.UserConfig{{Name: "u", PasswordHash: hash,
		Home: filepath.Join(dir, "home"), Permissions: []string{"all"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ftps.New(ftps.Config{StateDir: dir}, ftps.Deps{TLS: tm.ServerConfig(), Auth: store, Passive: pm})
	if err != nil {
		t.Fatal(err)
	}
	return pm, store, tm, srv
}

// TestRegistry gathers the daemon's registry: the names follow
// Prometheus's conventions (promlint) and every family is there.
func TestRegistry(t *testing.T) {
	pm, store, tm, _ := components(t)
	reg, _, err := newRegistry(pm, store, tm)
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promtest.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for name, want := range map[string]int{
		"ftpsd_sessions_open": 1, "ftpsd_sessions_total": 1,
		"ftpsd_logins_total": 6, "ftpsd_login_duration_seconds": 6,
		"ftpsd_transfers_total": 9, "ftpsd_transfer_duration_seconds": 3,
		"ftpsd_data_received_bytes_total": 1, "ftpsd_data_sent_bytes_total": 1,
		"ftpsd_passive_ports": 1, "ftpsd_passive_ports_in_use": 1, "ftpsd_passive_exhausted_total": 1,
		"ftpsd_data_connections_refused_total": 7, "ftpsd_bans_active": 1,
		"ftpsd_login_cache_hits_total": 1, "ftpsd_login_cache_misses_total": 1,
		"ftpsd_certificate_expiry_timestamp_seconds": 3, // localhost, 127.0.0.1, ::1
		"ftpsd_acme_results_total":                   4,
		"go_goroutines":                              1, "process_start_time_seconds": 1,
	} {
		n, err := promtest.GatherAndCount(reg, name)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
	want := "# HELP ftpsd_passive_ports Ports in the passive range (passive.ports).\n# TYPE ftpsd_passive_ports gauge\nftpsd_passive_ports 10\n"
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want), "ftpsd_passive_ports"); err != nil {
		t.Error(err)
	}
}

// TestHealthListenerDown: a server that does not serve is unhealthy, and
// says why on one line with a 503.
func TestHealthListenerDown(t *testing.T) {
	pm, store, tm, srv := components(t)
	reg, _, err := newRegistry(pm, store, tm)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{srv: srv, tm: tm}
	h := metricsHandler(reg, daemonHealth(d, 1), slog.New(slog.DiscardHandler))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "/healthz", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != "listener down: 0 of 1 control listeners serving\n" {
		t.Errorf("/healthz = %d %q, want 503 listener down", rec.Code, rec.Body.String())
	}
}

// TestRunServeMetrics runs serve with a metrics listener: /healthz is 200
// while it serves, /metrics carries the ftpsd families, and both stop
// with the server.
func TestRunServeMetrics(t *testing.T) {
	path := exampleInTemp(t, inProcess(
		"lists the metrics.\nlisten = \"\"", "lists the metrics.\nlisten = \"127.0.0.1:0\"",
	)...)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr testutil.LogBuffer
	done := make(chan int, 1)
	go func() { done <- serveCommand(ctx, []string{"-config", path}, &stderr, unprivileged) }()
	var addr string
	waitFor(t, 20*time.Second, `a "metrics listening" log line`, &stderr, done, func() bool {
		if rec := logLine(stderr.String(), "metrics listening"); rec != nil {
			addr, _ = rec["addr"].(string)
		}
		return addr != ""
	})
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The listeners register as their goroutines start: allow a moment.
	var hcode int
	var hbody string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if hcode, hbody = get("/healthz"); hcode == http.StatusOK {
			break
		}
	}
	if hcode != http.StatusOK || hbody != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", hcode, hbody)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		"ftpsd_sessions_open 0", `ftpsd_logins_total{result="ok"} 0`, "ftpsd_passive_ports 101",
		`ftpsd_certificate_expiry_timestamp_seconds{name="localhost"}`, "process_open_fds", "go_goroutines",
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	cancel()
	waitServeExit(t, done, &stderr)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/healthz", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("the metrics listener still answers after serve returned")
	}
}

// TestCheckConfigMetricsWarning: a metrics listener on every interface is
// a warning, unless allow_remote says it is meant.
func TestCheckConfigMetricsWarning(t *testing.T) {
	for _, allow := range []bool{false, true} {
		edits := []string{"lists the metrics.\nlisten = \"\"", "lists the metrics.\nlisten = \":9129\""}
		if allow {
			edits = append(edits, "allow_remote = false", "allow_remote = true")
		}
		r := runCmd(t, "", "check-config", "-config", exampleInTemp(t, edits...))
		if r.code != exitOK {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		warned := strings.Contains(r.stdout, `metrics.listen ":9129" is not a loopback address`)
		if warned == allow {
			t.Errorf("allow_remote %t: warned %t:\n%s", allow, warned, r.stdout)
		}
		if !strings.Contains(r.stdout, "http://:9129/metrics") {
			t.Errorf("check-config does not show the metrics listener:\n%s", r.stdout)
		}
	}
}
