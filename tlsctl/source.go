package tlsctl

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"slices"
	"time"
)

// CertInfo describes the certificate a Manager currently serves, for
// "ftpsd check-config" and for logs.
type CertInfo struct {
	// Source is the mode that supplied the certificate: "self-signed" or "files".
	Source string
	// Names are the DNS names followed by the IP addresses of the leaf.
	Names []string
	// NotBefore and NotAfter are the leaf's validity period.
	NotBefore, NotAfter time.Time
	// SHA256 is the lower-case hex SHA-256 fingerprint of the leaf (DER).
	SHA256 string
	// File is the certificate file the leaf was read from or written to.
	File string
}

// source supplies the serving certificate. Each mode (ACME, files,
// self-signed) is one implementation; the Manager only sees this.
type source interface {
	// GetCertificate is installed as tls.Config.GetCertificate. It must
	// return a certificate also when the hello carries no SNI (clients that
	// connect by IP address).
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Info describes the certificate served right now.
	Info() CertInfo
	// Close stops background work (reloading, renewal). It is called once.
	Close() error
}

// loadedCert is an immutable certificate together with its description, so
// that a reload swaps both with one atomic store.
type loadedCert struct {
	cert *tls.Certificate
	info CertInfo
}

// describe builds the CertInfo of a parsed leaf.
func describe(source, file string, leaf *x509.Certificate) CertInfo {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	sum := sha256.Sum256(leaf.Raw)
	return CertInfo{
		Source:    source,
		Names:     names,
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		SHA256:    hex.EncodeToString(sum[:]),
		File:      file,
	}
}

// clone returns a copy whose Names the caller may modify.
func (ci CertInfo) clone() CertInfo {
	ci.Names = slices.Clone(ci.Names)
	return ci
}
