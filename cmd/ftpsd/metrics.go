package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// metricsConfig is the [metrics] section: the HTTP listener of /metrics
// (Prometheus) and /healthz.
type metricsConfig struct {
	// Listen is the address of the metrics listener, e.g.
	// "127.0.0.1:9129". Empty (the default): no listener, no metrics.
	Listen string `toml:"listen"`
	// AllowRemote silences the warning about a listen address that is not
	// loopback. The endpoints have no authentication: expose them only to
	// the monitoring network.
	AllowRemote bool `toml:"allow_remote"`
}

// Validate checks the listen address; there are no defaults to fill.
func (c *metricsConfig) Validate() error {
	if c.Listen == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %q is not host:port: %v", c.Listen, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("metrics.listen: %q: %q is not a port number", c.Listen, port)
	}
	return nil
}

// warnings are check-config's (and serve's) remarks on the section.
func (c *metricsConfig) warnings() []string {
	if c.Listen == "" || c.AllowRemote || loopbackHost(c.Listen) {
		return nil
	}
	return []string{fmt.Sprintf("metrics.listen %q is not a loopback address: /metrics and /healthz have no authentication and show user activity; bind 127.0.0.1, or set metrics.allow_remote = true if only the monitoring network reaches it", c.Listen)}
}

// loopbackHost reports whether a host:port names a loopback address
// ("localhost" included); an empty host means every interface.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// newRegistry builds the daemon's own registry (never the global default
// one): the ftps collectors, what passive, auth and tlsctl report at
// scrape time, and Go's and the process's collectors.
func newRegistry(pm *passive.Manager, store *auth.Store, tm *tlsctl.Manager) (*prometheus.Registry, *ftps.Metrics, error) {
	reg := prometheus.NewRegistry()
	m, err := ftps.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range []prometheus.Collector{
		newStatsCollector(pm, store, tm),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, nil, err
		}
	}
	return reg, m, nil
}

// statsCollector reads the plain statistics of passive, auth and tlsctl
// when Prometheus scrapes (those packages know nothing of Prometheus).
type statsCollector struct {
	pm    *passive.Manager
	store *auth.Store
	tm    *tlsctl.Manager

	ports, portsInUse, exhausted, refused, bans, expiry, acme *prometheus.Desc
	cacheHits, cacheMisses                                    *prometheus.Desc
}

func newStatsCollector(pm *passive.Manager, store *auth.Store, tm *tlsctl.Manager) *statsCollector {
	return &statsCollector{
		pm: pm, store: store, tm: tm,
		ports: prometheus.NewDesc("ftpsd_passive_ports",
			"Ports in the passive range (passive.ports).", nil, nil),
		portsInUse: prometheus.NewDesc("ftpsd_passive_ports_in_use",
			"Passive ports held by open data listeners now.", nil, nil),
		exhausted: prometheus.NewDesc("ftpsd_passive_exhausted_total",
			"PASV/EPSV requests that found no free passive port (answered 425).", nil, nil),
		refused: prometheus.NewDesc("ftpsd_data_connections_refused_total",
			"Data connections refused, by reason: not_resumed (TLS session not resumed), foreign_ip, handshake_failure, timeout (never opened), privileged_port and connect_failure (active mode), proxy (not through a trusted proxy).",
			[]string{"reason"}, nil),
		bans: prometheus.NewDesc("ftpsd_bans_active",
			"Clients (IPv4 addresses, IPv6 /64s) banned from logging in now.", nil, nil),
		cacheHits: prometheus.NewDesc("ftpsd_login_cache_hits_total",
			"Logins whose password was recognised by the login cache (auth.login_cache_ttl), without hashing.", nil, nil),
		cacheMisses: prometheus.NewDesc("ftpsd_login_cache_misses_total",
			"Login cache lookups that had to hash the password: first logins, expired entries, wrong passwords.", nil, nil),
		expiry: prometheus.NewDesc("ftpsd_certificate_expiry_timestamp_seconds",
			"End of validity (NotAfter) of the certificate served for each name, as a Unix time.",
			[]string{"name"}, nil),
		acme: prometheus.NewDesc("ftpsd_acme_results_total",
			"ACME certificate issuance results, by operation (obtain, renew) and result (ok, failed).",
			[]string{"operation", "result"}, nil),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ports, c.portsInUse, c.exhausted, c.refused, c.bans, c.expiry, c.acme, c.cacheHits, c.cacheMisses} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ps := c.pm.Stats()
	ch <- prometheus.MustNewConstMetric(c.ports, prometheus.GaugeValue, float64(ps.PoolSize))
	ch <- prometheus.MustNewConstMetric(c.portsInUse, prometheus.GaugeValue, float64(ps.InUse))
	ch <- prometheus.MustNewConstMetric(c.exhausted, prometheus.CounterValue, float64(ps.Exhausted))
	for _, r := range passive.RefusalReasons() {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(ps.Refused[r]), r.String())
	}
	ch <- prometheus.MustNewConstMetric(c.bans, prometheus.GaugeValue, float64(c.store.ActiveBans()))
	lc := c.store.LoginCacheStats()
	ch <- prometheus.MustNewConstMetric(c.cacheHits, prometheus.CounterValue, float64(lc.Hits))
	ch <- prometheus.MustNewConstMetric(c.cacheMisses, prometheus.CounterValue, float64(lc.Misses))
	for name, notAfter := range c.tm.Expiries() {
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(notAfter.Unix()), name)
	}
	as := c.tm.ACMEStats()
	for _, v := range []struct {
		op, result string
		n          uint64
	}{
		{"obtain", "ok", as.ObtainOK}, {"obtain", "failed", as.ObtainFailed},
		{"renew", "ok", as.RenewOK}, {"renew", "failed", as.RenewFailed},
	} {
		ch <- prometheus.MustNewConstMetric(c.acme, prometheus.CounterValue, float64(v.n), v.op, v.result)
	}
}

// health says whether the daemon serves: every control listener accepting
// and a certificate loaded and valid now. reason is one line.
type health func() (ok bool, reason string)

// daemonHealth is the health of d, which serves want listeners.
func daemonHealth(d *daemon, want int) health {
	return func() (bool, string) {
		if n := d.srv.Listeners(); n < want {
			return false, fmt.Sprintf("listener down: %d of %d control listeners serving", n, want)
		}
		return certHealth(d.tm.Certificate(), time.Now())
	}
}

// certHealth judges the served certificate at now.
func certHealth(c tlsctl.CertInfo, now time.Time) (bool, string) {
	switch {
	case c.NotAfter.IsZero():
		return false, "no certificate: none loaded or obtained yet"
	case now.After(c.NotAfter):
		return false, "certificate expired at " + c.NotAfter.UTC().Format(time.RFC3339)
	case now.Before(c.NotBefore):
		return false, "certificate not valid before " + c.NotBefore.UTC().Format(time.RFC3339)
	}
	return true, "ok"
}

// metricsHandler serves /metrics from reg and /healthz from h.
func metricsHandler(reg *prometheus.Registry, h health, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// A scrape that takes longer is cut: the collectors take locks.
		Timeout: 10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, reason := h()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, reason)
	})
	return mux
}

// metricsServer is the running metrics listener.
type metricsServer struct {
	srv  *http.Server
	done chan error
}

// startMetrics serves handler on ln until stop.
func startMetrics(ln net.Listener, handler http.Handler, log *slog.Logger) *metricsServer {
	m := &metricsServer{
		srv: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		done: make(chan error, 1),
	}
	go func() { m.done <- m.srv.Serve(ln) }()
	return m
}

// stop shuts the listener down gracefully, letting a scrape in progress
// finish for up to 5 s.
func (m *metricsServer) stop(log *slog.Logger) {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		log.Warn("metrics listener: shutdown", "err", err)
		m.srv.Close()
	}
	if err := <-m.done; !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics listener failed", "err", err)
	}
}
