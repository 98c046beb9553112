package passive

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestForeignPeerDropped dials the data port from 127.0.0.2 first: that
// connection is closed and logged, and the control peer (127.0.0.1) still
// gets through on the same listener.
func TestForeignPeerDropped(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, secure := range []bool{false, true} {
		t.Run("secure="+strconv.FormatBool(secure), func(t *testing.T) {
			t.Parallel()
			log, logs := testutil.NewLogger()
			m := newTestManager(t, Config{}, log)
			ctl := pki.clientConfig(tls.VersionTLS13, withCache)
			s := startSession(t, m, pki.baseConfig(t), ctl)
			l := mustListen(t, s.b)
			ch := acceptAsync(t, l, secure)
			addr := "127.0.0.1:" + strconv.Itoa(int(l.Port()))

			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			foreign, err := d.DialContext(t.Context(), "tcp4", addr)
			if err != nil {
				t.Skipf("cannot dial from 127.0.0.2: %v", err)
			}
			defer foreign.Close()
			foreign.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := foreign.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("foreign connection not closed by the server: %v", err)
			}

			if secure {
				if _, err := transferOn(t, l, ch, ctl); err != nil {
					t.Fatalf("control peer refused after a foreign one: %v", err)
				}
			} else {
				c, err := net.Dial("tcp4", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				r := waitAccept(t, ch)
				if r.err != nil {
					t.Fatalf("control peer refused after a foreign one: %v", r.err)
				}
				if _, ok := r.conn.(*net.TCPConn); !ok {
					t.Fatalf("plain Accept returned %T, want *net.TCPConn", r.conn)
				}
			}
			if !strings.Contains(logs.String(), "level=WARN msg=\"data connection from a foreign address dropped\"") ||
				!strings.Contains(logs.String(), "127.0.0.2") {
				t.Errorf("foreign peer not logged at Warn:\n%s", logs)
			}
		})
	}
}

// transferOn finishes a TLS data connection with cfg on a listener whose
// Accept already runs (ch); see finishData.
func transferOn(t *testing.T, l *Listener, ch <-chan acceptResult, cfg *tls.Config) (serverResumed bool, err error) {
	t.Helper()
	client, herr := dialData(t, l.Port(), cfg)
	return finishData(t, client, herr, ch)
}

// finishData waits for the Accept running behind ch, whose client side is
// client (herr: its handshake's error), and returns Accept's error. A
// refused client must see the connection end; on success the server
// writes a line that the client reads (delivering TLS 1.3 tickets issued
// on the data connection to the client's cache), and both sides must agree
// on whether the session resumed.
func finishData(t *testing.T, client *tls.Conn, herr error, ch <-chan acceptResult) (serverResumed bool, err error) {
	t.Helper()
	r := waitAccept(t, ch)
	if r.err != nil {
		if herr == nil {
			// The refused client sees the connection end.
			if _, rerr := client.Read(make([]byte, 1)); rerr == nil {
				t.Error("client read data on a refused data connection")
			}
		}
		return false, r.err
	}
	if herr != nil {
		t.Fatalf("client data handshake: %v", herr)
	}
	tc, ok := r.conn.(*tls.Conn)
	if !ok {
		t.Fatalf("Accept returned %T, want *tls.Conn", r.conn)
	}
	if _, err := io.WriteString(tc, "data\n"); err != nil {
		t.Fatal(err)
	}
	readLine(t, client, "data\n")
	if got, want := client.ConnectionState().DidResume, tc.ConnectionState().DidResume; got != want {
		t.Errorf("client DidResume %v, server %v", got, want)
	}
	tc.Close()
	return tc.ConnectionState().DidResume, nil
}

// TestAcceptEnds covers every way an Accept ends without a connection; in
// all of them the port goes back to the pool.
func TestAcceptEnds(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	tests := []struct {
		name string
		cfg  Config
		// act runs while Accept waits; it may dial.
		act     func(t *testing.T, l *Listener, b *Binding, cancel context.CancelFunc)
		wantErr error
	}{
		{name: "accept timeout", cfg: Config{AcceptTimeout: 100 * time.Millisecond},
			act: func(*testing.T, *Listener, *Binding, context.CancelFunc) {}, wantErr: ErrAcceptTimeout},
		{name: "listener close", act: func(_ *testing.T, l *Listener, _ *Binding, _ context.CancelFunc) {
			time.Sleep(50 * time.Millisecond)
			l.Close()
		}, wantErr: ErrClosed},
		{name: "binding close", act: func(_ *testing.T, _ *Listener, b *Binding, _ context.CancelFunc) {
			time.Sleep(50 * time.Millisecond)
			b.Close()
		}, wantErr: ErrClosed},
		{name: "context canceled", act: func(_ *testing.T, _ *Listener, _ *Binding, cancel context.CancelFunc) {
			time.Sleep(50 * time.Millisecond)
			cancel()
		}, wantErr: context.Canceled},
		{name: "close during handshake", act: func(t *testing.T, l *Listener, _ *Binding, _ context.CancelFunc) {
			c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(l.Port())))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			time.Sleep(100 * time.Millisecond) // no ClientHello: the server waits in its handshake
			l.Close()
		}, wantErr: ErrClosed},
		{name: "handshake timeout", cfg: Config{HandshakeTimeout: 100 * time.Millisecond},
			act: func(t *testing.T, l *Listener, _ *Binding, _ context.CancelFunc) {
				c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(l.Port())))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
			}, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newTestManager(t, tt.cfg, nil)
			s := startSession(t, m, pki.baseConfig(t), pki.clientConfig(tls.VersionTLS13, withCache))
			l := mustListen(t, s.b)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ch := make(chan acceptResult, 1)
			start := time.Now()
			go func() {
				c, err := l.Accept(ctx, true)
				ch <- acceptResult{c, err}
			}()
			tt.act(t, l, s.b, cancel)
			r := waitAccept(t, ch)
			if !errors.Is(r.err, tt.wantErr) {
				t.Fatalf("Accept error %v, want %v", r.err, tt.wantErr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Accept took %v", d)
			}
			assertPortsFree(t, m)
			if _, err := l.Accept(t.Context(), true); !errors.Is(err, ErrClosed) {
				t.Errorf("second Accept: %v, want ErrClosed", err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close after Accept: %v", err)
			}
		})
	}
}

// TestAcceptOnlyOne checks that the port closes after the first
// connection: a second dial is refused.
func TestAcceptOnlyOne(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{}, nil)
	b := m.Bind(nil, mustAddrPort(t, "127.0.0.1:21"), mustAddrPort(t, "127.0.0.1:40000"))
	defer b.Close()
	l := mustListen(t, b)
	ch := acceptAsync(t, l, false)
	addr := "127.0.0.1:" + strconv.Itoa(int(l.Port()))
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := waitAccept(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
	if c2, err := net.Dial("tcp4", addr); err == nil {
		c2.Close()
		t.Fatal("second dial to a used passive port succeeded")
	}
	assertPortsFree(t, m)
}
