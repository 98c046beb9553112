package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// measureCeiling streams o.bigSize bytes over one TLS 1.3 connection on
// loopback inside this process, the server writing 128 KiB at a time and
// the client reading as the load tool does (io.Copy to io.Discard): what
// Go's TLS alone can do on this machine, with nothing of FTP or files.
func (b *bench) measureCeiling(ctx context.Context, round int) error {
	// A short stream first: the first one in a process runs slower
	// (measured here: 1,000 MB/s, then 1,400-1,500).
	if _, _, err := tlsCeiling(ctx, b.e.certFile, b.e.keyFile, 32<<20); err != nil {
		return fmt.Errorf("TLS ceiling: %w", err)
	}
	mbs, suite, err := tlsCeiling(ctx, b.e.certFile, b.e.keyFile, b.o.bigSize)
	if err != nil {
		return fmt.Errorf("TLS ceiling: %w", err)
	}
	b.ceiling = append(b.ceiling, mbs)
	b.ceilTLS = suite
	logf("round %d: Go TLS 1.3 loopback ceiling %.0f MB/s (%s)", round+1, mbs, suite)
	return nil
}

// tlsCeiling returns the MB/s (10^6 bytes) of one stream of size bytes and
// the negotiated suite.
func tlsCeiling(ctx context.Context, certFile, keyFile string, size int64) (float64, string, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return 0, "", err
	}
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		return 0, "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, "", err
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		buf := make([]byte, 128<<10)
		for n := int64(0); n < size; {
			m, err := tc.Write(buf[:min(int64(len(buf)), size-n)])
			n += int64(m)
			if err != nil {
				srvErr <- err
				return
			}
		}
		srvErr <- tc.Close()
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, "", err
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	tc := tls.Client(raw, &tls.Config{ServerName: "localhost", RootCAs: pool, MinVersion: tls.VersionTLS13})
	if err := tc.HandshakeContext(ctx); err != nil {
		return 0, "", err
	}
	t0 := time.Now()
	n, err := io.Copy(io.Discard, tc)
	secs := time.Since(t0).Seconds()
	if err != nil {
		return 0, "", err
	}
	if err := <-srvErr; err != nil && !errors.Is(err, net.ErrClosed) {
		return 0, "", err
	}
	if n != size {
		return 0, "", fmt.Errorf("got %d bytes, want %d", n, size)
	}
	cs := tc.ConnectionState()
	return float64(n) / 1e6 / secs, tls.CipherSuiteName(cs.CipherSuite), nil
}
