package tlsctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
)

// alpnFTP is the ALPN protocol id of FTP over TLS (IANA "ftp", RFC 7301
// registry).
const alpnFTP = "ftp"

// Manager owns the certificate source and the base TLS configuration. Build
// it with New and stop it with Close.
type Manager struct {
	src     atomic.Pointer[sourceBox] // replaced by Reload
	cfg     Config                    // the settings New applied
	log     *slog.Logger
	base    *tls.Config
	tickets *ticketKeys
	acme    *acmeCounters // kept across reloads

	mu     sync.Mutex // serialises Reload and Close
	closed bool
}

// sourceBox lets an interface value live in an atomic.Pointer.
type sourceBox struct{ source }

// New validates a copy of cfg, builds the certificate source cfg.Mode names
// (generating or loading the certificate, so configuration errors surface
// here) and the base TLS configuration, and starts the background work
// (file polling, ticket-key rotation), which runs until Close. ctx bounds
// only the construction.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg.SelfSignedNames = append([]string(nil), cfg.SelfSignedNames...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	minVersion, err := parseMinVersion(cfg.MinVersion)
	if err != nil {
		return nil, err
	}

	acme := new(acmeCounters)
	src, err := newSource(ctx, cfg, log, acme)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: log, acme: acme}
	m.src.Store(&sourceBox{src})

	base := &tls.Config{
		MinVersion: minVersion,
		// Every name, and no name at all (clients connecting by IP send no
		// SNI), gets the source's certificate. Certificates stays empty so
		// that crypto/tls always asks GetCertificate.
		// It goes through the Manager, so that a reload that changes
		// the source reaches every clone already made.
		GetCertificate: m.getCertificate,
		// "ftp" must be listed: FileZilla offers "ftp,x-filezilla-ftp", and
		// crypto/tls aborts a handshake whose client ALPN list has no
		// overlap with a non-empty NextProtos. Clients offering no ALPN
		// (curl, lftp, data connections) are unaffected. Never "acme-tls/1":
		// the TLS-ALPN-01 challenge has no business on the FTP ports.
		NextProtos: []string{alpnFTP},
		// CipherSuites applies to TLS 1.2 only; see tls12CipherSuites.
		// CurvePreferences: Go's defaults are current and are kept up to
		// date with the toolchain.
		CipherSuites: tls12CipherSuites(),
	}
	if cfg.LegacyCiphers {
		// nil is Go's default list, which adds ECDHE with AES-CBC and SHA-1.
		base.CipherSuites = nil
		log.Warn("tls.legacy_ciphers is on: TLS 1.2 also accepts CBC cipher suites with SHA-1 MACs; turn it off once old clients are gone")
	}
	m.base = base
	var secret []byte
	if cfg.TicketKeyFile != "" {
		if secret, err = readTicketSecret(cfg.TicketKeyFile); err != nil {
			src.Close()
			return nil, err
		}
	}
	m.tickets = newTicketKeys(base, cfg.TicketKeyRotation, secret, log)
	return m, nil
}

// newSource builds the certificate source cfg.Mode names.
// acme counts ACME results.
func newSource(ctx context.Context, cfg Config, log *slog.Logger, acme *acmeCounters) (source, error) {
	switch cfg.Mode {
	case ModeSelfSigned:
		return newSelfSignedSource(ctx, cfg, log)
	case ModeFiles:
		return newFilesSource(cfg, log)
	case ModeACME:
		return newACMESource(ctx, cfg, log, acme)
	}
	return nil, fmt.Errorf("tls.mode: %q not implemented", cfg.Mode) // unreachable after Validate
}

func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.src.Load().GetCertificate(hello)
}

// Reload validates cfg and, when its certificate settings differ from those
// in force, builds the new certificate source (loading, generating or
// obtaining its certificate, bounded by ctx and, in acme mode, by
// obtain_timeout) and serves it from the next handshake on; the old source
// is stopped. Running connections keep their certificate. Settings that the
// base configuration fixed at start (min_version, legacy_ciphers,
// ticket_key_rotation) keep their values; restart lists them. A cfg that
// fails validation, or whose source cannot be built, changes nothing.
func (m *Manager) Reload(ctx context.Context, cfg Config) (restart []string, err error) {
	p, err := m.PrepareReload(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p.Apply()
	return p.Restart, nil
}

// PendingReload is a reload that has passed every check and built what it
// needs; nothing changes until Apply. A caller that reloads several
// components prepares them all first, so that a failure in one leaves all
// unchanged, then applies them, or Discards this one.
type PendingReload struct {
	// Restart lists the keys that changed but need a restart.
	Restart []string

	m      *Manager
	cfg    Config
	src    source // nil: the certificate settings did not change
	secret []byte // ticket_key_file's content, read again at each reload

	discarded bool
}

// PrepareReload is the first half of Reload: validation and the new
// certificate source, without serving it.
func (m *Manager) PrepareReload(ctx context.Context, cfg Config) (*PendingReload, error) {
	cfg.SelfSignedNames = append([]string(nil), cfg.SelfSignedNames...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("tls: manager closed")
	}
	p := &PendingReload{m: m}
	if cfg.MinVersion != m.cfg.MinVersion {
		p.Restart = append(p.Restart, "tls.min_version")
	}
	if cfg.LegacyCiphers != m.cfg.LegacyCiphers {
		p.Restart = append(p.Restart, "tls.legacy_ciphers")
	}
	if cfg.TicketKeyRotation != m.cfg.TicketKeyRotation {
		p.Restart = append(p.Restart, "tls.ticket_key_rotation")
	}
	// Keep what needs a restart as it is, so that the comparison below
	// looks at the certificate settings only.
	cfg.MinVersion, cfg.LegacyCiphers, cfg.TicketKeyRotation = m.cfg.MinVersion, m.cfg.LegacyCiphers, m.cfg.TicketKeyRotation
	// The ticket secret is read again even when its path is the same: a
	// reload is how a rotated secret reaches the running nodes.
	if cfg.TicketKeyFile != "" {
		var err error
		if p.secret, err = readTicketSecret(cfg.TicketKeyFile); err != nil {
			return nil, err
		}
	}
	p.cfg = cfg
	same := cfg
	same.TicketKeyFile = m.cfg.TicketKeyFile
	if reflect.DeepEqual(same, m.cfg) {
		return p, nil
	}
	src, err := newSource(ctx, cfg, m.log, m.acme)
	if err != nil {
		return nil, err
	}
	p.src = src
	return p, nil
}

// Apply installs the ticket keys of the ticket_key_file read by
// PrepareReload (if it changed), serves the prepared certificate source
// from the next handshake on and stops the previous one. The latter is a
// no-op when the certificate settings
// did not change, or after Discard.
func (p *PendingReload) Apply() {
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		if p.src != nil {
			p.src.Close()
		}
		return
	}
	if !p.discarded {
		m.tickets.setSecret(p.secret)
		m.cfg.TicketKeyFile = p.cfg.TicketKeyFile
	}
	if p.src == nil {
		return
	}
	old := m.src.Swap(&sourceBox{p.src})
	m.cfg = p.cfg
	if err := old.Close(); err != nil {
		m.log.Warn("stopping the previous certificate source", "err", err)
	}
	info := p.src.Info()
	m.log.Info("certificate settings reloaded", "source", info.Source, "names", info.Names, "expires", info.NotAfter)
	p.src = nil
}

// Discard stops the prepared source of a reload that will not be applied.
func (p *PendingReload) Discard() {
	p.discarded = true
	if p.src != nil {
		p.src.Close()
		p.src = nil
	}
}

// tls12CipherSuites are the TLS 1.2 suites offered unless legacy_ciphers is
// set: ECDHE for forward secrecy and an AEAD, for ECDSA and RSA keys alike
// (files and acme mode may serve either). Go's default list adds AES-CBC
// with SHA-1 MACs, which current FTPS clients (FileZilla, lftp, curl,
// rclone) do without. crypto/tls applies its own preference order, so the
// order here does not matter. A new slice on each call, so that no two
// Managers share one.
func tls12CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// ServerConfig returns the base TLS configuration: MinVersion per config,
// the TLS 1.2 cipher suites (ECDHE with AEAD only, or Go's defaults with
// legacy_ciphers), GetCertificate from the certificate source, NextProtos
// ["ftp"] and explicitly set, rotating session-ticket keys. It returns the
// same pointer on every call; the Manager keeps changing its ticket keys,
// so callers must Clone it before modifying anything. passive clones it
// once per control session (Clone copies CipherSuites, so control and data
// connections share the policy): a clone shares the keys present when it
// was made, so a session's data connections resume its control session
// even across a rotation, and every clone made later still accepts the
// tickets of sessions started during the two previous rotation periods.
func (m *Manager) ServerConfig() *tls.Config { return m.base }

// Certificate describes the certificate served now (for check-config and
// logs).
func (m *Manager) Certificate() CertInfo { return m.src.Load().Info() }

// Inspect describes the certificate cfg would serve, for check-config. It
// writes nothing and asks no one: in acme mode it reads storage only and
// never asks the CA, in self-signed mode it reads the stored certificate
// (NotAfter is zero when there is none yet, or serve would replace it), so
// that check-config run as another user (root) never leaves state that the
// service cannot read. Files mode loads the files as New does.
func Inspect(ctx context.Context, cfg Config, log *slog.Logger) (CertInfo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return CertInfo{}, err
	}
	switch cfg.Mode {
	case ModeACME:
		return inspectACME(ctx, cfg, log)
	case ModeSelfSigned:
		return inspectSelfSigned(cfg), nil
	}
	m, err := New(ctx, cfg, log)
	if err != nil {
		return CertInfo{}, err
	}
	defer m.Close()
	return m.Certificate(), nil
}

// Close stops the ticket-key rotation and the certificate source's
// background work. It is safe to call more than once; the base config
// keeps serving its current certificate and keys.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.tickets.close()
	return m.src.Load().Close()
}
