package tlsctl

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// expiryWarnBefore: a served certificate closer than this to its end is
	// logged at Warn (at Error once it has expired).
	expiryWarnBefore = 14 * 24 * time.Hour
	// expiryRelog is how often a still-expiring certificate is logged again.
	expiryRelog = 24 * time.Hour
	// maxSettle bounds the wait for the second file of a pair replaced
	// file by file.
	maxSettle = time.Second
)

// filesSource serves a certificate and key read from PEM files. It polls
// the files every Config.ReloadInterval and swaps in a new pair when their
// content changed and parses; a broken replacement is logged and the
// previous certificate stays in service.
type filesSource struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger

	cur atomic.Pointer[loadedCert]

	// Owned by New until the poll goroutine starts, then by that goroutine.
	lastSum     [sha256.Size]byte // content of the files last tried
	readFailing bool              // the last poll could not read the files
	expLevel    slog.Level        // level of the last expiry log line, 0 if none
	expLogged   time.Time         // when it was written

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// newFilesSource loads the files (failing with an error that names the key
// and the file) and starts polling them.
func newFilesSource(cfg Config, log *slog.Logger) (*filesSource, error) {
	s := &filesSource{
		certFile: cfg.CertFile,
		keyFile:  cfg.KeyFile,
		interval: cfg.ReloadInterval,
		log:      log,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	certPEM, keyPEM, err := s.read()
	if err != nil {
		return nil, err
	}
	lc, err := parseCertFiles(s.certFile, s.keyFile, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	s.cur.Store(lc)
	s.lastSum = contentSum(certPEM, keyPEM)
	log.Info("loaded certificate", "file", s.certFile, "names", lc.info.Names,
		"sha256", lc.info.SHA256, "not_after", lc.info.NotAfter)
	s.checkExpiry(time.Now())
	go s.run()
	return s, nil
}

// GetCertificate returns the current certificate whatever the hello asks
// for: the files hold one certificate, and clients that connect by IP send
// no SNI at all.
func (s *filesSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().cert, nil
}

// Info describes the current certificate.
func (s *filesSource) Info() CertInfo { return s.cur.Load().info.clone() }

// Close stops polling and waits for the poll goroutine to end.
func (s *filesSource) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *filesSource) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.poll(now)
		}
	}
}

// poll reloads the pair if its content changed. Content rather than mtime
// is compared: tools that preserve mtimes (cp -p, rsync -t) and symlink
// swaps (Kubernetes secrets) are caught, and the files are small.
func (s *filesSource) poll(now time.Time) {
	r := s.attempt()
	if r.readErr != nil || r.parseErr != nil {
		// Tools often replace the two files one after the other (certbot
		// swaps two symlinks) or rewrite a file in place; a poll in between
		// sees a missing, partial or mismatched pair. Look once more,
		// shortly after, before calling it broken.
		if !s.settle() {
			return
		}
		r = s.attempt()
	}
	switch {
	case r.readErr != nil:
		if !s.readFailing {
			s.log.Error("cannot read certificate files; keeping the current certificate",
				"err", r.readErr, "sha256", s.cur.Load().info.SHA256)
			s.readFailing = true
		}
		return
	case !r.changed:
	case r.parseErr != nil:
		s.log.Error("certificate files changed but cannot be used; keeping the current certificate",
			"err", r.parseErr, "sha256", s.cur.Load().info.SHA256)
	default:
		old := s.cur.Swap(r.lc)
		s.log.Info("reloaded certificate", "file", s.certFile, "names", r.lc.info.Names,
			"sha256", r.lc.info.SHA256, "old_sha256", old.info.SHA256, "not_after", r.lc.info.NotAfter)
		s.expLevel = 0
	}
	s.readFailing = false
	if r.changed {
		s.lastSum = r.sum // a broken content is reported once, not at every poll
	}
	s.checkExpiry(now)
}

// attemptResult is what one look at the files found.
type attemptResult struct {
	readErr  error
	changed  bool              // content differs from lastSum
	sum      [sha256.Size]byte // of the content, if read
	lc       *loadedCert       // parsed, if changed and valid
	parseErr error             // if changed and invalid
}

// attempt reads the files and parses them if their content changed.
func (s *filesSource) attempt() attemptResult {
	certPEM, keyPEM, err := s.read()
	if err != nil {
		return attemptResult{readErr: err}
	}
	r := attemptResult{sum: contentSum(certPEM, keyPEM)}
	if r.sum == s.lastSum {
		return r
	}
	r.changed = true
	r.lc, r.parseErr = parseCertFiles(s.certFile, s.keyFile, certPEM, keyPEM)
	return r
}

// settle waits a little for a replacement in progress to complete; false
// if the source was closed meanwhile.
func (s *filesSource) settle() bool {
	t := time.NewTimer(min(s.interval, maxSettle))
	defer t.Stop()
	select {
	case <-s.stop:
		return false
	case <-t.C:
		return true
	}
}

// checkExpiry logs a certificate near or past its end: when that state is
// first seen, and again every expiryRelog.
func (s *filesSource) checkExpiry(now time.Time) {
	info := s.cur.Load().info
	left := info.NotAfter.Sub(now)
	var level slog.Level
	var msg string
	switch {
	case left <= 0:
		level, msg = slog.LevelError, "certificate has expired; clients will refuse it"
	case left < expiryWarnBefore:
		level, msg = slog.LevelWarn, "certificate expires soon"
	default:
		s.expLevel = 0
		return
	}
	if level == s.expLevel && now.Sub(s.expLogged) < expiryRelog {
		return
	}
	s.expLevel, s.expLogged = level, now
	s.log.Log(context.Background(), level, msg, "file", s.certFile, "not_after", info.NotAfter,
		"days_left", int(left.Hours()/24), "sha256", info.SHA256)
}

// read returns the content of both files, errors naming the key.
func (s *filesSource) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(s.certFile); err != nil {
		return nil, nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	if keyPEM, err = os.ReadFile(s.keyFile); err != nil {
		return nil, nil, fmt.Errorf("tls.key_file: %w", err)
	}
	return certPEM, keyPEM, nil
}

// contentSum identifies the content of the pair.
func contentSum(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(certPEM))))
	h.Write(certPEM)
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// parseCertFiles turns the PEM pair into a certificate. Before handing the
// pair to tls.X509KeyPair it checks each part itself, so that the error
// says which file is wrong and how.
func parseCertFiles(certFile, keyFile string, certPEM, keyPEM []byte) (*loadedCert, error) {
	var ders [][]byte
	var sawKey bool
	for b := range pemBlocks(certPEM) {
		switch {
		case b.Type == "CERTIFICATE":
			ders = append(ders, b.Bytes)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			sawKey = true
		}
	}
	if len(ders) == 0 {
		if sawKey {
			return nil, fmt.Errorf("tls.cert_file: %s: holds a private key but no certificate (swapped with tls.key_file?)", certFile)
		}
		return nil, fmt.Errorf("tls.cert_file: %s: no PEM CERTIFICATE block", certFile)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file: %s: %w", certFile, err)
	}

	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.key_file: %s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("tls.key_file: %s does not match the certificate in tls.cert_file %s", keyFile, certFile)
	}

	// The checks above name the file; X509KeyPair stays the authority on
	// what crypto/tls can serve.
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s, tls.key_file %s: %w", certFile, keyFile, err)
	}
	return &loadedCert{cert: cert, info: describe(ModeFiles, certFile, cert.Leaf)}, nil
}

// pemBlocks yields the PEM blocks of data in order.
func pemBlocks(data []byte) iter.Seq[*pem.Block] {
	return func(yield func(*pem.Block) bool) {
		for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
			if !yield(b) {
				return
			}
		}
	}
}

// parseKeyPEM finds the first private key block and parses it in the
// formats crypto/tls accepts (PKCS #8, PKCS #1, SEC 1).
func parseKeyPEM(keyPEM []byte) (crypto.Signer, error) {
	var sawCert bool
	for b := range pemBlocks(keyPEM) {
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] == "4,ENCRYPTED":
			return nil, errors.New("the private key is encrypted (store it without a passphrase)")
		case b.Type == "CERTIFICATE":
			sawCert = true
			continue
		case !strings.HasSuffix(b.Type, "PRIVATE KEY"):
			continue
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		return nil, fmt.Errorf("cannot parse the %s block", b.Type)
	}
	if sawCert {
		return nil, errors.New("holds a certificate but no private key (swapped with tls.cert_file?)")
	}
	return nil, errors.New("no PEM PRIVATE KEY block")
}
