package passive

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// dataNetConn is the TCP connection under a data connection's tls.Conn. It
// does three things crypto/tls cannot be asked to do:
//
//   - It notes when the TCP stream itself ends (EndedWithoutCloseNotify).
//     crypto/tls reports a close_notify alert and a bare TCP EOF at a
//     record boundary alike, as io.EOF; but after close_notify it never
//     reads the socket again, so an EOF seen down here means the peer left
//     without close_notify.
//   - It gathers writes (Gather). crypto/tls writes each record of at most
//     16 KiB with its own write system call; between cork and uncork the
//     records are appended to a buffer and sent together, so a 128 KiB
//     Write of the copy loop is one system call instead of eight, and one
//     TCP segment train instead of eight wake-ups of the receiver.
//     Outside a corked Write (the handshake, close_notify, a key update)
//     every write goes straight through, in order.
//   - It reads ahead: one read system call fills up to readBufSize for
//     crypto/tls, which asks for a record (about 16 KiB) at a time.
//
// Both buffers come from pools and go back as soon as they are empty, so
// an idle data connection holds neither. Deadlines pass through to the TCP
// connection: a flush runs under the write deadline in force, and a past
// deadline (ABOR) interrupts it like any write.
type dataNetConn struct {
	net.Conn
	eof atomic.Bool

	// Write side. mu serializes the writers (crypto/tls writes under its
	// own lock, but a reader may answer a key update while a Write is
	// corked) with Close.
	mu     sync.Mutex
	corked bool
	wbuf   *[]byte // pending bytes; nil when empty
	werr   error   // sticky: the connection is broken for writing

	// Read side, used by one reader at a time (crypto/tls's input lock).
	rbuf       *[]byte
	rpos, rend int
	rerr       error // returned once the buffer is drained
}

// Buffer sizes. writeBufSize holds a 256 KiB Write of plaintext in full
// records (16 KiB + 22 bytes of TLS 1.3 overhead each); readBufSize is
// what one read system call may take from the socket.
const (
	writeBufSize = 256<<10 + 16*64
	readBufSize  = 128 << 10
)

var (
	writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}
	readBufs  = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
)

func (c *dataNetConn) Read(p []byte) (int, error) {
	if c.rbuf == nil {
		if c.rerr != nil {
			err := c.rerr
			c.rerr = nil
			return 0, err
		}
		if len(p) >= readBufSize {
			return c.readRaw(p)
		}
		c.rbuf = readBufs.Get().(*[]byte)
		n, err := c.readRaw(*c.rbuf)
		c.rpos, c.rend, c.rerr = 0, n, err
		if n == 0 {
			c.release()
			err, c.rerr = c.rerr, nil
			return 0, err
		}
	}
	n := copy(p, (*c.rbuf)[c.rpos:c.rend])
	if c.rpos += n; c.rpos == c.rend {
		c.release()
	}
	return n, nil
}

// readRaw reads from the socket and records its end.
func (c *dataNetConn) readRaw(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, io.EOF) {
		c.eof.Store(true)
	}
	return n, err
}

// release gives the drained read buffer back.
func (c *dataNetConn) release() {
	readBufs.Put(c.rbuf)
	c.rbuf = nil
}

func (c *dataNetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.corked && len(p) <= writeBufSize {
		if c.wbuf != nil && len(*c.wbuf)+len(p) > writeBufSize {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
		}
		if c.wbuf == nil {
			c.wbuf = writeBufs.Get().(*[]byte)
		}
		*c.wbuf = append(*c.wbuf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil { // keep the order
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// flushLocked sends the pending bytes, if any, and gives the buffer back.
// A failed flush breaks the connection for writing, as crypto/tls itself
// treats a failed write: the records it thought sent are lost.
func (c *dataNetConn) flushLocked() error {
	if c.wbuf == nil {
		return c.werr
	}
	b := c.wbuf
	c.wbuf = nil
	var err error
	if c.werr == nil {
		_, err = c.Conn.Write(*b)
		if err != nil {
			c.werr = err
		}
	}
	*b = (*b)[:0]
	writeBufs.Put(b)
	return err
}

func (c *dataNetConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork ends the gathering and sends what it gathered.
func (c *dataNetConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

// Close sends what is pending (under the write deadline in force) and
// closes the connection. A Close from another goroutine while a write is
// blocked does not wait for it: it closes at once, which ends that write.
func (c *dataNetConn) Close() error {
	if c.mu.TryLock() {
		c.corked = false
		c.flushLocked()
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

// gatherWriter writes to a TLS data connection with its records gathered
// per Write.
type gatherWriter struct {
	tc  *tls.Conn
	raw *dataNetConn
}

func (w gatherWriter) Write(p []byte) (int, error) {
	w.raw.cork()
	n, err := w.tc.Write(p)
	if ferr := w.raw.uncork(); err == nil {
		err = ferr
	}
	return n, err
}

// Gather returns the writer a transfer should use for c, a connection
// returned by Accept: for a TLS data connection, one that sends the TLS
// records of each Write together, in one write system call for up to
// 256 KiB, rather than one per 16 KiB record. The write deadline set on c
// governs it, and Close still sends close_notify. For any other
// connection it returns c.
func Gather(c net.Conn) io.Writer {
	if tc, ok := c.(*tls.Conn); ok {
		if raw, ok := tc.NetConn().(*dataNetConn); ok {
			return gatherWriter{tc, raw}
		}
	}
	return c
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
	ec, ok := tc.NetConn().(*dataNetConn)
	return ok && ec.eof.Load()
}
