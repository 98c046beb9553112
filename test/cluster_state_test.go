package test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/test/acmetest"
	"github.com/ftpsd/ftpsd/test/ftpsdproc"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
	"github.com/ftpsd/ftpsd/tlsctl"
)

// ticketSecret writes a tls.ticket_key_file (64 random bytes, mode 0600).
func ticketSecret(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ticket.key")
	b := make([]byte, 64)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestClusterTicketResumption: two nodes reading the same ticket_key_file.
// A client logs in on node A (full handshake) and transfers; its next
// control connection lands on node B and resumes A's session; it logs in
// and transfers there with data resumption enforced (its data connections
// resume B's session). A data connection on A that presents the ticket of
// the session on B is refused (its tag names no session of A). A node with
// another secret makes a full handshake, and works.
func TestClusterTicketResumption(t *testing.T) {
	t.Parallel()
	shared, other := ticketSecret(t), ticketSecret(t)
	node := func(secret string) *ftpstest.Server {
		return ftpstest.NewServer(t, ftpstest.Options{TLS: func(c *tlsctl.Config) { c.TicketKeyFile = secret }})
	}
	a, b, c := node(shared), node(shared), node(other)
	pool := x509.NewCertPool() // each test server has its own CA
	for _, s := range []*ftpstest.Server{a, b, c} {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	payload := testutil.Payload(100_000, 11)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			// One client: one session cache for every node (they share
			// the name "localhost"), as a client reconnecting to a
			// balancer's address has.
			client := ftpstest.ClientTLS(pool)
			client.MinVersion, client.MaxVersion = v, v

			onA := a.Login(t, client)
			if onA.ControlState().DidResume {
				t.Fatal("first control connection resumed")
			}
			onA.Xfer("STOR a.bin", payload)
			onA.Cmd(221, "QUIT")

			onB := b.Login(t, client)
			if !onB.ControlState().DidResume {
				t.Fatal("control connection on node B did not resume the session of node A")
			}
			onB.Xfer("STOR b.bin", payload) // fails unless the data connection resumed B's session
			onB.AssertRetr("b.bin", payload)

			// client's cache now holds a ticket of the session on B. A
			// session on A whose data connection presents it is refused.
			victim := a.Login(t, ftpstest.ClientTLS(pool))
			addr := victim.Pasv()
			victim.Send("STOR stolen.bin")
			dc, err := ftpstest.DialData(t, addr, client)
			victim.Expect(150)
			if err == nil {
				if dc.(*tls.Conn).ConnectionState().DidResume {
					t.Error("A resumed the ticket of a session on B on a data connection")
				}
				dc.Write(payload)
				io.ReadAll(dc)
			}
			if msg := victim.Expect(425); !strings.Contains(msg, "TLS session of data connection not resumed") {
				t.Errorf("425 %q", msg)
			}
			testutil.AssertMissing(t, filepath.Join(a.Home(ftpstest.DefaultUser.Name), "stolen.bin"))
			if a.Log.Count(`ticket=closed_session`) == 0 {
				t.Errorf("refusal on A does not name an unknown session's ticket:\n%s", a.Log)
			}
			victim.Xfer("STOR own.bin", payload) // its own ticket still works

			onC := c.Login(t, client)
			if onC.ControlState().DidResume {
				t.Fatal("node C (another secret) resumed a ticket of A or B")
			}
			onC.Xfer("STOR c.bin", payload)
			onC.AssertRetr("c.bin", payload)
		})
	}
}

// TestClusterTwoProcesses: two "ftpsd serve" processes configured as a
// cluster in their TOML files ([tls] ticket_key_file, [cluster] redis).
// A client's second control connection, to the other node, resumes the
// first node's session and transfers; a brute force on node A gets the
// address refused on node B.
func TestClusterTwoProcesses(t *testing.T) {
	r := testutil.StartRedis(t)
	bin := ftpsdproc.Build(t)
	shared := t.TempDir()
	caFile, certFile, keyFile := testutil.NewPKI(t).WriteFiles(t, shared)
	secret := filepath.Join(shared, "ticket.key")
	b := make([]byte, 64)
	rand.Read(b)
	if err := os.WriteFile(secret, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ftpsdproc.Own(shared); err != nil {
		t.Fatal(err)
	}
	const pass = "cluster-pass"
	var nodes []*ftpsdproc.Proc
	for range 2 {
		dir := t.TempDir()
		pasv := acmetest.FreePort(t)
		cfg := fmt.Sprintf(`[server]
listen = "127.0.0.1:0"
state_dir = "state"
[passive]
ports = "%d"
[tls]
mode = "files"
cert_file = %q
key_file = %q
ticket_key_file = %q
[auth]
max_failures = 3
failure_delay = "10ms"
[cluster]
redis = %q
[[users]]
name = "alice"
password_hash = %q
home = "home"
permissions = ["all"]
`, pasv, certFile, keyFile, secret, r.URL(), ftpstest.CheapHash(pass))
		path := filepath.Join(dir, "ftpsd.toml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ftpsdproc.Own(dir); err != nil {
			t.Fatal(err)
		}
		p, err := ftpsdproc.Start(t, bin, path, ftpsdproc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, p)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := ftpstest.ClientTLS(pool)

	onA := ftpstest.Dial(t, nodes[0].Addr)
	onA.Login(client, "alice", pass)
	onA.Xfer("STOR a.bin", []byte("from A"))
	onA.Cmd(221, "QUIT")
	onB := ftpstest.Dial(t, nodes[1].Addr)
	onB.Login(client, "alice", pass)
	if !onB.ControlState().DidResume {
		t.Fatal("the control connection to node B did not resume the session of node A")
	}
	onB.Xfer("STOR b.bin", []byte("from B"))
	onB.Cmd(221, "QUIT")

	login := func(addr, ip, pw string) int {
		c := ftpstest.DialFrom(t, addr, ip)
		defer c.Close()
		c.AuthTLS(ftpstest.ClientTLS(pool))
		c.Cmd(331, "USER alice")
		c.Send("PASS " + pw)
		code, _ := c.Read()
		return code
	}
	for range 3 {
		login(nodes[0].Addr, "127.0.0.41", "wrong")
	}
	if code := login(nodes[1].Addr, "127.0.0.41", pass); code != 421 {
		t.Fatalf("right password on node B after a brute force on node A: %d, want 421", code)
	}
	if code := login(nodes[1].Addr, "127.0.0.42", pass); code != 230 {
		t.Fatalf("right password on node B from another address: %d, want 230", code)
	}
}

// TestClusterBansTwoServers: two in-process servers sharing a real
// redis-server. Wrong passwords sent to node A from one address get that
// address banned on node B (a right password there gets 421); the time for
// the ban to reach B is logged. With Redis stopped, the right password
// still logs in on both nodes; with Redis started again on the same port,
// a new brute force on A is banned on B again.
func TestClusterBansTwoServers(t *testing.T) {
	r := testutil.StartRedis(t)
	const maxFailures = 3
	node := func() *ftpstest.Server {
		s := ftpstest.NewServer(t, ftpstest.Options{Auth: func(c *auth.Config) {
			c.MaxFailures, c.BanDuration = maxFailures, time.Minute
		}})
		if err := s.Auth().JoinCluster(auth.ClusterConfig{Redis: r.URL()}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Auth().Close() })
		return s
	}
	a, b := node(), node()
	user := ftpstest.DefaultUser

	// login sends USER and PASS from ip over TLS and returns the reply code.
	login := func(s *ftpstest.Server, ip, pass string) int {
		c := s.DialFrom(t, ip)
		defer c.Close()
		c.AuthTLS(s.ClientTLS())
		c.Cmd(331, "USER "+user.Name)
		c.Send("PASS " + pass)
		code, _ := c.Read()
		return code
	}
	bruteForce := func(ip string) time.Time {
		var last time.Time
		for i := range maxFailures {
			last = time.Now()
			want := 530
			if i == maxFailures-1 {
				want = 421 // the failure that starts the ban is answered as banned
			}
			if code := login(a, ip, "wrong"); code != want {
				t.Fatalf("wrong password %d on A: %d, want %d", i+1, code, want)
			}
		}
		return last
	}
	bannedOn := func(s *ftpstest.Server, ip string, since time.Time) time.Duration {
		t.Helper()
		k := auth.ClientKey(netip.MustParseAddr(ip))
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			for _, ban := range s.Auth().Bans() {
				if ban.Client == k && !ban.Until.IsZero() {
					return time.Since(since)
				}
			}
		}
		t.Fatalf("%s not banned on the other node 5s after the brute force", ip)
		return 0
	}

	start := bruteForce("127.0.0.21")
	took := bannedOn(b, "127.0.0.21", start)
	t.Logf("ban propagation A -> B: %v after the last failed PASS on A was sent", took)
	if code := login(b, "127.0.0.21", user.Password); code != 421 {
		t.Fatalf("right password on B from the banned address: %d, want 421", code)
	}
	if code := login(b, "127.0.0.22", user.Password); code != 230 {
		t.Fatalf("right password on B from another address: %d, want 230", code)
	}

	r.Stop()
	for _, s := range []*ftpstest.Server{a, b, a, b} {
		begin := time.Now()
		if code := login(s, "127.0.0.23", user.Password); code != 230 {
			t.Fatalf("right password with Redis stopped: %d, want 230", code)
		}
		t.Logf("login with Redis stopped: %v", time.Since(begin))
	}
	a.Log.Wait(t, "redis unreachable", 1, 5*time.Second)

	r.Start()
	a.Log.Wait(t, "redis reachable again", 1, 10*time.Second)
	b.Log.Wait(t, "redis reachable again", 1, 10*time.Second)
	start = bruteForce("127.0.0.24")
	took = bannedOn(b, "127.0.0.24", start)
	t.Logf("ban propagation A -> B after Redis came back: %v", took)
	if code := login(b, "127.0.0.24", user.Password); code != 421 {
		t.Fatalf("right password on B after the recovery: %d, want 421", code)
	}
}
