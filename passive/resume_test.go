package passive

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

var tlsVersions = []struct {
	name string
	vers uint16
}{
	{"TLS1.2", tls.VersionTLS12},
	{"TLS1.3", tls.VersionTLS13},
}

// dataClient says which client config opens the data connections.
type dataClient int

const (
	dataSame         dataClient = iota // the control connection's config (and cache)
	dataNoTickets                      // a fresh config with SessionTicketsDisabled
	dataOtherBinding                   // a config whose cache holds another Binding's ticket
)

// transfer opens one TLS data connection on a new listener of b with cfg
// (see transferOn).
func transfer(t *testing.T, b *Binding, cfg *tls.Config) (serverResumed bool, err error) {
	t.Helper()
	l := mustListen(t, b)
	return transferOn(t, l, acceptAsync(t, l, true), cfg)
}

func TestDataResumption(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	tests := []struct {
		name        string
		mode        string
		control     []clientOpt
		data        dataClient
		rounds      int
		wantErr     error
		wantResumed bool
		wantLog     string
	}{
		{name: "required resumes", mode: ResumptionRequired, control: []clientOpt{withCache},
			data: dataSame, rounds: 3, wantResumed: true},
		{name: "required no session cache", mode: ResumptionRequired,
			data: dataSame, rounds: 1, wantErr: ErrNotResumed, wantLog: "not resumed"},
		{name: "required tickets disabled", mode: ResumptionRequired, control: []clientOpt{ticketsDisabled},
			data: dataSame, rounds: 1, wantErr: ErrNotResumed},
		{name: "required other binding's ticket", mode: ResumptionRequired, control: []clientOpt{withCache},
			data: dataOtherBinding, rounds: 1, wantErr: ErrNotResumed},
		{name: "compatible resumes", mode: ResumptionCompatible, control: []clientOpt{withCache},
			data: dataSame, rounds: 3, wantResumed: true},
		{name: "compatible tickets disabled", mode: ResumptionCompatible, control: []clientOpt{ticketsDisabled},
			data: dataSame, rounds: 2, wantLog: "resumption not checked"},
		{name: "compatible no session cache", mode: ResumptionCompatible,
			data: dataSame, rounds: 1},
		{name: "compatible offered, wrong ticket", mode: ResumptionCompatible, control: []clientOpt{withCache},
			data: dataOtherBinding, rounds: 1, wantErr: ErrNotResumed},
		{name: "compatible offered, no ticket on data", mode: ResumptionCompatible, control: []clientOpt{withCache},
			data: dataNoTickets, rounds: 1, wantErr: ErrNotResumed},
		{name: "off no session cache", mode: ResumptionOff,
			data: dataSame, rounds: 1},
		{name: "off other binding's ticket", mode: ResumptionOff, control: []clientOpt{withCache},
			data: dataOtherBinding, rounds: 1},
		{name: "off resumes", mode: ResumptionOff, control: []clientOpt{withCache},
			data: dataSame, rounds: 2, wantResumed: true},
	}
	for _, v := range tlsVersions {
		for _, tt := range tests {
			t.Run(v.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				log, logs := testutil.NewLogger()
				m := newTestManager(t, Config{TLSResumption: tt.mode}, log)
				base := pki.baseConfig(t)
				ctl := pki.clientConfig(v.vers, tt.control...)
				s := startSession(t, m, base, ctl)

				var data *tls.Config
				switch tt.data {
				case dataSame:
					data = ctl
				case dataNoTickets:
					data = pki.clientConfig(v.vers, ticketsDisabled)
				case dataOtherBinding:
					// Same base config and keys, another control session.
					data = pki.clientConfig(v.vers, withCache)
					startSession(t, m, base, data)
				}
				for i := range tt.rounds {
					resumed, err := transfer(t, s.b, data)
					checkRound(t, i, resumed, err, tt.wantErr, tt.wantResumed, logs)
				}
				if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
					t.Errorf("log lacks %q:\n%s", tt.wantLog, logs)
				}
				assertPortsFree(t, m)
			})
		}
	}
}

// checkRound fails the test unless round i (from 0) of transfers ended
// with Accept's error wantErr and, when it was accepted, resumed as
// wantResumed says.
func checkRound(t *testing.T, i int, resumed bool, err, wantErr error, wantResumed bool, logs fmt.Stringer) {
	t.Helper()
	if !errors.Is(err, wantErr) {
		t.Fatalf("round %d: Accept error %v, want %v\n%s", i+1, err, wantErr, logs)
	}
	if err == nil && resumed != wantResumed {
		t.Fatalf("round %d: DidResume %v, want %v", i+1, resumed, wantResumed)
	}
}

// TestControlTicketTagged checks the hooks on ControlTLS: tickets carry the
// binding's tag, a second control connection on the same binding resumes,
// and base itself is left untouched.
func TestControlTicketTagged(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			m := newTestManager(t, Config{}, nil)
			base := pki.baseConfig(t)
			ctl := pki.clientConfig(v.vers, withCache)
			s := startSession(t, m, base, ctl)
			if s.client.ConnectionState().DidResume {
				t.Fatal("first control connection resumed")
			}
			if base.WrapSession != nil || base.UnwrapSession != nil || base.GetConfigForClient != nil {
				t.Fatal("Bind modified base")
			}
			if !strings.HasPrefix(string(s.b.tag), tagPrefix) || len(s.b.tag) != len(tagPrefix)+32 {
				t.Fatalf("tag %q", s.b.tag)
			}
			if got := s.b.offered.Load(); got == 0 {
				t.Fatal("control hello offer not recorded")
			}
			if first, again := s.b.ControlTLS(), s.b.ControlTLS(); first != again {
				t.Fatal("ControlTLS is not one config per binding")
			}
		})
	}
}

func TestEndedWithoutCloseNotify(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, tt := range []struct {
		name   string
		notify bool
	}{{"close_notify", true}, {"bare TCP close", false}} {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestManager(t, Config{}, nil)
			cfg := pki.clientConfig(tls.VersionTLS13, withCache)
			sess := startSession(t, m, pki.baseConfig(t), cfg)
			l := mustListen(t, sess.b)
			ch := acceptAsync(t, l, true)
			dc, err := dialData(t, l.Port(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := waitAccept(t, ch)
			if r.err != nil {
				t.Fatal(r.err)
			}
			io.WriteString(dc, "payload")
			if tt.notify {
				dc.Close()
			} else {
				dc.NetConn().Close()
			}
			r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(r.conn)
			if string(got) != "payload" || err != nil {
				t.Fatalf("read %q, %v", got, err)
			}
			if EndedWithoutCloseNotify(r.conn) == tt.notify {
				t.Errorf("EndedWithoutCloseNotify = %t with close_notify=%t", !tt.notify, tt.notify)
			}
		})
	}
}

// TestCompatibleRefusesOtherVersion: in compatible mode a data connection
// must use the control connection's TLS version; otherwise a client on the
// same IP could pick the version whose ticket extension the control hello
// lacked and pass with the peer-IP check alone.
func TestCompatibleRefusesOtherVersion(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	log, logs := testutil.NewLogger()
	m := newTestManager(t, Config{TLSResumption: ResumptionCompatible}, log)
	sess := startSession(t, m, pki.baseConfig(t), pki.clientConfig(tls.VersionTLS13, ticketsDisabled))
	if _, err := transfer(t, sess.b, pki.clientConfig(tls.VersionTLS12, ticketsDisabled)); !errors.Is(err, ErrNotResumed) {
		t.Fatalf("TLS 1.2 data for a TLS 1.3 control session: %v, want ErrNotResumed", err)
	}
	if !strings.Contains(logs.String(), "differs from the control") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}
	if _, err := transfer(t, sess.b, pki.clientConfig(tls.VersionTLS13, ticketsDisabled)); err != nil {
		t.Errorf("same version without tickets: %v", err)
	}
}
