package test

// A real Prometheus scrapes a real "ftpsd serve" every second; the test
// logs in and transfers, then reads the values back through Prometheus's
// HTTP query API. The alert rules and the Grafana dashboard shipped in
// docs/deploy are checked against the same Prometheus and with promtool.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// The files of docs/deploy these tests check.
const (
	alertRules = "../docs/deploy/prometheus-alerts.yml"
	dashboard  = "../docs/deploy/grafana-dashboard.json"
)

// prometheus is a running Prometheus server.
type prometheus struct {
	url    string // http://127.0.0.1:port
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
}

// startPrometheus runs Prometheus on a free loopback port with a 1 s
// scrape interval against target (host:port of /metrics), loading the
// shipped alert rules. It is stopped by PID (SIGTERM, then SIGKILL) at
// cleanup.
func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin := needTool(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: ftpsd
    static_configs:
      - targets: [%q]
`, rules, target)
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	p := &prometheus{url: "http://" + addr, done: make(chan struct{})}
	p.cmd = exec.Command(bin,
		"--config.file="+confPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.stderr, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("prometheus (pid %d) output:\n%s", p.cmd.Process.Pid, p.stderr.String())
		}
	})
	testutil.WaitFor(t, 30*time.Second, "prometheus ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited: %s", p.stderr.String())
		default:
		}
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// freeLoopbackAddr is a 127.0.0.1 port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// promResult is the data of an instant query.
type promResult struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [time, "value"]
}

// query runs an instant query and returns its vector; a query Prometheus
// refuses fails the test.
func (p *prometheus) query(t *testing.T, q string) []promResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/api/v1/query?query="+url.QueryEscape(q), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: status %q error %q (%v): %s", q, r.Status, r.Error, err, body)
	}
	var vec []promResult
	if r.Data.ResultType == "vector" {
		if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
			t.Fatalf("query %s: %v", q, err)
		}
	}
	return vec
}

// value is the single value of q, and false when the vector is empty.
func (p *prometheus) value(t *testing.T, q string) (float64, bool) {
	t.Helper()
	vec := p.query(t, q)
	if len(vec) == 0 {
		return 0, false
	}
	if len(vec) > 1 {
		t.Fatalf("query %s: %d series, want 1: %v", q, len(vec), vec)
	}
	s, _ := vec[0].Value[1].(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %v: %v", q, vec[0].Value, err)
	}
	return f, true
}

// TestPrometheusScrapesServe: one good login with an upload and a
// download, a wrong password and an unknown user, read back through a
// real Prometheus.
func TestPrometheusScrapesServe(t *testing.T) {
	t.Parallel()
	c := newSvcConfig(newAccount(user, pass))
	c.tail = "\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
	s := startService(t, c)
	target := s.await(t, 0, msgIs("metrics listening")).str("addr")
	if target == "" {
		t.Fatal(`"metrics listening" without addr`)
	}
	// The listeners register as their goroutines start: allow a moment.
	var hcode int
	var hbody []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + target + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		hcode = resp.StatusCode
		hbody, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if hcode == http.StatusOK {
			break
		}
	}
	if hcode != http.StatusOK || string(hbody) != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", hcode, hbody)
	}
	p := startPrometheus(t, target)

	payload := testutil.Payload(256<<10, 3)
	conn := s.login(t, user, pass)
	conn.Xfer("STOR up.bin", payload)
	if got := conn.Xfer("RETR up.bin", nil); !bytes.Equal(got, payload) {
		t.Fatalf("RETR returned %d bytes, want the %d uploaded", len(got), len(payload))
	}
	conn.Cmd(221, "QUIT")
	if code, _ := s.tryLogin(t, user, "wrong-password"); code != 530 {
		t.Errorf("wrong password: %d, want 530", code)
	}
	if code, _ := s.tryLogin(t, "nobody", pass); code != 530 {
		t.Errorf("unknown user: %d, want 530", code)
	}
	// A second login with the right password, as FileZilla's transfer
	// connections do: the login cache answers it.
	again := s.login(t, user, pass)
	again.Cmd(221, "QUIT")

	// Each query names what it must equal once Prometheus has scraped
	// after the sessions above ended.
	want := []struct {
		query string
		value float64
	}{
		{`up{job="ftpsd"}`, 1},
		{`ftpsd_logins_total{result="ok"}`, 2},
		{`ftpsd_logins_total{result="bad_password"}`, 1},
		{`ftpsd_logins_total{result="unknown_user"}`, 1},
		{`ftpsd_logins_total{result="banned"}`, 0},
		{`ftpsd_login_duration_seconds_count{result="ok"}`, 2},
		{`ftpsd_transfers_total{direction="upload",result="ok"}`, 1},
		{`ftpsd_transfers_total{direction="download",result="ok"}`, 1},
		{`ftpsd_transfer_duration_seconds_count{direction="download"}`, 1},
		{`ftpsd_data_received_bytes_total`, float64(len(payload))},
		{`ftpsd_data_sent_bytes_total`, float64(len(payload))},
		{`ftpsd_sessions_total`, 4},
		{`ftpsd_sessions_open`, 0},
		{`ftpsd_passive_ports`, 20},
		{`ftpsd_passive_ports_in_use`, 0},
		{`ftpsd_data_connections_refused_total{reason="not_resumed"}`, 0},
		{`ftpsd_bans_active`, 0},
		// The first good login and the wrong password hashed, the second
		// good login did not; the unknown user is not counted.
		{`ftpsd_login_cache_misses_total`, 2},
		{`ftpsd_login_cache_hits_total`, 1},
		{`ftpsd_acme_results_total{operation="obtain",result="ok"}`, 0},
		// The self-signed certificate is valid for a year or more.
		{`ftpsd_certificate_expiry_timestamp_seconds{name="localhost"} - time() > bool 300 * 86400`, 1},
		{`count(ftpsd_certificate_expiry_timestamp_seconds)`, 3},
		{`go_goroutines > bool 0`, 1},
	}
	var last []string
	ok := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		last = last[:0]
		for _, w := range want {
			got, found := p.value(t, w.query)
			if !found || got != w.value {
				last = append(last, fmt.Sprintf("%s = %v (found %t), want %v", w.query, got, found, w.value))
			}
		}
		if len(last) == 0 {
			ok = true
			break
		}
	}
	if !ok {
		t.Fatalf("Prometheus did not show the expected values within 30s:\n%s", strings.Join(last, "\n"))
	}

	// The shipped rules loaded into this Prometheus, and none fires.
	rules := p.query(t, `ALERTS{alertstate="firing"}`)
	if len(rules) != 0 {
		t.Errorf("alerts firing on a quiet server: %v", rules)
	}
	assertRulesLoaded(t, p)
	// Every expression of the Grafana dashboard is valid PromQL here and
	// every ftpsd_ metric it names exists.
	for _, expr := range dashboardExprs(t) {
		q := strings.NewReplacer("$job", ".*", "$instance", ".*", "$__rate_interval", "1m").Replace(expr)
		p.query(t, q)
	}
	for _, name := range dashboardMetrics(t) {
		if got, _ := p.value(t, "count({__name__="+strconv.Quote(name)+"})"); got == 0 {
			t.Errorf("the dashboard uses %s, which ftpsd does not export", name)
		}
	}
}

// assertRulesLoaded checks through /api/v1/rules that Prometheus loaded
// the ftpsd group with every rule healthy.
func assertRulesLoaded(t *testing.T, p *prometheus) {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			n++
			if rule.Health == "err" {
				t.Errorf("rule %s: health %s", rule.Name, rule.Health)
			}
		}
	}
	if n < 5 {
		t.Errorf("Prometheus loaded %d rules from %s, want 5", n, alertRules)
	}
}

// dashboardExprs are the PromQL expressions of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("%s: %d expressions", dashboard, len(exprs))
	}
	return exprs
}

// dashboardMetrics are the ftpsd_ metric names the dashboard uses, with
// the histogram suffixes taken off.
func dashboardMetrics(t *testing.T) []string {
	seen := map[string]bool{}
	var names []string
	for _, e := range dashboardExprs(t) {
		for _, f := range strings.FieldsFunc(e, func(r rune) bool {
			return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		}) {
			if strings.HasPrefix(f, "ftpsd_") && !seen[f] {
				seen[f] = true
				names = append(names, f)
			}
		}
	}
	return names
}

// TestPrometheusAlertRules checks docs/deploy/prometheus-alerts.yml with
// promtool: the syntax, then the unit tests of testdata (each alert fires
// on the series it is for, and only on them).
func TestPrometheusAlertRules(t *testing.T) {
	t.Parallel()
	promtool := needTool(t, "promtool")
	if out, _, err := runTool(t, ".", nil, promtool, "check", "rules", alertRules); err != nil || !strings.Contains(out, "SUCCESS: 5 rules found") {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := runTool(t, abs, nil, promtool, "test", "rules", "prometheus-alerts-test.yml"); err != nil || !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}
