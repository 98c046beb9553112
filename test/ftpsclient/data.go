package ftpsclient

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// DeadlineConn gives each Read and Write its own deadline, so that a
// stalled peer fails the operation after Timeout instead of hanging it.
type DeadlineConn struct {
	net.Conn
	Timeout time.Duration
}

func (c DeadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.Timeout))
	return c.Conn.Read(p)
}

func (c DeadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	return c.Conn.Write(p)
}

// Dial opens the TCP connection of a data channel to addr, within
// timeout.
func Dial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", addr)
}

// Handshake runs the client TLS handshake on a data connection with cfg.
// With timeout > 0 every read and write of the connection is bounded by
// it (see DeadlineConn); with 0 the caller sets deadlines on raw. With
// the control connection's cfg (and its ClientSessionCache) the handshake
// resumes the control session, as ftpsd requires by default;
// ConnectionState().DidResume tells.
func Handshake(ctx context.Context, raw net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	c := raw
	if timeout > 0 {
		c = DeadlineConn{raw, timeout}
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}
