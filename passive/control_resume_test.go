package passive

import (
	"errors"
	"testing"
)

// TestControlResumesAnyTicket: a new control connection resumes a ticket
// of another session (a reconnect; in a cluster, another node's session
// under the same ticket keys), and the tickets it then issues are bound
// to the new session only: its data connections resume, and the other
// session's data port refuses them.
func TestControlResumesAnyTicket(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			m := newTestManager(t, Config{}, nil)
			base := pki.baseConfig(t)
			ctl := pki.clientConfig(v.vers, withCache)
			first := startSession(t, m, base, ctl)
			if first.client.ConnectionState().DidResume {
				t.Fatal("first control connection resumed")
			}
			second := startSession(t, m, base, ctl)
			if !second.client.ConnectionState().DidResume {
				t.Fatal("second control connection did not resume the first one's ticket")
			}

			l := mustListen(t, second.b)
			ch := acceptAsync(t, l, true)
			dc, err := dialData(t, l.Port(), ctl)
			if err != nil {
				t.Fatalf("data handshake: %v", err)
			}
			if r := waitAccept(t, ch); r.err != nil {
				t.Fatalf("data connection of the second session: %v", r.err)
			}
			if !dc.ConnectionState().DidResume {
				t.Fatal("data connection of the second session did not resume")
			}

			// The cache now holds the second session's tickets only.
			l = mustListen(t, first.b)
			ch = acceptAsync(t, l, true)
			dialData(t, l.Port(), ctl)
			if r := waitAccept(t, ch); !errors.Is(r.err, ErrNotResumed) {
				t.Fatalf("first session's data port with the second session's ticket: %v, want ErrNotResumed", r.err)
			}
		})
	}
}
