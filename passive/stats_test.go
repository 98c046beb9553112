package passive

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestStatsRefusals makes one data connection fail for each reason and
// checks that Stats counts it under that reason and no other.
func TestStatsRefusals(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	dial := func(t *testing.T, l *Listener, from net.IP) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
		c, err := d.DialContext(t.Context(), "tcp4", "127.0.0.1:"+strconv.Itoa(int(l.Port())))
		if err != nil {
			t.Skipf("cannot dial from %v: %v", from, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	tests := []struct {
		reason RefusalReason
		cfg    Config
		// act makes the data connection fail while Accept waits.
		act func(t *testing.T, l *Listener, ctl *tls.Config)
	}{
		{RefusedNotResumed, Config{}, func(t *testing.T, l *Listener, _ *tls.Config) {
			// A client without the control session's ticket.
			dialData(t, l.Port(), pki.clientConfig(tls.VersionTLS13, ticketsDisabled))
		}},
		{RefusedForeignIP, Config{AcceptTimeout: 300 * time.Millisecond}, func(t *testing.T, l *Listener, _ *tls.Config) {
			c := dial(t, l, net.IPv4(127, 0, 0, 2))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 1)) // until the server drops it
		}},
		{RefusedHandshake, Config{}, func(t *testing.T, l *Listener, _ *tls.Config) {
			c := dial(t, l, net.IPv4(127, 0, 0, 1))
			c.Write([]byte("USER not-a-tls-hello\r\n"))
		}},
		{RefusedTimeout, Config{AcceptTimeout: 100 * time.Millisecond}, func(*testing.T, *Listener, *tls.Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.reason.String(), func(t *testing.T) {
			t.Parallel()
			m := newTestManager(t, tt.cfg, nil)
			ctl := pki.clientConfig(tls.VersionTLS13, withCache)
			s := startSession(t, m, pki.baseConfig(t), ctl)
			l, err := s.b.Listen()
			if err != nil {
				t.Fatal(err)
			}
			ch := acceptAsync(t, l, true)
			tt.act(t, l, ctl)
			if r := waitAccept(t, ch); r.err == nil {
				t.Fatal("Accept succeeded")
			}
			st := m.Stats()
			for _, why := range RefusalReasons() {
				want := uint64(0)
				// A foreign peer is dropped and the listener then times
				// out waiting for the real one.
				if why == tt.reason || tt.reason == RefusedForeignIP && why == RefusedTimeout {
					want = 1
				}
				if got := st.Refused[why]; got != want {
					t.Errorf("Refused[%s] = %d, want %d", why, got, want)
				}
			}
		})
	}
}

// TestStatsPool checks the pool figures and the exhaustion count.
func TestStatsPool(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	first, _ := freeRange(t, 1)
	m := newTestManager(t, Config{Ports: strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(first))}, nil)
	s := startSession(t, m, pki.baseConfig(t), pki.clientConfig(tls.VersionTLS13, withCache))
	if st := m.Stats(); st.PoolSize != 1 || st.InUse != 0 || st.Exhausted != 0 {
		t.Fatalf("fresh Stats = %+v", st)
	}
	l, err := s.b.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.Listen(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second Listen: %v, want ErrNoPorts", err)
	}
	if st := m.Stats(); st.InUse != 1 || st.Exhausted != 1 {
		t.Errorf("Stats with the port taken = %+v, want InUse 1, Exhausted 1", st)
	}
	l.Close()
	if st := m.Stats(); st.InUse != 0 || st.Exhausted != 1 {
		t.Errorf("Stats after Close = %+v, want InUse 0, Exhausted 1", st)
	}
}
