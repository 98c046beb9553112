package passive

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// countConn counts the writes and reads that reach the socket.
type countConn struct {
	net.Conn
	writes, reads atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *countConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// tlsPair is a TLS 1.3 data connection as Accept builds it (tls.Server over
// a dataNetConn over TCP) and its client, handshake done.
type tlsPair struct {
	srv    *tls.Conn
	raw    *dataNetConn
	count  *countConn
	client *tls.Conn
	tcp    net.Conn // the client's socket
}

func newTLSPair(t *testing.T) *tlsPair {
	t.Helper()
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	tcp, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	p := &tlsPair{count: &countConn{Conn: sc}, tcp: tcp}
	p.raw = &dataNetConn{Conn: p.count}
	srvCfg := pki.baseConfig(t)
	srvCfg.DynamicRecordSizingDisabled = true
	p.srv = tls.Server(p.raw, srvCfg)
	p.client = tls.Client(tcp, pki.clientConfig(tls.VersionTLS13))
	t.Cleanup(func() { p.client.Close(); p.srv.Close() })
	done := make(chan error, 1)
	go func() { done <- p.srv.Handshake() }()
	if err := p.client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGatherBytesUnchanged sends payloads of several sizes through
// Gather and checks that the client reads exactly them, and that each
// Write of up to 256 KiB reaches the socket as one write system call
// (crypto/tls alone makes one per 16 KiB record).
func TestGatherBytesUnchanged(t *testing.T) {
	tests := []struct {
		name      string
		chunks    []int
		maxWrites int64 // socket writes for the whole payload
	}{
		{"one byte", []int{1}, 1},
		{"one record", []int{16 << 10}, 1},
		{"copy buffer", []int{128 << 10}, 1},
		{"several buffers", []int{128 << 10, 128<<10 + 7, 5, 256 << 10}, 4},
		{"larger than the gather buffer", []int{600 << 10}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTLSPair(t)
			w := Gather(p.srv)
			var want []byte
			for i, n := range tt.chunks {
				want = append(want, testutil.Payload(n, byte(i))...)
			}
			before := p.count.writes.Load()
			sent := make(chan error, 1)
			go func() {
				rest := want
				for _, n := range tt.chunks {
					if _, err := w.Write(rest[:n]); err != nil {
						sent <- err
						return
					}
					rest = rest[n:]
				}
				sent <- p.srv.Close() // close_notify, after the data
			}()
			got, err := io.ReadAll(p.client)
			if err != nil {
				t.Fatalf("client read: %v (a missing close_notify is io.ErrUnexpectedEOF)", err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatalf("client got %d bytes, want %d, or other bytes", len(got), len(want))
			}
			// Close added one write: the close_notify record.
			if n := p.count.writes.Load() - before - 1; n > tt.maxWrites {
				t.Errorf("%d socket writes for %v, want at most %d", n, tt.chunks, tt.maxWrites)
			}
		})
	}
}

// TestGatherPlain: a connection that is not a TLS data connection is
// returned as it is.
func TestGatherPlain(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if w := Gather(a); w != io.Writer(a) {
		t.Errorf("Gather of a plain conn = %T, want the conn itself", w)
	}
}

// TestDataNetConnFlushOnClose: bytes gathered but not yet sent go out on
// Close, before the socket closes.
func TestDataNetConnFlushOnClose(t *testing.T) {
	p := newTLSPair(t)
	p.raw.cork()
	msg := []byte("gathered, not flushed")
	if _, err := p.raw.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := p.raw.Close(); err != nil {
		t.Fatal(err)
	}
	p.tcp.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(p.tcp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("peer read %q, want %q", got, msg)
	}
}

// TestGatherDeadline: a peer that stops reading makes a gathered Write
// fail with the write deadline, and so does a deadline in the past set
// from another goroutine while the Write is blocked (ABOR). Writes fail
// from then on.
func TestGatherDeadline(t *testing.T) {
	tests := []struct {
		name  string
		setup func(p *tlsPair)
	}{
		{"stall timeout", func(p *tlsPair) {
			p.srv.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		}},
		{"abort from another goroutine", func(p *tlsPair) {
			p.srv.SetWriteDeadline(time.Now().Add(time.Minute))
			time.AfterFunc(300*time.Millisecond, func() { p.srv.SetDeadline(time.Unix(1, 0)) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTLSPair(t) // the client never reads
			tt.setup(p)
			w := Gather(p.srv)
			chunk := testutil.Payload(128<<10, 1)
			start := time.Now()
			var err error
			for i := 0; i < 10_000 && err == nil; i++ { // 1.25 GiB at most: far beyond any socket buffer
				_, err = w.Write(chunk)
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Write to a peer that stopped reading: %v, want a deadline error", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the write failed after %v", d)
			}
			p.srv.SetWriteDeadline(time.Time{})
			if _, err := w.Write([]byte("x")); err == nil {
				t.Error("a Write after the failed one succeeded")
			}
		})
	}
}

// TestDataNetConnReadAhead: what the client sends arrives unchanged
// through the read-ahead buffer, in fewer socket reads than records, and
// the end of the stream is told apart as EndedWithoutCloseNotify says.
func TestDataNetConnReadAhead(t *testing.T) {
	tests := []struct {
		name        string
		closeNotify bool
	}{
		{"close_notify", true},
		{"bare TCP close", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTLSPair(t)
			want := testutil.Payload(4<<20+3, 9)
			go func() {
				p.client.Write(want)
				if tt.closeNotify {
					p.client.Close()
				} else {
					p.tcp.Close()
				}
			}()
			before := p.count.reads.Load()
			got, err := io.ReadAll(p.srv)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatalf("server read %d bytes, want %d, or other bytes", len(got), len(want))
			}
			if reads, records := p.count.reads.Load()-before, int64(len(want)>>14); reads >= records {
				t.Errorf("%d socket reads for %d records", reads, records)
			}
			if got := EndedWithoutCloseNotify(p.srv); got == tt.closeNotify {
				t.Errorf("EndedWithoutCloseNotify = %v", got)
			}
		})
	}
}
