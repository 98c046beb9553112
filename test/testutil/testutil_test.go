package testutil

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestLogBufferCount(t *testing.T) {
	log, buf := NewLogger()
	log.Info("transfer", "code", 226)
	log.Info("transfer", "code", 426)
	log.Debug("reply", "code", 150)
	tests := []struct {
		expr string
		want int
	}{
		{`msg=transfer`, 2},
		{`msg=transfer code=4\d\d$`, 1},
		{`level=DEBUG msg=reply`, 1},
		{`msg=nothing`, 0},
	}
	for _, tt := range tests {
		if got := buf.Count(tt.expr); got != tt.want {
			t.Errorf("Count(%q) = %d, want %d\n%s", tt.expr, got, tt.want, buf.String())
		}
	}
	if n := buf.WaitCount(`msg=nothing`, 1, 50*time.Millisecond); n != 0 {
		t.Errorf("WaitCount of a missing line = %d", n)
	}
}

// TestPKI: a TLS client trusting CAPool accepts the certificate for every
// name it covers.
func TestPKI(t *testing.T) {
	p := NewPKI(t)
	caFile, certFile, keyFile := p.WriteFiles(t, t.TempDir())
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("written pair: %v", err)
	}
	if filepath.Base(caFile) != "ca.pem" {
		t.Errorf("CA file %s", caFile)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		t.Run(name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.Cert}})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.(*tls.Conn).Handshake()
					c.Close()
				}
			}()
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{RootCAs: p.CAPool, ServerName: name})
			if err != nil {
				t.Fatalf("handshake for %s: %v", name, err)
			}
			c.Close()
		})
	}
}

func TestPayload(t *testing.T) {
	a, b := Payload(1000, 1), Payload(1000, 2)
	if Sum(a) == Sum(b) || Sum(a) != Sum(Payload(1000, 1)) {
		t.Error("payloads are not deterministic per seed, or not different across seeds")
	}
	p := WriteFile(t, t.TempDir(), "a/b.bin", a)
	AssertContent(t, p, a)
	AssertMissing(t, filepath.Join(filepath.Dir(p), "c.bin"))
}
