package passive

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
)

// eofConn notes when the TCP stream itself ends. crypto/tls reports a
// close_notify alert and a bare TCP EOF at a record boundary alike, as
// io.EOF; but after close_notify it never reads the socket again, so an
// EOF seen down here means the peer left without close_notify.
type eofConn struct {
	net.Conn
	eof atomic.Bool
}

func (c *eofConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, io.EOF) {
		c.eof.Store(true)
	}
	return n, err
}

// EndedWithoutCloseNotify reports whether a TLS data connection returned by
// Listener.Accept has seen its TCP stream end without a TLS close_notify
// alert. For an upload that means the data may be truncated: the client
// may have died in the middle. It is false for plain connections.
func EndedWithoutCloseNotify(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	ec, ok := tc.NetConn().(*eofConn)
	return ok && ec.eof.Load()
}
