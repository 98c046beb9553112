package passive

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// recordSizes notes the length of every TLS record that the peer sends
// through it.
type recordSizes struct {
	net.Conn
	buf   []byte // a record header being read
	skip  int    // body bytes of the current record still to come
	sizes []int
}

func (r *recordSizes) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	for b := p[:n]; len(b) > 0; {
		if r.skip > 0 {
			k := min(r.skip, len(b))
			r.skip -= k
			b = b[k:]
			continue
		}
		k := min(5-len(r.buf), len(b))
		r.buf = append(r.buf, b[:k]...)
		b = b[k:]
		if len(r.buf) == 5 {
			r.skip = int(r.buf[3])<<8 | int(r.buf[4])
			r.sizes = append(r.sizes, r.skip)
			r.buf = r.buf[:0]
		}
	}
	return n, err
}

// TestDataFullRecords: a data connection sends full 16 KiB records from
// its first byte. crypto/tls's default starts with records of one TCP
// segment (about 1.2 KiB) and grows them over the first 128 KiB, which
// costs a 4 KiB file three records and a system call each.
func TestDataFullRecords(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	m := newTestManager(t, Config{}, slog.New(slog.DiscardHandler))
	client := pki.clientConfig(tls.VersionTLS13, withCache)
	s := startSession(t, m, pki.baseConfig(t), client)
	l := mustListen(t, s.b)
	ch := acceptAsync(t, l, true)

	raw, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(l.Port())))
	if err != nil {
		t.Fatal(err)
	}
	rs := &recordSizes{Conn: raw}
	tc := tls.Client(rs, client)
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r := waitAccept(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	const size = 64 << 10
	go func() {
		r.conn.Write(testutil.Payload(size, 1))
		r.conn.Close()
	}()
	before := len(rs.sizes)
	n, err := io.Copy(io.Discard, tc)
	if err != nil || n != size {
		t.Fatalf("read %d bytes (%v), want %d", n, err, size)
	}
	full := 0
	for _, l := range rs.sizes[before:] {
		if l > 16<<10 {
			full++
		}
	}
	if full != size/(16<<10) {
		t.Errorf("%d bytes came in records of %v bytes, want %d full records", size, rs.sizes[before:], size/(16<<10))
	}
}
