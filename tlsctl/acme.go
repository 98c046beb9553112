package tlsctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// acmeSource obtains and renews certificates through certmagic, with an
// explicit Cache and Config (never certmagic's package-level Default,
// whose helpers mutate globals). Only GetCertificate is taken from
// certmagic: its TLSConfig() would set NextProtos to acme-tls/1, and Go
// would then refuse FileZilla's hello (ALPN "ftp").
type acmeSource struct {
	log     *slog.Logger
	domains []string
	cache   *certmagic.Cache
	magic   *certmagic.Config

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newACMESource builds the certmagic machinery and gets a certificate for
// cfg.Domains before it returns: from storage when a valid one is there
// (without asking the CA), else from the CA, bounded by ObtainTimeout.
// When that fails the server still starts: certmagic keeps trying in the
// background with backoff, and every failure is logged.
func newACMESource(ctx context.Context, cfg Config, log *slog.Logger, acme *acmeCounters) (*acmeSource, error) {
	log = log.With("component", "acme")
	magic, cache, err := newCertmagic(cfg, log, acme)
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &acmeSource{log: log, domains: slices.Clone(cfg.Domains), cache: cache, magic: magic, cancel: cancel}

	start := time.Now()
	octx, ocancel := context.WithTimeout(ctx, cfg.ObtainTimeout)
	err = magic.ManageSync(octx, s.domains)
	ocancel()
	if err != nil {
		log.Error("no certificate yet: issuance failed; TLS handshakes fail until it succeeds, retrying in the background",
			"domains", s.domains, "err", err, "hint", acmeHint(cfg))
		if aerr := magic.ManageAsync(bg, s.domains); aerr != nil {
			cancel()
			cache.Stop()
			return nil, fmt.Errorf("tls: managing %v: %w", s.domains, aerr)
		}
	} else {
		info := s.Info()
		log.Info("certificate ready", "domains", s.domains, "not_after", info.NotAfter, "sha256", info.SHA256,
			"dur", time.Since(start).Round(time.Millisecond))
	}
	s.wg.Add(1)
	go s.watchExpiry(bg)
	return s, nil
}

// newCertmagic builds certmagic's Cache, Config and ACME issuer from cfg.
// acme, if not nil, counts the issuance results.
func newCertmagic(cfg Config, log *slog.Logger, acme *acmeCounters) (*certmagic.Config, *certmagic.Cache, error) {
	zl := newZapLogger(log)
	var roots *x509.CertPool
	if cfg.TrustedRoots != "" {
		pem, err := os.ReadFile(cfg.TrustedRoots)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.trusted_roots: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("tls.trusted_roots: %s holds no PEM certificate", cfg.TrustedRoots)
		}
	}
	var solver *certmagic.DNS01Solver
	if slices.Contains(cfg.Challenges, ChallengeDNS01) {
		p, err := newRFC2136(cfg.DNS)
		if err != nil {
			return nil, nil, err
		}
		solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider:        p,
			Resolvers:          cfg.DNS.Resolvers,
			PropagationTimeout: cfg.DNS.PropagationTimeout,
			Logger:             zl,
		}}
		if cfg.DNS.PropagationTimeout < 0 {
			solver.PropagationTimeout = -1
		}
	}

	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: cfg.RenewCheckInterval,
		Logger:             zl,
	})
	magic = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: cfg.Storage},
		// Clients connecting by IP send no SNI; clients using another name
		// of this host get the configured certificate too.
		DefaultServerName:  cfg.Domains[0],
		FallbackServerName: cfg.Domains[0],
		Logger:             zl,
	})
	if acme != nil {
		magic.OnEvent = acme.onEvent
	}
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      cfg.CA,
		Email:                   cfg.Email,
		Agreed:                  cfg.AgreeToTerms,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    !slices.Contains(cfg.Challenges, ChallengeHTTP01),
		DisableTLSALPNChallenge: !slices.Contains(cfg.Challenges, ChallengeTLSALPN01),
		AltHTTPPort:             cfg.HTTPPort,
		AltTLSALPNPort:          cfg.TLSALPNPort,
		ListenHost:              cfg.ListenHost,
		Logger:                  zl,
	})
	if solver != nil {
		issuer.DNS01Solver = solver
	}
	magic.Issuers = []certmagic.Issuer{issuer}
	return magic, cache, nil
}

// acmeHint says what usually fixes a failed issuance for the chosen
// challenges.
func acmeHint(cfg Config) string {
	var hints []string
	if slices.Contains(cfg.Challenges, ChallengeHTTP01) {
		hints = append(hints, fmt.Sprintf("http-01: the CA must reach http://%s:80/ (forwarded to tls.http_port %d, which must be free)", cfg.Domains[0], cfg.HTTPPort))
	}
	if slices.Contains(cfg.Challenges, ChallengeTLSALPN01) {
		hints = append(hints, fmt.Sprintf("tls-alpn-01: the CA must reach %s:443 (forwarded to tls.tls_alpn_port %d, which must be free)", cfg.Domains[0], cfg.TLSALPNPort))
	}
	if slices.Contains(cfg.Challenges, ChallengeDNS01) {
		hints = append(hints, fmt.Sprintf("dns-01: %s must accept TSIG-signed updates for the zone", cfg.DNS.Server))
	}
	hints = append(hints, "the domains must resolve to this host (http-01, tls-alpn-01) and the CA directory "+cfg.CA+" must be reachable; try tls.ca = \"staging\" first to avoid rate limits")
	return strings.Join(hints, "; ")
}

// GetCertificate serves the managed certificate (the default name's when
// the client sends no SNI or another name).
func (s *acmeSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.magic.GetCertificate(hello)
}

// current returns the cached certificate of the first domain, if any.
func (s *acmeSource) current() (certmagic.Certificate, bool) {
	certs := s.cache.AllMatchingCertificates(s.domains[0])
	if len(certs) == 0 {
		return certmagic.Certificate{}, false
	}
	best := certs[0]
	for _, c := range certs[1:] {
		if c.Leaf != nil && best.Leaf != nil && c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = c
		}
	}
	return best, best.Leaf != nil
}

// Info describes the certificate served now; Names is the configured
// domains when none has been obtained yet.
func (s *acmeSource) Info() CertInfo {
	c, ok := s.current()
	if !ok {
		return CertInfo{Source: ModeACME, Names: slices.Clone(s.domains)}
	}
	return describe(ModeACME, "", c.Leaf)
}

// watchExpiry logs loudly while the served certificate nears its end,
// whatever the reason renewal has not happened.
func (s *acmeSource) watchExpiry(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		s.checkExpiry(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *acmeSource) checkExpiry(now time.Time) {
	c, ok := s.current()
	if !ok {
		s.log.Error("no certificate for the configured domains yet", "domains", s.domains)
		return
	}
	left := c.Leaf.NotAfter.Sub(now)
	switch lifetime := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); {
	case left <= 0:
		s.log.Error("certificate EXPIRED; renewal keeps failing", "not_after", c.Leaf.NotAfter)
	case left < lifetime/10 || left < 72*time.Hour && lifetime > 7*24*time.Hour:
		s.log.Warn("certificate expires soon and has not been renewed", "not_after", c.Leaf.NotAfter, "left", left.Round(time.Minute))
	}
}

// Close stops renewal and the expiry watch.
func (s *acmeSource) Close() error {
	s.cancel()
	s.wg.Wait()
	s.cache.Stop()
	return nil
}

// inspectACME describes the certificate in storage without contacting the
// CA (for check-config).
func inspectACME(ctx context.Context, cfg Config, log *slog.Logger) (CertInfo, error) {
	magic, cache, err := newCertmagic(cfg, log, nil)
	if err != nil {
		return CertInfo{}, err
	}
	defer cache.Stop()
	c, err := magic.CacheManagedCertificate(ctx, cfg.Domains[0])
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return CertInfo{Source: ModeACME, Names: slices.Clone(cfg.Domains)}, nil
		}
		return CertInfo{}, fmt.Errorf("tls.storage: reading the stored certificate: %w", err)
	}
	return describe(ModeACME, "", c.Leaf), nil
}
