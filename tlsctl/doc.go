// Package tlsctl owns the server certificate and the TLS policy of ftpsd.
//
// A Manager picks one certificate source by configuration (ACME through
// certmagic, certificate and key files that are reloaded when they change,
// or a self-signed certificate persisted in the state directory) and hands
// out one base *tls.Config:
// TLS 1.2 or newer (TLS 1.2 with ECDHE and AEAD suites only, unless
// legacy_ciphers is set), GetCertificate from the source, the "ftp" ALPN
// protocol, and explicit session-ticket keys that are rotated in the
// background.
//
// The package knows nothing of FTP beyond the ALPN name; the ftps and passive
// packages receive the base config and clone it per session.
package tlsctl
