package ftps

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Login results, the values of the "result" label of ftpsd_logins_total
// and ftpsd_login_duration_seconds.
const (
	LoginOK               = "ok"
	LoginBadPassword      = "bad_password"
	LoginUnknownUser      = "unknown_user"
	LoginBanned           = "banned"
	LoginPlaintextRefused = "plaintext_refused"
	LoginError            = "error" // right password, but the home could not be opened
)

// Transfer directions and results: the "direction" and "result" labels of
// ftpsd_transfers_total and ftpsd_transfer_duration_seconds.
const (
	DirUpload   = "upload"   // STOR, APPE, STOU
	DirDownload = "download" // RETR
	DirListing  = "listing"  // LIST, NLST, MLSD

	ResultOK      = "ok"      // 226
	ResultAborted = "aborted" // ABOR, disconnect or shutdown
	ResultFailed  = "failed"  // any other final reply
)

// Metrics are the server's Prometheus collectors. Build them with
// NewMetrics and pass them in Deps.Metrics; a nil *Metrics records
// nothing. Everything the server counts that belongs to another package
// (passive ports, bans, certificates) is collected by the caller from
// that package's own statistics.
type Metrics struct {
	sessionsOpen    prometheus.Gauge
	sessionsTotal   prometheus.Counter
	logins          *prometheus.CounterVec
	loginSeconds    *prometheus.HistogramVec
	transfers       *prometheus.CounterVec
	transferSeconds *prometheus.HistogramVec
	received, sent  prometheus.Counter
}

// NewMetrics creates the server's collectors and registers them with reg.
// Every label combination starts at zero, so that rates and alerts work
// from the first scrape.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &Metrics{
		sessionsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ftpsd_sessions_open",
			Help: "Control connections open now (logged in or not).",
		}),
		sessionsTotal: counter("ftpsd_sessions_total",
			"Control connections accepted (those refused by a connection limit are not counted)."),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftpsd_logins_total",
			Help: "Login attempts by result: ok, bad_password, unknown_user, banned, plaintext_refused, error.",
		}, []string{"result"}),
		loginSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ftpsd_login_duration_seconds",
			Help: "Time from PASS received to its answer, password hashing (and waiting for it) and auth.failure_delay included.",
			// argon2id takes tens to hundreds of milliseconds; failures
			// wait for failure_delay (1s by default).
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2.5, 5, 10},
		}, []string{"result"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftpsd_transfers_total",
			Help: "Transfers that ended, by direction (upload, download, listing) and result (ok, aborted, failed).",
		}, []string{"direction", "result"}),
		transferSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ftpsd_transfer_duration_seconds",
			Help:    "Duration of transfers, from the data connection's wait to the final reply, by direction.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms to 44 min
		}, []string{"direction"}),
		received: counter("ftpsd_data_received_bytes_total",
			"Bytes received on data connections (uploads), counted as they arrive."),
		sent: counter("ftpsd_data_sent_bytes_total",
			"Bytes sent on data connections (downloads and listings), counted as they leave."),
	}
	for _, r := range []string{LoginOK, LoginBadPassword, LoginUnknownUser, LoginBanned, LoginPlaintextRefused, LoginError} {
		m.logins.WithLabelValues(r)
		m.loginSeconds.WithLabelValues(r)
	}
	for _, d := range []string{DirUpload, DirDownload, DirListing} {
		for _, r := range []string{ResultOK, ResultAborted, ResultFailed} {
			m.transfers.WithLabelValues(d, r)
		}
		m.transferSeconds.WithLabelValues(d)
	}
	for _, c := range []prometheus.Collector{m.sessionsOpen, m.sessionsTotal, m.logins, m.loginSeconds,
		m.transfers, m.transferSeconds, m.received, m.sent} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) sessionOpened() {
	if m != nil {
		m.sessionsTotal.Inc()
		m.sessionsOpen.Inc()
	}
}

func (m *Metrics) sessionClosed() {
	if m != nil {
		m.sessionsOpen.Dec()
	}
}

// login counts a login attempt; took is zero when it never reached the
// password check (plaintext refused), which is not observed as latency.
func (m *Metrics) login(result string, took time.Duration) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(result).Inc()
	if took > 0 {
		m.loginSeconds.WithLabelValues(result).Observe(took.Seconds())
	}
}

func (m *Metrics) transfer(direction, result string, took time.Duration) {
	if m != nil {
		m.transfers.WithLabelValues(direction, result).Inc()
		m.transferSeconds.WithLabelValues(direction).Observe(took.Seconds())
	}
}

func (m *Metrics) addReceived(n int) {
	if m != nil && n > 0 {
		m.received.Add(float64(n))
	}
}

func (m *Metrics) addSent(n int) {
	if m != nil && n > 0 {
		m.sent.Add(float64(n))
	}
}
