package passive

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestUserScope: a data connection of session A (alice, from 127.0.0.1)
// presents the ticket of another control session B, as a client with one
// ticket cache for all its connections does. "user" accepts it only while
// B is open and logged in as the same user from the same address;
// "required" never does. Every ticket of B is minted before B logs in (the
// control handshake comes first), so the decision reads B's user at
// data-connect time.
func TestUserScope(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	type sibling struct {
		user   string // "" = not logged in
		source string // control connection's address
	}
	alice := sibling{"alice", "127.0.0.1"}
	tests := []struct {
		name     string
		mode     string
		aUser    string  // A's user ("" = not logged in)
		b        sibling // B, whose ticket A's data connection presents
		bClosed  bool    // B closes before the first round
		untagged bool    // present an untagged ticket instead (no B)
		// between runs after the first round, before the second.
		between    func(a, b *session)
		wantErr    [2]error // per round; a nil second round is still run
		wantTicket string   // ticket= in the refusal log
		wantHint   bool
	}{
		{name: "sibling accepted", mode: ResumptionUser, aUser: "alice", b: alice},
		{name: "sibling logs out between transfers", mode: ResumptionUser, aUser: "alice", b: alice,
			between: func(_, b *session) { b.b.SetUser("") },
			wantErr: [2]error{nil, ErrNotResumed}, wantTicket: "not_logged_in"},
		// The ticket the first data connection issued carries B's tag,
		// not A's: it dies with B.
		{name: "sibling closes between transfers", mode: ResumptionUser, aUser: "alice", b: alice,
			between: func(_, b *session) { b.b.Close() },
			wantErr: [2]error{nil, ErrNotResumed}, wantTicket: "closed_session"},
		{name: "other user", mode: ResumptionUser, aUser: "alice", b: sibling{"bob", "127.0.0.1"},
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "other_user"},
		{name: "same user from another address", mode: ResumptionUser, aUser: "alice", b: sibling{"alice", "127.0.0.2"},
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "other_address"},
		{name: "sibling not logged in", mode: ResumptionUser, aUser: "alice", b: sibling{"", "127.0.0.1"},
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "not_logged_in"},
		{name: "own session not logged in", mode: ResumptionUser, b: alice,
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "not_logged_in"},
		{name: "sibling closed before", mode: ResumptionUser, aUser: "alice", b: alice, bClosed: true,
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "closed_session"},
		{name: "untagged ticket", mode: ResumptionUser, aUser: "alice", untagged: true,
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "untagged"},
		{name: "required refuses the sibling", mode: ResumptionRequired, aUser: "alice", b: alice,
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "sibling", wantHint: true},
		{name: "compatible refuses the sibling", mode: ResumptionCompatible, aUser: "alice", b: alice,
			wantErr: [2]error{ErrNotResumed, ErrNotResumed}, wantTicket: "sibling"},
	}
	for _, v := range tlsVersions {
		for _, tt := range tests {
			t.Run(v.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				log, logs := testutil.NewLogger()
				// A short handshake timeout bounds the wait for a
				// sibling that never logs in (half of it).
				m := newTestManager(t, Config{TLSResumption: tt.mode, HandshakeTimeout: time.Second}, log)
				base := pki.baseConfig(t)
				a := startSession(t, m, base, pki.clientConfig(v.vers, withCache))
				a.b.SetUser(tt.aUser)

				data := pki.clientConfig(v.vers, withCache)
				var b *session
				if tt.untagged {
					// A full handshake accepted under "off" leaves an
					// untagged ticket in the client's cache; then the
					// administrator switches to "user".
					cfg := m.settings().cfg
					for i, mode := range []string{ResumptionOff, tt.mode} {
						cfg.TLSResumption = mode
						if err := m.Reload(cfg); err != nil {
							t.Fatal(err)
						}
						if i == 0 {
							if _, err := transfer(t, a.b, data); err != nil {
								t.Fatalf("priming round under off: %v", err)
							}
						}
					}
				} else {
					b = startSessionFrom(t, m, base, data, tt.b.source)
					b.b.SetUser(tt.b.user)
					if tt.bClosed {
						b.b.Close()
					}
				}
				for i, want := range tt.wantErr {
					if i == 1 && tt.between != nil {
						tt.between(a, b)
					}
					resumed, err := transfer(t, a.b, data)
					checkRound(t, i, resumed, err, want, true, logs)
				}
				l := logs.String()
				if tt.wantTicket != "" {
					line := "tls_resumption=" + tt.mode + " ticket=" + tt.wantTicket
					if !strings.Contains(l, line) {
						t.Errorf("log lacks %q:\n%s", line, l)
					}
				}
				if got := strings.Contains(l, `needs tls_resumption = \"user\"`); got != tt.wantHint {
					t.Errorf("hint in the log: %t, want %t:\n%s", got, tt.wantHint, l)
				}
				assertPortsFree(t, m)
			})
		}
	}
}

// TestUserScopeOwnSession: "user" keeps accepting a session's own tickets,
// and a refused connection from its own cache still leaves nothing usable.
func TestUserScopeOwnSession(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			m := newTestManager(t, Config{TLSResumption: ResumptionUser}, nil)
			ctl := pki.clientConfig(v.vers, withCache)
			a := startSession(t, m, pki.baseConfig(t), ctl)
			a.b.SetUser("alice")
			for i := range 3 {
				resumed, err := transfer(t, a.b, ctl)
				if err != nil || !resumed {
					t.Fatalf("round %d: resumed %t, err %v", i+1, resumed, err)
				}
			}
			if _, err := transfer(t, a.b, pki.clientConfig(v.vers, ticketsDisabled)); !errors.Is(err, ErrNotResumed) {
				t.Fatalf("without a ticket: %v, want ErrNotResumed", err)
			}
		})
	}
}

// TestTicketKindNames keeps the log names in step with the constants.
func TestTicketKindNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for k := ticketNone; k <= ticketClosed; k++ {
		s := k.String()
		if s == "" || seen[s] {
			t.Fatalf("ticketKind %d: name %q empty or repeated", k, s)
		}
		seen[s] = true
	}
}

// TestUserScopeWaitsForLogin: a client with one shared cache gets a new
// control session's ticket at AUTH TLS and may present it on an older
// session's data connection while the new session is still logging in.
// "user" waits for that login (half the handshake timeout at most) and then
// decides on the sibling's user.
func TestUserScopeWaitsForLogin(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	tests := []struct {
		name       string
		then       func(b *Binding)
		wantErr    error
		wantTicket string
	}{
		{"logs in as the same user", func(b *Binding) { b.SetUser("alice") }, nil, ""},
		{"logs in as another user", func(b *Binding) { b.SetUser("bob") }, ErrNotResumed, "other_user"},
		{"closes", func(b *Binding) { b.Close() }, ErrNotResumed, "closed_session"},
	}
	for _, v := range tlsVersions {
		for _, tt := range tests {
			t.Run(v.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				log, logs := testutil.NewLogger()
				m := newTestManager(t, Config{TLSResumption: ResumptionUser, HandshakeTimeout: 20 * time.Second}, log)
				base := pki.baseConfig(t)
				a := startSession(t, m, base, pki.clientConfig(v.vers, withCache))
				a.b.SetUser("alice")
				data := pki.clientConfig(v.vers, withCache)
				b := startSessionFrom(t, m, base, data, "127.0.0.1")
				timer := time.AfterFunc(200*time.Millisecond, func() { tt.then(b.b) })
				t.Cleanup(func() { timer.Stop() })
				resumed, err := transfer(t, a.b, data)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Accept error %v, want %v\n%s", err, tt.wantErr, logs)
				}
				if err == nil && !resumed {
					t.Fatal("accepted without resumption")
				}
				if tt.wantTicket != "" && !strings.Contains(logs.String(), "ticket="+tt.wantTicket) {
					t.Errorf("log lacks ticket=%s:\n%s", tt.wantTicket, logs)
				}
			})
		}
	}
}
