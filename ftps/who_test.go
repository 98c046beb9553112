package ftps_test

import (
	"bytes"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestSessions: Server.Sessions lists every control session with its user,
// address, TLS state, idle time and running transfer, while that transfer
// moves data on another goroutine (run with -race).
func TestSessions(t *testing.T) {
	t.Parallel()
	s := ftpstest.NewServer(t, ftpstest.Options{Users: []ftpstest.User{
		{Name: "alice", Password: "alice-secret"}, {Name: "bob", Password: "bob-secret"},
	}})
	srv := s.FTPS()
	testutil.WriteFile(t, s.Home("alice"), "big.bin", bytes.Repeat([]byte("x"), 64<<20))

	before := time.Now()
	alice := s.Login(t, s.ClientTLS())
	bob := s.Dial(t)
	bob.Login(s.ClientTLS(), "bob", "bob-secret")
	anon := s.Dial(t) // connected, no TLS, no login
	anonDialed := time.Now()

	// Readers from another goroutine all along, for the race detector.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				srv.Sessions()
				time.Sleep(time.Millisecond)
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	addr := alice.Pasv()
	alice.Send("RETR big.bin")
	dc := alice.OpenData(addr)
	if _, err := io.ReadFull(dc, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read the start of the transfer: %v", err)
	}
	// The client now reads no more: the transfer stays running.

	want := []struct {
		conn *ftpstest.Conn
		user string
		tls  bool
		xfer string
	}{
		{alice, "alice", true, "RETR /big.bin"},
		{bob, "bob", true, ""},
		{anon, "", false, ""},
	}
	got := srv.Sessions()
	if len(got) != len(want) {
		t.Fatalf("Sessions() = %+v, want %d sessions", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		client := netip.MustParseAddrPort(w.conn.LocalAddr().String())
		if g.User != w.user || g.TLS != w.tls || g.Client != client {
			t.Errorf("session %d: user %q, tls %t, client %v; want %q, %t, %v", i, g.User, g.TLS, g.Client, w.user, w.tls, client)
		}
		if i > 0 && g.ID <= got[i-1].ID {
			t.Errorf("session %d: id %d after %d: not in connection order", i, g.ID, got[i-1].ID)
		}
		if g.Since.Before(before) || g.Since.After(time.Now()) || g.Idle < 0 {
			t.Errorf("session %d: since %v, idle %v; want since the test started, idle >= 0", i, g.Since, g.Idle)
		}
		switch {
		case w.xfer == "" && g.Transfer != nil:
			t.Errorf("session %d: transfer %+v, want none", i, *g.Transfer)
		case w.xfer != "" && g.Transfer == nil:
			t.Errorf("session %d: no transfer, want %s", i, w.xfer)
		case w.xfer != "":
			x := g.Transfer
			if x.Op != w.xfer || x.Upload || x.Bytes < 1<<20 || x.Started.Before(g.Since) {
				t.Errorf("session %d: transfer %+v; want %s, a download, at least 1 MiB moved, started after login", i, *x, w.xfer)
			}
		}
	}

	// Idle counts from the last command: bob's NOOP resets it; anon has
	// sent none since it connected.
	noop := time.Now()
	bob.Cmd(200, "NOOP")
	asked := time.Now()
	next := srv.Sessions()
	if bobIdle, since := next[1].Idle, time.Since(noop); bobIdle > since {
		t.Errorf("bob idle %v, but its NOOP went out %v ago: not reset", bobIdle, since)
	}
	if anonIdle, least := next[2].Idle, asked.Sub(anonDialed); anonIdle < least {
		t.Errorf("anon idle %v, but it has been silent for at least %v", anonIdle, least)
	}

	// Bytes grow as the client reads; ABOR ends the transfer.
	if _, err := io.ReadFull(dc, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the byte count to grow", func() bool {
		x := srv.Sessions()[0].Transfer
		return x != nil && x.Bytes >= 2<<20 && x.Bytes > got[0].Transfer.Bytes
	})
	alice.Abort()
	if x := srv.Sessions()[0].Transfer; x != nil {
		t.Errorf("transfer after ABOR: %+v, want none", *x)
	}

	anon.Cmd(221, "QUIT")
	testutil.WaitFor(t, 5*time.Second, "the closed session to leave the list", func() bool { return len(srv.Sessions()) == 2 })
}
