package main

// The four servers: packages, configuration, start and stop. Every server
// gets the same certificate (ECDSA P-256), TLS 1.3 only where it can be
// set (the client offers only TLS 1.3 anyway), TLS required for logins and
// for data (PROT P), session resumption on data connections required where
// the server has the setting, a passive port range of its own on
// 127.0.0.1, and one user, ftpsdbench, whose home holds the test files.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/ftpsd/ftpsd/test/ftpsdproc"
)

// benchUser is the account on every server; for vsftpd it is a real local
// user (vsftpd has no virtual users without PAM modules of its own).
const benchUser = "ftpsdbench"

// pamService is the PAM service vsftpd authenticates against: pam_unix
// only (Debian's /etc/pam.d/vsftpd comes with the package, which is not
// installed).
const pamService = "ftpsd-bench"

// debs are the Debian packages to unpack. ProFTPD's core links libraries
// that a base system lacks; mod_tls is in proftpd-mod-crypto.
var debs = []string{
	"vsftpd", "pure-ftpd", "proftpd-core", "proftpd-mod-crypto",
	"libhiredis0.14", "libmemcached11", "libmemcachedutil2", "libhashkit2", "libpcre2-posix3",
}

// env is what every server shares.
type env struct {
	o        *options
	work     string
	root     string // the unpacked packages
	libs     string // LD_LIBRARY_PATH for them
	certFile string // ECDSA P-256, for 127.0.0.1 and localhost
	keyFile  string
	pemFile  string // key and certificate in one file (Pure-FTPd)
	sslConf  string // OPENSSL_CONF for -same-suite, else ""
	pass     string
	uid, gid int // of benchUser (the C servers), or of ftpsd's user
	loadBin  string
	ftpsdBin string
	versions map[string]string // package versions, by server key
	bigFile  string            // hard-linked into every home
	smallBuf []byte
}

// server is one running server.
type server struct {
	key   string
	title string // "vsftpd 3.0.3"
	port  int
	home  string
	dir   string
	cmd   *exec.Cmd
	acct  *accounting
	log   *os.File
	exit  chan error
	notes []string // settings worth reporting
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Ports: control port and a passive range of 500 per server, so that
// thousands of short data connections never wait for a port in TIME_WAIT.
func ports(key string) (control, pasvLo, pasvHi int) {
	for i, k := range serverKeys {
		if k == key {
			return 21210 + i, 40000 + 500*i, 40000 + 500*i + 499
		}
	}
	panic("unknown server " + key)
}

// unpack downloads and unpacks the packages into work/pkgs/root, once.
func (e *env) unpack(ctx context.Context) error {
	pkgs := filepath.Join(e.work, "pkgs")
	e.root = filepath.Join(pkgs, "root")
	e.libs = filepath.Join(e.root, "usr/lib/x86_64-linux-gnu")
	if err := os.MkdirAll(pkgs, 0o755); err != nil {
		return err
	}
	have, _ := filepath.Glob(filepath.Join(pkgs, "*.deb"))
	if len(have) < len(debs) {
		logf("downloading %s (apt-get download)", strings.Join(debs, " "))
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, debs...)...)
		cmd.Dir = pkgs
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download: %v\n%s(run apt-get update first?)", err, out)
		}
	}
	debFiles, _ := filepath.Glob(filepath.Join(pkgs, "*.deb"))
	e.versions = map[string]string{}
	for _, d := range debFiles {
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", d, e.root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %v\n%s", d, err, out)
		}
		out, err := exec.CommandContext(ctx, "dpkg-deb", "-f", d, "Package", "Version").Output()
		if err != nil {
			return err
		}
		var name, ver string
		for line := range strings.SplitSeq(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "Package: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "Version: "); ok {
				ver = v
			}
		}
		switch name {
		case "vsftpd":
			e.versions["vsftpd"] = ver
		case "pure-ftpd":
			e.versions["pureftpd"] = ver
		case "proftpd-core":
			e.versions["proftpd"] = ver
		}
	}
	// Every library the binaries need must resolve now, or the server
	// would die at start with a less clear message.
	for _, bin := range []string{"usr/sbin/vsftpd", "usr/sbin/pure-ftpd", "usr/sbin/proftpd", "usr/lib/proftpd/mod_tls.so"} {
		cmd := exec.CommandContext(ctx, "ldd", filepath.Join(e.root, bin))
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+e.libs)
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("ldd %s: %v", bin, err)
		}
		if strings.Contains(string(out), "not found") {
			return fmt.Errorf("%s needs libraries that are neither installed nor unpacked:\n%s", bin, out)
		}
	}
	return nil
}

// makeCert writes a fresh ECDSA P-256 certificate for 127.0.0.1 and
// localhost, the one certificate of every server.
func (e *env) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.work, "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	e.certFile, e.keyFile, e.pemFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "both.pem")
	// The key is readable by all: ftpsd reads it as nobody, and this is a
	// throwaway certificate of a benchmark on loopback.
	for f, b := range map[string][]byte{e.certFile: certPEM, e.keyFile: keyPEM, e.pemFile: append(append([]byte{}, keyPEM...), certPEM...)} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			return err
		}
	}
	if e.o.sameSuite {
		// vsftpd and Pure-FTPd set only the TLS 1.2 cipher list
		// (SSL_CTX_set_cipher_list); OpenSSL takes TLS 1.3 suites from
		// the "Ciphersuites" of its configuration's system_default.
		e.sslConf = filepath.Join(dir, "openssl.cnf")
		conf := "openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n[ssl_sect]\nsystem_default = system_default_sect\n" +
			"[system_default_sect]\nCiphersuites = TLS_AES_128_GCM_SHA256\n"
		if err := os.WriteFile(e.sslConf, []byte(conf), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// makeUser creates benchUser (a local user, for vsftpd; the other C
// servers run its sessions under its uid too) and sets its password, and
// the PAM service for vsftpd.
func (e *env) makeUser(ctx context.Context) error {
	if _, err := user.Lookup(benchUser); err != nil {
		logf("creating the local user %s (no login shell, no home of its own)", benchUser)
		out, err := exec.CommandContext(ctx, "useradd", "--no-create-home", "--home-dir", filepath.Join(e.work, "vsftpd", "home"),
			"--shell", "/usr/sbin/nologin", "--comment", "ftpsd compare benchmark", benchUser).CombinedOutput()
		if err != nil {
			return fmt.Errorf("useradd %s: %v\n%s", benchUser, err, out)
		}
	}
	u, err := user.Lookup(benchUser)
	if err != nil {
		return err
	}
	e.uid, _ = strconv.Atoi(u.Uid)
	e.gid, _ = strconv.Atoi(u.Gid)
	cmd := exec.CommandContext(ctx, "chpasswd")
	cmd.Stdin = strings.NewReader(benchUser + ":" + e.pass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chpasswd: %v\n%s", err, out)
	}
	pam := "# ftpsd test/bench/compare: vsftpd's logins, pam_unix only\n" +
		"auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n"
	return os.WriteFile(filepath.Join("/etc/pam.d", pamService), []byte(pam), 0o644)
}

// makeHome creates dir/home with the test files: big.bin (a hard link of
// the shared file, so that all servers read the same cached pages),
// small.bin (4 KiB) and list1000/ with 1,000 empty files. The home belongs
// to uid:gid, the files to root (readable by all).
func (e *env) makeHome(home string, uid, gid int) error {
	if err := os.RemoveAll(home); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(home, "list1000"), 0o755); err != nil {
		return err
	}
	if err := os.Link(e.bigFile, filepath.Join(home, "big.bin")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(home, "small.bin"), e.smallBuf, 0o644); err != nil {
		return err
	}
	for i := range 1000 {
		f := filepath.Join(home, "list1000", fmt.Sprintf("file-%04d.dat", i))
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return err
		}
	}
	return os.Chown(home, uid, gid)
}

// makeBigFile writes the file every RETR reads, once per size.
func (e *env) makeBigFile() error {
	e.bigFile = filepath.Join(e.work, "data", fmt.Sprintf("big-%d.bin", e.o.bigSize))
	e.smallBuf = make([]byte, 4096)
	rand.Read(e.smallBuf)
	if fi, err := os.Stat(e.bigFile); err == nil && fi.Size() == e.o.bigSize {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(e.bigFile), 0o755); err != nil {
		return err
	}
	f, err := os.Create(e.bigFile)
	if err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	rand.Read(block) // incompressible, not that anything compresses here
	for n := int64(0); n < e.o.bigSize; n += int64(len(block)) {
		if _, err := f.Write(block[:min(int64(len(block)), e.o.bigSize-n)]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setup writes the server's configuration and home.
func (e *env) setup(ctx context.Context, key string) (*server, error) {
	port, lo, hi := ports(key)
	s := &server{key: key, port: port, dir: filepath.Join(e.work, key)}
	s.home = filepath.Join(s.dir, "home")
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	if err := checkFree(port); err != nil {
		return nil, err
	}
	sbin := func(name string) string { return filepath.Join(e.root, "usr/sbin", name) }
	write := func(name, text string) (string, error) {
		p := filepath.Join(s.dir, name)
		return p, os.WriteFile(p, []byte(text), 0o644)
	}
	var args []string
	var err error
	switch key {
	case "vsftpd":
		s.title = "vsftpd " + upstream(e.versions["vsftpd"])
		if err := e.makeHome(s.home, e.uid, e.gid); err != nil {
			return nil, err
		}
		empty := filepath.Join(s.dir, "empty") // secure_chroot_dir: root's, not writable
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf(`# generated by ftpsd test/bench/compare
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=%d
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
pam_service_name=%s
secure_chroot_dir=%s
chroot_local_user=NO
seccomp_sandbox=NO
pasv_enable=YES
pasv_min_port=%d
pasv_max_port=%d
max_clients=0
max_per_ip=0
xferlog_enable=NO
dirmessage_enable=NO
use_localtime=NO
ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=YES
force_local_data_ssl=YES
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
require_ssl_reuse=YES
ssl_request_cert=NO
ssl_ciphers=HIGH
rsa_cert_file=%s
rsa_private_key_file=%s
idle_session_timeout=900
data_connection_timeout=300
vsftpd_log_file=%s
`, port, pamService, empty, lo, hi, e.certFile, e.keyFile, filepath.Join(s.dir, "vsftpd.log"))
		p, err := write("vsftpd.conf", conf)
		if err != nil {
			return nil, err
		}
		args = []string{sbin("vsftpd"), p}
		s.notes = append(s.notes, "require_ssl_reuse=YES (data connections must resume the control session)", "no chroot (vsftpd refuses a writable one)", "password: /etc/shadow via pam_unix ("+shadowScheme(benchUser)+")")
	case "pureftpd":
		s.title = "Pure-FTPd " + upstream(e.versions["pureftpd"])
		if err := e.makeHome(s.home, e.uid, e.gid); err != nil {
			return nil, err
		}
		pw := filepath.Join(s.dir, "pureftpd.passwd")
		pdb := filepath.Join(s.dir, "pureftpd.pdb")
		os.Remove(pw)
		cmd := exec.CommandContext(ctx, filepath.Join(e.root, "usr/bin/pure-pw"), "useradd", benchUser,
			"-f", pw, "-F", pdb, "-u", strconv.Itoa(e.uid), "-g", strconv.Itoa(e.gid), "-d", s.home, "-m")
		cmd.Stdin = strings.NewReader(e.pass + "\n" + e.pass + "\n")
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+e.libs)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pure-pw useradd: %v\n%s", err, out)
		}
		// pure-pw's own argon2id (m=8 MiB, t=511 here: about 2 s a
		// login) would make the login figures about the hash alone;
		// ftpsd's parameters instead, with one lane (libsodium computes
		// one).
		if err := replacePureHash(pw, argon2idPHC(e.pass)); err != nil {
			return nil, err
		}
		mkdb := exec.CommandContext(ctx, filepath.Join(e.root, "usr/bin/pure-pw"), "mkdb", pdb, "-f", pw)
		mkdb.Env = cmd.Env
		if out, err := mkdb.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pure-pw mkdb: %v\n%s", err, out)
		}
		// -Y 3: TLS required for the control connection and for data.
		args = []string{sbin("pure-ftpd"),
			"-S", fmt.Sprintf("127.0.0.1,%d", port), "-p", fmt.Sprintf("%d:%d", lo, hi),
			"-l", "puredb:" + pdb, "-E", "-H", "-A", "-u", "1",
			"-c", "5000", "-C", "5000", "-I", "15",
			"-Y", "3", "-2", e.certFile + "," + e.keyFile,
		}
		s.notes = append(s.notes, "-Y 3 (TLS for control and data); it has no setting to require session resumption and does not check it", "password: puredb virtual user, argon2id m=64 MiB, t=3, p=1 (ftpsd's cost; verified by libsodium)")
	case "proftpd":
		s.title = "ProFTPD " + upstream(e.versions["proftpd"])
		if err := e.makeHome(s.home, e.uid, e.gid); err != nil {
			return nil, err
		}
		cmdHash := exec.CommandContext(ctx, "openssl", "passwd", "-6", "-stdin")
		cmdHash.Stdin = strings.NewReader(e.pass + "\n")
		hash, err := cmdHash.Output()
		if err != nil {
			return nil, fmt.Errorf("openssl passwd: %v", err)
		}
		if _, err := write("passwd", fmt.Sprintf("%s:%s:%d:%d::%s:/bin/sh\n", benchUser, strings.TrimSpace(string(hash)), e.uid, e.gid, s.home)); err != nil {
			return nil, err
		}
		os.Chmod(filepath.Join(s.dir, "passwd"), 0o600)
		suite := ""
		if e.o.sameSuite {
			suite = "TLSCipherSuite TLSv1.3 TLS_AES_128_GCM_SHA256\n"
		}
		conf := fmt.Sprintf(`# generated by ftpsd test/bench/compare
ModulePath %s
ModuleControlsACLs insmod,rmmod allow user root
LoadModule mod_tls.c
ServerName "ftpsd compare"
ServerType standalone
DefaultServer on
DefaultAddress 127.0.0.1
SocketBindTight on
Port %d
PassivePorts %d %d
UseIPv6 off
User nobody
Group nogroup
Umask 022
MaxInstances 5000
MaxLoginAttempts 10
TimeoutIdle 900
UseReverseDNS off
WtmpLog off
ScoreboardFile %s
PidFile %s
DelayTable none
SystemLog %s
AuthOrder mod_auth_file.c
AuthUserFile %s
AuthPAM off
RequireValidShell off
DefaultRoot ~
AllowOverwrite on
TLSEngine on
TLSRequired on
TLSProtocol TLSv1.3
TLSECCertificateFile %s
TLSECCertificateKeyFile %s
TLSVerifyClient off
TLSSessionTickets on
TLSLog %s
%s`, filepath.Join(e.root, "usr/lib/proftpd"), port, lo, hi,
			filepath.Join(s.dir, "scoreboard"), filepath.Join(s.dir, "proftpd.pid"), filepath.Join(s.dir, "proftpd.log"),
			filepath.Join(s.dir, "passwd"), e.certFile, e.keyFile, filepath.Join(s.dir, "tls.log"), suite)
		p, err := write("proftpd.conf", conf)
		if err != nil {
			return nil, err
		}
		args = []string{sbin("proftpd"), "-n", "-q", "-c", p}
		s.notes = append(s.notes, "TLSRequired on; TLSOptions without NoSessionReuseRequired, so data connections must resume the control session; TLSSessionTickets on", "password: AuthUserFile, SHA-512 crypt")
	case "ftpsd":
		s.title = "ftpsd"
		uid := ftpsdproc.UID()
		if err := e.makeHome(s.home, uid, uid); err != nil {
			return nil, err
		}
		state := filepath.Join(s.dir, "state")
		os.RemoveAll(state)
		if err := os.MkdirAll(state, 0o700); err != nil {
			return nil, err
		}
		if err := ftpsdproc.Own(state); err != nil {
			return nil, err
		}
		if err := ftpsdproc.Reach(e.ftpsdBin, e.certFile, e.keyFile, s.home); err != nil {
			return nil, err
		}
		hash, err := e.ftpsdHash(ctx)
		if err != nil {
			return nil, err
		}
		limit := max(e.o.idle+50, 100)
		conf := fmt.Sprintf(`# generated by ftpsd test/bench/compare
[server]
listen = "127.0.0.1:%d"
state_dir = %q
max_connections = %d
max_connections_per_ip = %d
max_prelogin_connections = %d
login_timeout = "10m"
idle_timeout = "15m"

[tls]
mode = "files"
cert_file = %q
key_file = %q
min_version = "1.3"

[passive]
ports = "%d-%d"
tls_resumption = "required"

[auth]
max_failures = 1000

[limits]
max_sessions = 0

[log]
level = "info"
file = %q

[[users]]
name = %q
password_hash = %q
home = %q
permissions = ["all"]
`, port, state, limit, limit, limit, e.certFile, e.keyFile, lo, hi,
			filepath.Join(state, "ftpsd.log"), benchUser, hash, s.home)
		p, err := write("ftpsd.toml", conf)
		if err != nil {
			return nil, err
		}
		args = []string{e.ftpsdBin, "serve", "-config", p}
		s.notes = append(s.notes, `tls_resumption = "required", min_version = "1.3"`, "password: argon2id from ftpsd hash-password (m=64 MiB, t=3, p=2)", fmt.Sprintf("max_prelogin_connections = %d, login_timeout = 10m, so that %d simultaneous logins are not turned away", limit, e.o.idle))
	}
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Dir = s.dir
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH=" + e.libs}
	if e.sslConf != "" && key != "ftpsd" {
		s.cmd.Env = append(s.cmd.Env, "OPENSSL_CONF="+e.sslConf)
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if key == "ftpsd" {
		ftpsdproc.Prepare(s.cmd) // as nobody when we are root
		s.cmd.SysProcAttr.Setpgid = true
	}
	return s, nil
}

// ftpsdHash hashes the password with "ftpsd hash-password": the
// production parameters.
func (e *env) ftpsdHash(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, e.ftpsdBin, "hash-password")
	cmd.Stdin = strings.NewReader(e.pass)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ftpsd hash-password: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// start runs the server, puts it in its own cgroup and waits for its
// greeting.
func (s *server) start(logDir string) error {
	var err error
	s.log, err = os.Create(filepath.Join(logDir, s.key+".out"))
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("%s: %v", s.key, err)
	}
	s.acct = newAccounting(s.cmd.Process.Pid, s.key)
	s.exit = make(chan error, 1)
	go func() { s.exit <- s.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-s.exit:
			s.exit <- err
			return fmt.Errorf("%s exited at start (%v); see %s", s.key, err, s.log.Name())
		default:
		}
		if greeting(s.addr()) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no 220 greeting on %s within 15s; see %s", s.key, s.addr(), s.log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// greeting connects and reads the first line, expecting 220.
func greeting(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q", line)
	}
	c.Write([]byte("QUIT\r\n"))
	return nil
}

// stop ends the server's process group (its master and the session
// processes it forked) by the master's pid.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil || s.exit == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.exit
	}
	// Session processes that outlived the master (the group is theirs
	// too unless they left it).
	syscall.Kill(-pgid, syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	s.acct.close()
	s.log.Close()
}

// checkFree fails when something already listens on the port.
func checkFree(port int) error {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
	if err != nil {
		return fmt.Errorf("port %d is taken (another compare run, or a leftover server?): %w", port, err)
	}
	return ln.Close()
}

// upstream strips the Debian revision: "1.3.8+dfsg-4+deb12u5" -> "1.3.8".
func upstream(v string) string {
	if i := strings.IndexAny(v, "+-"); i > 0 {
		return v[:i]
	}
	return v
}

// shadowScheme names the hash scheme of a local user's password.
func shadowScheme(name string) string {
	b, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 1 && f[0] == name {
			switch {
			case strings.HasPrefix(f[1], "$y$"):
				return "yescrypt"
			case strings.HasPrefix(f[1], "$6$"):
				return "SHA-512 crypt"
			case strings.HasPrefix(f[1], "$2"):
				return "bcrypt"
			}
			return "other"
		}
	}
	return "unknown"
}

var errNoRoot = errors.New("needs root: the C servers start as root, and a local user and a PAM service are created for vsftpd (use -servers ftpsd to measure ftpsd alone)")

// argon2idPHC hashes pass with argon2id m=64 MiB, t=3, p=1 in the PHC
// form libsodium's crypto_pwhash_str_verify reads.
func argon2idPHC(pass string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pass), salt, 3, 64<<10, 1, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=1$%s$%s", enc.EncodeToString(salt), enc.EncodeToString(key))
}

// replacePureHash puts hash in the password field of the only line of a
// pure-pw passwd file.
func replacePureHash(file, hash string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	f := strings.SplitN(strings.TrimRight(string(b), "\n"), ":", 3)
	if len(f) != 3 {
		return fmt.Errorf("%s: not a pure-pw passwd line", file)
	}
	return os.WriteFile(file, []byte(f[0]+":"+hash+":"+f[2]+"\n"), 0o600)
}
