package bench

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ftpsd/ftpsd/test/ftpsdproc"
	"github.com/ftpsd/ftpsd/test/ftpstest"
	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestMain removes the ftpsd binary BenchmarkServe may have built.
func TestMain(m *testing.M) { os.Exit(ftpsdproc.Main(m)) }

// bulkSizes are the files BenchmarkServe and BenchmarkCeiling move.
var bulkSizes = []struct {
	name string
	n    int64
}{
	{"256MiB", 256 << 20},
	{"1GiB", 1 << 30},
}

// ceilingChunk is what the ceiling's sender hands crypto/tls per Write:
// the server's copy buffer.
const ceilingChunk = 128 << 10

// BenchmarkCeiling is the TLS ceiling of a bulk transfer on this machine:
// a plain crypto/tls server and client in this process, over loopback, TLS
// 1.3 with AES-128-GCM and an ECDSA P-256 certificate, the sender writing
// 128 KiB at a time and the client reading as the benchmarks' FTP client
// does (io.Copy to io.Discard). No FTP, no file: what an FTPS server in Go
// would reach if it cost nothing but TLS and the socket. cpu-s/GiB is the
// CPU time of both ends together (getrusage of this process).
func BenchmarkCeiling(b *testing.B) {
	pki := testutil.NewPKI(b)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{pki.Cert}, MinVersion: tls.VersionTLS13}
	cliCfg := &tls.Config{RootCAs: pki.CAPool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	chunk := testutil.Payload(ceilingChunk, 0)
	for _, size := range bulkSizes {
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(size.n)
			cpu := startCPU()
			for b.Loop() {
				sent := make(chan error, 1)
				go func() {
					c, err := ln.Accept()
					if err != nil {
						sent <- err
						return
					}
					tc := tls.Server(c, srvCfg)
					defer tc.Close()
					for left := size.n; left > 0; left -= ceilingChunk {
						if _, err := tc.Write(chunk[:min(left, ceilingChunk)]); err != nil {
							sent <- err
							return
						}
					}
					sent <- nil
				}()
				c, err := tls.Dial("tcp", ln.Addr().String(), cliCfg)
				if err != nil {
					b.Fatal(err)
				}
				if st := c.ConnectionState(); st.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
					b.Fatalf("negotiated %s, want TLS_AES_128_GCM_SHA256", tls.CipherSuiteName(st.CipherSuite))
				}
				n, err := io.Copy(io.Discard, c)
				c.Close()
				if err := <-sent; err != nil {
					b.Fatal(err)
				}
				if err != nil || n != size.n {
					b.Fatalf("read %d bytes (%v), want %d", n, err, size.n)
				}
			}
			b.ReportMetric(cpu.self()/gib(size.n, b.N), "cpu-s/GiB")
		})
	}
}

// BenchmarkServe measures the real ftpsd binary: "ftpsd serve" in its own
// process (FTPSD_BENCH_BIN, or built from this checkout), with its
// self-signed ECDSA P-256 certificate, against the Go client of these
// benchmarks, one logged-in session, TLS 1.3 and PROT P, each transfer on
// a fresh data connection that resumes the control session. It reports
// the server's CPU time from /proc/PID/stat (user + system, all threads)
// next to the client's (getrusage of this process):
//
//   - RETR and STOR of 256 MiB and 1 GiB: server-cpu-s/GiB. STOR writes a
//     new file each time (in place, no fsync), removed outside the clock.
//   - RETR/4KiB: one EPSV, RETR of a 4 KiB file, resumed data connection,
//     226 per op: server-cpu-µs/op.
//
// Build two binaries and set FTPSD_BENCH_BIN to compare them with the same
// client, interleaved (docs/performance.md).
func BenchmarkServe(b *testing.B) {
	srv := startServe(b)
	c := ftpstest.Dial(b, srv.Addr)
	c.Login(ftpstest.ClientTLS(srv.pool), user, pass)
	c.Cmd(200, "TYPE I")
	if v := c.ControlState().Version; v != tls.VersionTLS13 {
		b.Fatalf("control connection negotiated %s, want TLS 1.3", tls.VersionName(v))
	}
	home := filepath.Join(srv.dir, "home", user)
	for _, size := range bulkSizes {
		name := "file-" + size.name
		b.Run("RETR/"+size.name, func(b *testing.B) {
			writeBig(b, filepath.Join(home, name), size.n)
			defer os.Remove(filepath.Join(home, name))
			b.SetBytes(size.n)
			cpu := srv.startCPU()
			for b.Loop() {
				if n := dataCmd(b, c, "RETR "+name, nil, io.Discard); n != size.n {
					b.Fatalf("RETR got %d bytes, want %d", n, size.n)
				}
			}
			cpu.report(b, size.n)
		})
		b.Run("STOR/"+size.name, func(b *testing.B) {
			b.SetBytes(size.n)
			chunk := testutil.Payload(ceilingChunk, 1)
			cpu := &serveCPU{pid: srv.PID}
			i := 0
			for b.Loop() {
				b.StopTimer()
				os.Remove(filepath.Join(home, "up-"+strconv.Itoa(i-1)))
				cpu.resume()
				b.StartTimer()
				addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Epsv()))
				c.Send("STOR up-" + strconv.Itoa(i))
				dc, err := ftpstest.DialData(b, addr, c.TLS)
				if err != nil {
					b.Fatal(err)
				}
				c.Expect(150)
				for left := size.n; left > 0; left -= ceilingChunk {
					if _, err := dc.Write(chunk[:min(left, ceilingChunk)]); err != nil {
						b.Fatal(err)
					}
				}
				if err := dc.Close(); err != nil {
					b.Fatal(err)
				}
				c.Expect(226)
				b.StopTimer()
				cpu.pause()
				b.StartTimer()
				i++
			}
			os.Remove(filepath.Join(home, "up-"+strconv.Itoa(i-1)))
			cpu.report(b, size.n)
		})
	}
	small := testutil.Payload(4<<10, 2)
	testutil.WriteFile(b, home, "small", small)
	b.Run("RETR/4KiB", func(b *testing.B) {
		cpu := srv.startCPU()
		for b.Loop() {
			if n := dataCmd(b, c, "RETR small", nil, io.Discard); n != int64(len(small)) {
				b.Fatalf("RETR got %d bytes, want %d", n, len(small))
			}
		}
		srvS, cliS := cpu.stop()
		b.ReportMetric(srvS/float64(b.N)*1e6, "server-cpu-µs/op")
		b.ReportMetric(cliS/float64(b.N)*1e6, "client-cpu-µs/op")
	})
	c.Cmd(221, "QUIT")
}

// served is a running "ftpsd serve" for BenchmarkServe.
type served struct {
	*ftpsdproc.Proc
	dir  string
	pool *x509.CertPool
}

// startServe writes a configuration for one user into a new directory and
// starts the server on it.
func startServe(b *testing.B) *served {
	bin := os.Getenv("FTPSD_BENCH_BIN")
	if bin == "" {
		bin = ftpsdproc.Build(b)
	}
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "home", user), 0o755); err != nil {
		b.Fatal(err)
	}
	conf := fmt.Sprintf(`[server]
listen = "127.0.0.1:0"
state_dir = "state"

[passive]
ports = "40000-40999"

[tls]
mode = "self-signed"

[[users]]
name = %q
password_hash = %q
home = "home/%s"
permissions = ["all"]
`, user, ftpstest.CheapHash(pass), user)
	path := filepath.Join(dir, "ftpsd.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := ftpsdproc.Own(dir); err != nil {
		b.Fatal(err)
	}
	if err := ftpsdproc.Reach(bin); err != nil {
		b.Fatal(err)
	}
	p, err := ftpsdproc.Start(b, bin, path, ftpsdproc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, "state", "tls", "self-signed.crt"))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		b.Fatal("no certificate in the self-signed file")
	}
	return &served{Proc: p, dir: dir, pool: pool}
}

// writeBig writes an n-byte file at path (readable and removable by the
// server's user) and reads it once, so that RETR finds it in the page cache.
func writeBig(b *testing.B, path string, n int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	chunk := testutil.Payload(1<<20, 3)
	for left := n; left > 0; left -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := ftpsdproc.Own(path); err != nil {
		b.Fatal(err)
	}
}

// procCPU is the CPU time (user + system) of process pid so far, in
// seconds, from /proc/PID/stat.
func procCPU(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0 // the server exited: the benchmark fails on its own
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// selfCPU is this process's CPU time (user + system) so far, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// cpuClock measures this process's CPU time from its start.
type cpuClock struct{ start float64 }

func startCPU() cpuClock { return cpuClock{selfCPU()} }

func (c cpuClock) self() float64 { return selfCPU() - c.start }

// serveCPU adds up the server's and the client's CPU time over the
// timed parts of a benchmark.
type serveCPU struct {
	pid                int
	running            bool
	srv, cli           float64
	srvStart, cliStart float64
}

func (s *served) startCPU() *serveCPU {
	c := &serveCPU{pid: s.PID}
	c.resume()
	return c
}

func (c *serveCPU) resume() {
	c.srvStart, c.cliStart, c.running = procCPU(c.pid), selfCPU(), true
}

func (c *serveCPU) pause() {
	if c.running {
		c.srv += procCPU(c.pid) - c.srvStart
		c.cli += selfCPU() - c.cliStart
		c.running = false
	}
}

// stop ends the measurement and returns the server's and the client's
// seconds.
func (c *serveCPU) stop() (srv, cli float64) {
	c.pause()
	return c.srv, c.cli
}

func (c *serveCPU) report(b *testing.B, size int64) {
	srv, cli := c.stop()
	b.ReportMetric(srv/gib(size, b.N), "server-cpu-s/GiB")
	b.ReportMetric(cli/gib(size, b.N), "client-cpu-s/GiB")
}

// gib is n bytes times ops, in GiB.
func gib(n int64, ops int) float64 { return float64(n) * float64(ops) / (1 << 30) }
