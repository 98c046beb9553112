package tlsctl

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
)

// alpnFTP is the ALPN protocol id of FTP over TLS (IANA "ftp", RFC 7301
// registry).
const alpnFTP = "ftp"

// Manager owns the certificate source and the base TLS configuration. Build
// it with New and stop it with Close.
type Manager struct {
	src     source
	base    *tls.Config
	tickets *ticketKeys
}

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

	var src source
	switch cfg.Mode {
	case ModeSelfSigned:
		src, err = newSelfSignedSource(ctx, cfg, log)
	case ModeFiles:
		src, err = newFilesSource(cfg, log)
	case ModeACME:
		src, err = newACMESource(ctx, cfg, log)
	default: // unreachable after Validate
		err = fmt.Errorf("tls.mode: %q not implemented", cfg.Mode)
	}
	if err != nil {
		return nil, err
	}

	base := &tls.Config{
		MinVersion: minVersion,
		// Every name, and no name at all (clients connecting by IP send no
		// SNI), gets the source's certificate. Certificates stays empty so
		// that crypto/tls always asks GetCertificate.
		GetCertificate: src.GetCertificate,
		// "ftp" must be listed: FileZilla offers "ftp,x-filezilla-ftp", and
		// crypto/tls aborts a handshake whose client ALPN list has no
		// overlap with a non-empty NextProtos. Clients offering no ALPN
		// (curl, lftp, data connections) are unaffected. Never "acme-tls/1":
		// the TLS-ALPN-01 challenge has no business on the FTP ports.
		NextProtos: []string{alpnFTP},
		// CipherSuites, CurvePreferences: Go's defaults are current and
		// are kept up to date with the toolchain.
	}
	m := &Manager{
		src:     src,
		base:    base,
		tickets: newTicketKeys(base, cfg.TicketKeyRotation, log),
	}
	return m, nil
}

// ServerConfig returns the base TLS configuration: MinVersion per config,
// GetCertificate from the certificate source, NextProtos ["ftp"] and
// explicitly set, rotating session-ticket keys. It returns the same pointer
// on every call; the Manager keeps changing its ticket keys, so callers
// must Clone it before modifying anything. passive clones it once per
// control session: a clone shares the keys present when it was made, so a
// session's data connections resume its control session even across a
// rotation, and every clone made later still accepts the tickets of
// sessions started during the two previous rotation periods.
func (m *Manager) ServerConfig() *tls.Config { return m.base }

// Certificate describes the certificate served now (for check-config and
// logs).
func (m *Manager) Certificate() CertInfo { return m.src.Info() }

// Inspect describes the certificate cfg would serve, for check-config: in
// acme mode it reads storage only and never asks the CA (NotAfter is zero
// when nothing has been obtained yet); the other modes load or generate
// their certificate as New does.
func Inspect(ctx context.Context, cfg Config, log *slog.Logger) (CertInfo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return CertInfo{}, err
	}
	if cfg.Mode == ModeACME {
		return inspectACME(ctx, cfg, log)
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
	m.tickets.close()
	return m.src.Close()
}
