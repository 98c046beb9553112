package test

// Two real ftpsd nodes behind a real HAProxy, configured from the shipped
// docs/deploy/haproxy.cfg: the balancer on 127.0.0.1, node1 on 127.0.0.2,
// node2 on 127.0.0.3, clients on other 127.x addresses (all loopback).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/ftpsd/ftpsd/test/ftpsclient"
	"github.com/ftpsd/ftpsd/test/ftpsdproc"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

const balancerIP = "127.0.0.1"

// needHAProxy returns haproxy's path (Debian puts it in /usr/sbin), or
// skips (fails under CI=true) as needTool does.
func needHAProxy(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	return needTool(t, "haproxy")
}

// freePort returns a TCP port free on ip right now.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp4", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeBlock returns the first of n consecutive ports free on every ip,
// below the ephemeral range.
func freeBlock(t *testing.T, n int, ips ...string) int {
	t.Helper()
	for range 50 {
		first := 10000 + mrand.IntN(20000)
		ok := true
		for p := first; p < first+n && ok; p++ {
			for _, ip := range ips {
				l, err := net.Listen("tcp4", ip+":"+strconv.Itoa(p))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return first
		}
	}
	t.Fatalf("no block of %d free ports", n)
	return 0
}

// clusterNode is one ftpsd node of the cluster.
type clusterNode struct {
	*service
	name  string
	ip    string
	port  int    // control
	first int    // passive sub-range
	last  int    //
	conf  string // its configuration file's text
}

// nodeConfig is the configuration an administrator writes for a node,
// following the comments of docs/deploy/haproxy.cfg.
func nodeConfig(n *clusterNode, certFile, keyFile, homes string) string {
	return fmt.Sprintf(`[server]
listen = "%s:%d"
state_dir = "state"
trusted_proxies = [%q]

[passive]
ports = "%d-%d"
public_address = %q

[tls]
mode = "files"
cert_file = %q
key_file = %q

[auth]
failure_delay = "1ms"
max_failures = 1000

[log]
format = "json"
level = "debug"

[[users]]
name = %q
password_hash = %q
home = %q
permissions = ["all"]

[[users]]
name = "slow"
password_hash = %q
home = %q
permissions = ["all"]
download_rate = "2MiB"
`, n.ip, n.port, balancerIP, n.first, n.last, balancerIP, certFile, keyFile,
		user, ftpstest.CheapHash(pass), filepath.Join(homes, user),
		ftpstest.CheapHash("slow-secret"), filepath.Join(homes, user))
}

// startHAProxy runs haproxy in the foreground on cfg and stops it by pid
// at cleanup; its output goes to the returned buffer.
func startHAProxy(t *testing.T, bin, cfg string) *testutil.LogBuffer {
	t.Helper()
	out := &testutil.LogBuffer{}
	cmd := exec.Command(bin, "-f", cfg, "-db")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("haproxy: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("haproxy (pid %d) output:\n%s", cmd.Process.Pid, out)
		}
	})
	return out
}

// haproxyConfig rewrites the shipped example for loopback: the balancer's
// and the nodes' addresses and the ports; its timings stay as shipped.
func haproxyConfig(t *testing.T, front int, n1, n2 *clusterNode) string {
	t.Helper()
	shipped, err := os.ReadFile("../docs/deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(shipped)
	for _, r := range []struct{ old, new string }{
		{"203.0.113.10:21", fmt.Sprintf("%s:%d", balancerIP, front)},
		{"203.0.113.10:50000-50049", fmt.Sprintf("%s:%d-%d", balancerIP, n1.first, n1.last)},
		{"203.0.113.10:50050-50099", fmt.Sprintf("%s:%d-%d", balancerIP, n2.first, n2.last)},
		{"10.0.0.11:21", fmt.Sprintf("%s:%d", n1.ip, n1.port)},
		{"10.0.0.12:21", fmt.Sprintf("%s:%d", n2.ip, n2.port)},
		{"10.0.0.11", n1.ip},
		{"10.0.0.12", n2.ip},
	} {
		if !strings.Contains(cfg, r.old) {
			t.Fatalf("docs/deploy/haproxy.cfg no longer holds %q: update this test with it", r.old)
		}
		cfg = strings.ReplaceAll(cfg, r.old, r.new)
	}
	return cfg
}

// remoteIs matches a record of a session from the client address ip.
func remoteIs(msg, ip string) func(logRec) bool {
	return func(r logRec) bool { return r.str("msg") == msg && strings.HasPrefix(r.str("remote"), ip+":") }
}

// dialFromVia opens a TCP connection from the local address src to addr
// and sends pre (a PROXY header) when it is not nil.
func dialFromVia(t *testing.T, src, addr string, pre []byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp4", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	if pre != nil {
		c.Write(pre)
	}
	return c
}

// TestClusterHAProxy stands up the shipped two-node example on loopback
// and drives it with lftp, curl and the raw client from several source
// addresses: every transfer succeeds with TLS resumption required, both
// nodes serve, each logs the real client addresses, a data connection
// from another address is refused, a forged PROXY header straight to a
// node is refused, and when a node dies new sessions go to the other
// while its transfers go on.
func TestClusterHAProxy(t *testing.T) {
	t.Parallel()
	haproxy := needHAProxy(t)
	needTool(t, "lftp")
	needTool(t, "curl")
	bin := ftpsdproc.Build(t)

	dir := t.TempDir()
	pki := testutil.NewPKI(t)
	caFile, certFile, keyFile := pki.WriteFiles(t, dir)
	if err := os.Chmod(keyFile, 0o644); err != nil { // the nodes run as nobody
		t.Fatal(err)
	}
	if err := ftpsdproc.Reach(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	// One home on "shared storage" for both nodes.
	homes := filepath.Join(dir, "homes")
	small := testutil.Payload(300<<10, 1)
	big := testutil.Payload(6<<20, 2) // 3 s at the slow user's 2 MiB/s
	testutil.WriteFile(t, filepath.Join(homes, user), "small.bin", small)
	testutil.WriteFile(t, filepath.Join(homes, user), "big.bin", big)

	front := freePort(t, balancerIP)
	block := freeBlock(t, 20, balancerIP, "127.0.0.2", "127.0.0.3")
	nodes := []*clusterNode{
		{name: "node1", ip: "127.0.0.2", port: freePort(t, "127.0.0.2"), first: block, last: block + 9},
		{name: "node2", ip: "127.0.0.3", port: freePort(t, "127.0.0.3"), first: block + 10, last: block + 19},
	}
	for _, n := range nodes {
		nd := filepath.Join(dir, n.name)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		n.conf = nodeConfig(n, certFile, keyFile, homes)
		path := filepath.Join(nd, "ftpsd.toml")
		if err := os.WriteFile(path, []byte(n.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ftpsdproc.Own(nd, homes); err != nil {
			t.Fatal(err)
		}
		p, err := ftpsdproc.Start(t, bin, path, ftpsdproc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		n.service = &service{Proc: p, bin: bin, dir: nd, path: path, pool: pki.CAPool}
	}
	n1, n2 := nodes[0], nodes[1]
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(haproxyConfig(t, front, n1, n2)), 0o644); err != nil {
		t.Fatal(err)
	}
	hlog := startHAProxy(t, haproxy, cfgPath)
	frontAddr := fmt.Sprintf("%s:%d", balancerIP, front)

	// The health checks speak the PROXY protocol: each node answers them
	// as probes from the balancer (LOCAL header), logged at debug level.
	for _, n := range nodes {
		n.await(t, 0, func(r logRec) bool {
			return r.str("level") == "DEBUG" && remoteIs("session closed", balancerIP)(r)
		})
	}

	// Which node serves which client address (balance source): probe
	// addresses until each node has two.
	byNode := map[*clusterNode][]string{}
	for i := 11; i < 60 && (len(byNode[n1]) < 2 || len(byNode[n2]) < 2); i++ {
		ip := "127.0.0." + strconv.Itoa(i)
		c := ftpstest.NewConn(t, dialFromVia(t, ip, frontAddr, nil))
		c.Cmd(221, "QUIT")
		c.Close()
		var served *clusterNode
		testutil.WaitFor(t, 10*time.Second, "the session of "+ip+" on a node", func() bool {
			for _, n := range nodes {
				if n.count(0, remoteIs("session closed", ip)) > 0 {
					served = n
					return true
				}
			}
			return false
		})
		if len(byNode[served]) < 2 {
			byNode[served] = append(byNode[served], ip)
		}
	}
	if len(byNode[n1]) < 2 || len(byNode[n2]) < 2 {
		t.Fatalf("balance source spread 49 addresses as %v: want both nodes used", byNode)
	}
	t.Logf("client addresses by node: node1 %v, node2 %v", byNode[n1], byNode[n2])

	// lftp (GnuTLS) and curl (OpenSSL, TLS 1.3) through the balancer, from
	// addresses of each node: downloads, uploads, a listing. The nodes
	// require TLS resumption on data connections (the default).
	work := t.TempDir()
	runLftp := func(src string, cmds ...string) error {
		script := append([]string{
			"set cmd:fail-exit yes", "set ftp:ssl-force true", "set ftp:ssl-protect-data true",
			"set ftp:ssl-protect-list true", "set ssl:ca-file " + caFile, "set ssl:verify-certificate yes",
			"set net:max-retries 1", "set net:timeout 10", "set ftp:passive-mode true", "set xfer:clobber on",
			"set net:socket-bind-ipv4 " + src,
			fmt.Sprintf("open -u %s,%s ftp://%s", user, pass, frontAddr),
		}, cmds...)
		_, _, err := runTool(t, work, nil, "lftp", "-d", "-c", strings.Join(script, "; "))
		return err
	}
	curlArgs := func(src, who string, args ...string) []string {
		return append([]string{"--ssl-reqd", "--cacert", caFile, "--tlsv1.3", "--interface", src,
			"--user", who, "--silent", "--show-error", "--max-time", "50"}, args...)
	}
	upload := filepath.Join(work, "up.bin")
	if err := os.WriteFile(upload, small, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		lftpIP, curlIP := byNode[n][0], byNode[n][1]
		got := filepath.Join(work, "lftp-"+n.name+".bin")
		if err := runLftp(lftpIP, "ls", "get small.bin -o "+got, "put "+upload+" -o lftp-"+n.name+".bin"); err != nil {
			t.Errorf("lftp through the balancer to %s: %v", n.name, err)
		}
		testutil.AssertContent(t, got, small)
		testutil.AssertContent(t, filepath.Join(homes, user, "lftp-"+n.name+".bin"), small)

		got = filepath.Join(work, "curl-"+n.name+".bin")
		if _, _, err := runTool(t, work, nil, "curl", curlArgs(curlIP, user+":"+pass,
			"ftp://"+frontAddr+"/small.bin", "-o", got)...); err != nil {
			t.Errorf("curl download through the balancer to %s: %v", n.name, err)
		}
		testutil.AssertContent(t, got, small)
		if _, _, err := runTool(t, work, nil, "curl", curlArgs(curlIP, user+":"+pass,
			"-T", upload, "ftp://"+frontAddr+"/curl-"+n.name+".bin")...); err != nil {
			t.Errorf("curl upload through the balancer to %s: %v", n.name, err)
		}
		testutil.AssertContent(t, filepath.Join(homes, user, "curl-"+n.name+".bin"), small)

		// Each node saw the real client addresses, logged in, and moved
		// data for them; no data connection failed to resume.
		for _, ip := range []string{lftpIP, curlIP} {
			if n.count(0, func(r logRec) bool { return remoteIs("transfer", ip)(r) && r.str("user") == user }) == 0 {
				t.Errorf("%s logged no transfer for the client %s:\n%s", n.name, ip, n.Log())
			}
		}
		if k := n.count(0, msgIs("data connection refused: TLS session not resumed")); k != 0 {
			t.Errorf("%s refused %d data connections for want of TLS resumption", n.name, k)
		}
	}

	// A data connection from another address through the balancer is
	// refused; the client's own then works.
	a := byNode[n1][0]
	c := ftpstest.NewConn(t, dialFromVia(t, a, frontAddr, nil))
	c.Login(ftpstest.ClientTLS(pki.CAPool), user, pass)
	pasv := netip.MustParseAddrPort(c.Pasv())
	if pasv.Addr().String() != balancerIP || int(pasv.Port()) < n1.first || int(pasv.Port()) > n1.last {
		t.Fatalf("PASV from node1 advertised %v, want %s and a port of node1's range %d-%d", pasv, balancerIP, n1.first, n1.last)
	}
	c.Send("RETR small.bin")
	mark := n1.Len()
	thief := dialFromVia(t, "127.0.0.99", pasv.String(), nil)
	n1.await(t, mark, func(r logRec) bool {
		return r.str("msg") == "data connection from a foreign address dropped" && strings.HasPrefix(r.str("peer"), "127.0.0.99:")
	})
	thief.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := thief.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the foreign data connection through the balancer got %d bytes, %v: want it closed", n, err)
	}
	dc, err := ftpsclient.Handshake(t.Context(), dialFromVia(t, a, pasv.String(), nil), c.TLS, 5*time.Second)
	if err != nil {
		t.Fatalf("the client's own data connection: %v", err)
	}
	c.Expect(150)
	if got, err := io.ReadAll(dc); err != nil || testutil.Sum(got) != testutil.Sum(small) {
		t.Errorf("RETR through the balancer after a refused thief: %d bytes, %v", len(got), err)
	}
	dc.Close()
	c.Expect(226)
	c.Cmd(221, "QUIT")

	// Straight to a node, around the balancer, with a forged header that
	// names a client: closed without a byte.
	h, err := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(a), Port: 40000},
		&net.TCPAddr{IP: net.ParseIP(balancerIP), Port: front}).Format()
	if err != nil {
		t.Fatal(err)
	}
	mark = n1.Len()
	forged := dialFromVia(t, "127.0.0.5", fmt.Sprintf("%s:%d", n1.ip, n1.port), h)
	forged.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := forged.Read(make([]byte, 64)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a forged PROXY header straight to node1 got %d bytes, %v: want the connection closed", n, err)
	}
	n1.await(t, mark, func(r logRec) bool {
		return r.str("msg") == "connection refused: not from a trusted proxy (server.trusted_proxies)" &&
			strings.HasPrefix(r.str("source"), "127.0.0.5:")
	})
	if k := n1.count(0, remoteIs("session opened", a)); k == 0 {
		t.Errorf("node1 has no session of %s", a)
	}

	// Kill node2 in the middle of two throttled downloads (one per node).
	type run struct {
		err    error
		stderr string
		out    []byte
	}
	download := func(src string) <-chan run {
		ch := make(chan run, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "curl", curlArgs(src, "slow:slow-secret", "ftp://"+frontAddr+"/big.bin")...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			ch <- run{err, errb.String(), out.Bytes()}
		}()
		return ch
	}
	m1, m2 := n1.Len(), n2.Len()
	on1, on2 := download(byNode[n1][1]), download(byNode[n2][1])
	for _, w := range []struct {
		n    *clusterNode
		mark int
	}{{n1, m1}, {n2, m2}} {
		w.n.await(t, w.mark, func(r logRec) bool { code, _ := r.num("code"); return r.str("msg") == "reply" && code == 150 })
	}
	time.Sleep(500 * time.Millisecond) // a good part of the 3 s still to go
	killed := time.Now()
	n2.signal(t, syscall.SIGKILL)
	// HAProxy marks node2 down (the control check; the passive range
	// tracks it): when, measured meanwhile.
	downAfter := make(chan time.Duration, 1)
	go func() {
		for time.Since(killed) < 20*time.Second {
			if strings.Contains(hlog.String(), "ftp_control/node2 is DOWN") {
				downAfter <- time.Since(killed).Round(10 * time.Millisecond)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(downAfter)
	}()

	// A new session right away, from an address of node2's, before the
	// health check has noticed: HAProxy retries the refused connection,
	// and its last retry (redispatch) goes to node1.
	mark = n1.Len()
	early := runLftp(byNode[n2][0], "get small.bin -o "+filepath.Join(work, "early.bin"))
	earlyDone := time.Since(killed).Round(time.Millisecond)
	if early != nil || n1.count(mark, remoteIs("transfer", byNode[n2][0])) == 0 {
		t.Errorf("a session from %s (node2's) started at the kill was not served by node1: %v", byNode[n2][0], early)
	}
	t.Logf("lftp from %s (node2's) started at the kill: served by node1, done %v after the kill", byNode[n2][0], earlyDone)
	down, ok := <-downAfter
	if !ok {
		t.Fatalf("HAProxy did not mark node2 down within 20s:\n%s", hlog)
	}
	if !strings.Contains(hlog.String(), "ftp_passive_node2/node2 is DOWN") {
		t.Errorf("node2's passive range was not marked down with it:\n%s", hlog)
	}

	r1 := <-on1
	if r1.err != nil || testutil.Sum(r1.out) != testutil.Sum(big) {
		t.Errorf("the download on the surviving node1 failed: %v %s (%d bytes of %d)", r1.err, r1.stderr, len(r1.out), len(big))
	}
	r2 := <-on2
	t.Logf("download on the killed node2: err %v, %q, %d of %d bytes", r2.err, strings.TrimSpace(r2.stderr), len(r2.out), len(big))
	if r2.err == nil {
		t.Errorf("the download on the killed node2 succeeded: the node was not killed mid-transfer")
	}

	// New sessions from node2's addresses go to node1 now.
	for _, ip := range byNode[n2] {
		mark = n1.Len()
		got := filepath.Join(work, "after-"+ip+".bin")
		if err := runLftp(ip, "get small.bin -o "+got); err != nil {
			t.Errorf("lftp from %s after node2 died: %v", ip, err)
		}
		testutil.AssertContent(t, got, small)
		if n1.count(mark, remoteIs("transfer", ip)) == 0 {
			t.Errorf("node1 did not serve %s after node2 died", ip)
		}
	}
	t.Logf("node2 killed: HAProxy marked it down after %v", down)
	if k := n1.count(0, func(r logRec) bool { return strings.HasPrefix(r.str("msg"), "connection refused") }); k != 1 {
		t.Errorf("node1 refused %d connections, want only the forged one", k)
	}
}
