package ftps_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
	"github.com/ftpsd/ftpsd/passive"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// metricsServer starts a test server whose metrics go to a new registry.
func metricsServer(t *testing.T, opts ftpstest.Options) (*ftpstest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := ftps.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Metrics = m
	return ftpstest.NewServer(t, opts), reg
}

// sample is one gathered series: its value (the count, for a histogram)
// and, for a histogram, its sum.
type sample struct {
	value, sum float64
}

// gather returns the series of family name whose labels include want
// ("k=v" pairs); it fails when there is not exactly one.
func gather(t *testing.T, reg *prometheus.Registry, name string, want ...string) sample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []sample
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			if !hasLabels(have, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				found = append(found, sample{value: m.Counter.GetValue()})
			case m.Gauge != nil:
				found = append(found, sample{value: m.Gauge.GetValue()})
			case m.Histogram != nil:
				found = append(found, sample{value: float64(m.Histogram.GetSampleCount()), sum: m.Histogram.GetSampleSum()})
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(found))
	}
	return found[0]
}

// hasLabels reports whether have holds every "k=v" of want.
func hasLabels(have map[string]string, want []string) bool {
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		if have[k] != v {
			return false
		}
	}
	return true
}

// TestMetricsLoginsAndTransfers drives each login result and a transfer in
// each direction, and reads the registry.
func TestMetricsLoginsAndTransfers(t *testing.T) {
	t.Parallel()
	s, reg := metricsServer(t, ftpstest.Options{})

	// USER and PASS before AUTH TLS: one refusal per session.
	c := s.Dial(t)
	c.Cmd(530, "USER "+user)
	c.Cmd(530, "PASS "+pass)
	c.Cmd(221, "QUIT")

	for _, name := range []string{user, "nobody"} {
		c := s.Dial(t)
		c.AuthTLS(s.ClientTLS())
		c.Cmd(331, "USER "+name)
		c.Cmd(530, "PASS wrong")
		c.Cmd(221, "QUIT")
	}

	c = s.Login(t, s.ClientTLS())
	if got := gather(t, reg, "ftpsd_sessions_open").value; got != 1 {
		t.Errorf("ftpsd_sessions_open = %v with one session, want 1", got)
	}
	payload := testutil.Payload(300<<10, 7)
	c.Xfer("STOR m.bin", payload)
	if got := c.Xfer("RETR m.bin", nil); len(got) != len(payload) {
		t.Fatalf("RETR: %d bytes, want %d", len(got), len(payload))
	}
	listing := c.Xfer("MLSD", nil)
	c.Cmd(221, "QUIT")

	testutil.WaitFor(t, 5*time.Second, "sessions to close", func() bool {
		return gather(t, reg, "ftpsd_sessions_open").value == 0
	})
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ftpsd_sessions_total", nil, 4},
		{"ftpsd_logins_total", []string{"result=plaintext_refused"}, 1},
		{"ftpsd_logins_total", []string{"result=bad_password"}, 1},
		{"ftpsd_logins_total", []string{"result=unknown_user"}, 1},
		{"ftpsd_logins_total", []string{"result=ok"}, 1},
		{"ftpsd_logins_total", []string{"result=banned"}, 0},
		{"ftpsd_login_duration_seconds", []string{"result=ok"}, 1},
		{"ftpsd_login_duration_seconds", []string{"result=bad_password"}, 1},
		{"ftpsd_login_duration_seconds", []string{"result=plaintext_refused"}, 0}, // never reached a password check
		{"ftpsd_transfers_total", []string{"direction=upload", "result=ok"}, 1},
		{"ftpsd_transfers_total", []string{"direction=download", "result=ok"}, 1},
		{"ftpsd_transfers_total", []string{"direction=listing", "result=ok"}, 1},
		{"ftpsd_transfers_total", []string{"direction=download", "result=failed"}, 0},
		{"ftpsd_transfer_duration_seconds", []string{"direction=upload"}, 1},
		{"ftpsd_data_received_bytes_total", nil, float64(len(payload))},
		{"ftpsd_data_sent_bytes_total", nil, float64(len(payload) + len(listing))},
	} {
		if got := gather(t, reg, tt.name, tt.labels...).value; got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// failure_delay is 1ms here, so only a positive latency can be checked.
	if got := gather(t, reg, "ftpsd_login_duration_seconds", "result=ok"); got.sum <= 0 {
		t.Errorf("login latency sum %v, want > 0", got.sum)
	}
}

// TestMetricsBannedAndFailedTransfer: a login refused by a ban, and a
// download whose data connection never comes.
func TestMetricsBannedAndFailedTransfer(t *testing.T) {
	t.Parallel()
	s, reg := metricsServer(t, ftpstest.Options{
		Auth:    func(c *auth.Config) { c.MaxFailures = 2 },
		Passive: func(c *passive.Config) { c.AcceptTimeout = 200 * time.Millisecond },
	})
	testutil.WriteFile(t, s.Home(user), "f.txt", []byte("data"))
	c := s.Login(t, s.ClientTLS())
	c.Pasv()
	c.Cmd(150, "RETR f.txt")
	c.Expect(425) // no data connection within accept_timeout

	for range 2 { // the second failure reaches max_failures: a ban
		c := s.Dial(t)
		c.AuthTLS(s.ClientTLS())
		c.Cmd(331, "USER "+user)
		c.Send("PASS wrong")
		c.Read()
	}
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ftpsd_logins_total", []string{"result=bad_password"}, 1},
		{"ftpsd_logins_total", []string{"result=banned"}, 1},
		{"ftpsd_transfers_total", []string{"direction=download", "result=failed"}, 1},
	} {
		if got := gather(t, reg, tt.name, tt.labels...).value; got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestProbeLoggedAtDebug: a connect that closes before any command (a
// health check, a port scan) leaves nothing at Info; a real session does.
func TestProbeLoggedAtDebug(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Implicit: true})
	for _, addr := range []string{s.Addr, s.ImplicitAddr} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	s.Log.Wait(t, `level=DEBUG msg="session closed"`, 2, 5*time.Second)
	if n := s.Log.Count(`level=(INFO|WARN|ERROR) .* session=`); n != 0 {
		t.Errorf("probes logged %d lines above Debug:\n%s", n, s.Log)
	}

	c := s.Dial(t)
	c.Cmd(211, "FEAT")
	c.Cmd(221, "QUIT")
	s.Log.Wait(t, `level=INFO msg="session closed"`, 1, 5*time.Second)
	if n := s.Log.Count(`level=INFO msg="session opened"`); n != 1 {
		t.Errorf("a session with a command logged \"session opened\" at Info %d times, want 1", n)
	}
}
