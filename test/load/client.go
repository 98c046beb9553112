package main

// A small FTPS client: one logged-in control session, its data
// connections, and the commands the load tool runs.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"time"

	"github.com/ftpsd/ftpsd/test/ftpsclient"
)

// session is one logged-in control connection.
type session struct {
	kill    context.Context
	raw     net.Conn
	tp      *textproto.Conn
	tls     *tls.Config // this session's: its ticket cache holds only its own tickets
	peer    netip.Addr  // the control peer: EPSV gives only a port
	timeout time.Duration
	stop    func() bool // undoes the close-on-kill hook
	st      *stats      // data connection counts, if set
	// control is the control connection's TLS version and cipher suite,
	// as the report names them ("TLS 1.3 TLS_AES_128_GCM_SHA256").
	control string
}

// dialSession connects, runs AUTH TLS and logs in, then sets PBSZ 0,
// PROT P and TYPE I. The connection is closed when kill ends.
func dialSession(kill context.Context, cfg *config) (*session, error) {
	d := net.Dialer{Timeout: cfg.timeout}
	raw, err := d.DialContext(kill, "tcp", cfg.addr)
	if err != nil {
		return nil, err
	}
	tcfg := cfg.tls.Clone()
	tcfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	s := &session{
		kill: kill, raw: raw, tls: tcfg, timeout: cfg.timeout,
		peer: raw.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(),
		tp:   textproto.NewConn(ftpsclient.DeadlineConn{Conn: raw, Timeout: cfg.timeout}),
	}
	s.stop = context.AfterFunc(kill, func() { raw.Close() })
	if err := s.login(cfg.user, cfg.pass); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) login(user, pass string) error {
	if _, err := s.expect(220); err != nil {
		return err
	}
	if _, err := s.cmd(234, "AUTH TLS"); err != nil {
		return err
	}
	tc := tls.Client(ftpsclient.DeadlineConn{Conn: s.raw, Timeout: s.timeout}, s.tls)
	if err := tc.HandshakeContext(s.kill); err != nil {
		return err
	}
	s.control = tlsName(tc.ConnectionState())
	s.tp = textproto.NewConn(tc)
	code, err := s.cmd(0, "USER "+user)
	switch {
	case err != nil:
		return err
	case code == 331:
		if _, err := s.cmd(230, "PASS "+pass); err != nil {
			return err
		}
	case code != 230:
		return &textproto.Error{Code: code, Msg: "USER refused"}
	}
	for _, line := range []string{"PBSZ 0", "PROT P", "TYPE I"} {
		if _, err := s.cmd(200, line); err != nil {
			return err
		}
	}
	return nil
}

// cmd sends line and reads the reply; want > 0 turns any other code into
// a *textproto.Error.
func (s *session) cmd(want int, line string) (int, error) {
	if err := s.tp.PrintfLine("%s", line); err != nil {
		return 0, err
	}
	return s.expect(want)
}

// expect reads one (possibly multi-line) reply.
func (s *session) expect(want int) (int, error) {
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil {
		return code, err
	}
	if want > 0 && code != want {
		return code, &textproto.Error{Code: code, Msg: msg}
	}
	return code, nil
}

// transfer runs one data command: EPSV, a TCP connection to the announced
// port, the command, and after its 150 the TLS handshake (resuming this
// session), then fn on the data connection, a close with close_notify and
// the 226.
func (s *session) transfer(line string, upload bool, fn func(net.Conn) (int64, error)) (int64, error) {
	port, err := s.epsv()
	if err != nil {
		return 0, err
	}
	raw, err := ftpsclient.Dial(s.kill, netip.AddrPortFrom(s.peer, port).String(), s.timeout)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	defer context.AfterFunc(s.kill, func() { raw.Close() })()
	// The TLS handshake waits for the 150: after an error reply the
	// server never accepts, and the handshake would only time out.
	code, err := s.cmd(0, line)
	if err != nil {
		return 0, err
	}
	if code != 150 && code != 125 {
		return 0, &textproto.Error{Code: code, Msg: line + " refused"}
	}
	tc, err := ftpsclient.Handshake(s.kill, raw, s.tls, s.timeout)
	if err != nil {
		return 0, err
	}
	if s.st != nil {
		cs := tc.ConnectionState()
		s.st.dataConns++
		if cs.DidResume {
			s.st.resumed++
		}
		s.st.dataTLS[tlsName(cs)]++
	}
	n, err := fn(tc)
	if err != nil {
		return n, err
	}
	if upload {
		// close_notify, then read to the server's close: closing at once
		// with unread bytes (TLS 1.3 session tickets that OpenSSL servers
		// send on data connections too) makes the kernel send a reset,
		// which can cost the server the end of the upload (vsftpd: 426
		// "Failure reading network stream").
		if err := tc.CloseWrite(); err != nil {
			return n, err
		}
		if _, err := io.Copy(io.Discard, tc); err != nil {
			return n, err
		}
	}
	if err := tc.Close(); err != nil {
		return n, err
	}
	_, err = s.expect(226)
	return n, err
}

// epsv asks for a passive port: "229 ... (|||port|)".
func (s *session) epsv() (uint16, error) {
	if err := s.tp.PrintfLine("EPSV"); err != nil {
		return 0, err
	}
	code, msg, err := s.tp.ReadResponse(229)
	if err != nil {
		return 0, err
	}
	p, err := ftpsclient.ParseEPSV(msg)
	if err != nil {
		return 0, &textproto.Error{Code: code, Msg: err.Error()}
	}
	return p, nil
}

func (s *session) retr(name string) (int64, error) {
	return s.transfer("RETR "+name, false, func(c net.Conn) (int64, error) {
		return io.Copy(io.Discard, c)
	})
}

// stor uploads size bytes: block, repeated.
func (s *session) stor(name string, size int64, block []byte) (int64, error) {
	return s.transfer("STOR "+name, true, func(c net.Conn) (int64, error) {
		var n int64
		for n < size {
			m, err := c.Write(block[:min(int64(len(block)), size-n)])
			n += int64(m)
			if err != nil {
				return n, err
			}
		}
		return n, nil
	})
}

// list runs cmd (MLSD or LIST) of dir and returns the listing's size and
// line count.
func (s *session) list(cmd, dir string) (int64, int, error) {
	line := cmd
	if dir != "" {
		line += " " + dir
	}
	var lines int
	n, err := s.transfer(line, false, func(c net.Conn) (int64, error) {
		var n int64
		buf := make([]byte, 32<<10)
		for {
			m, err := c.Read(buf)
			n += int64(m)
			lines += bytes.Count(buf[:m], []byte("\n"))
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			if err != nil {
				return n, err
			}
		}
	})
	return n, lines, err
}

func (s *session) noop() error {
	_, err := s.cmd(200, "NOOP")
	return err
}

func (s *session) dele(name string) error {
	_, err := s.cmd(250, "DELE "+name)
	return err
}

// quit logs out and closes the connection.
func (s *session) quit() error {
	_, err := s.cmd(221, "QUIT")
	s.close()
	return err
}

func (s *session) close() {
	s.stop()
	s.raw.Close()
}

// tlsName names the version and cipher suite of a connection.
func tlsName(cs tls.ConnectionState) string {
	return tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
}
