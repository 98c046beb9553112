package ftps

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// pieces returns its chunks one per Read, the way crypto/tls returns one
// record per Read, then err.
type pieces struct {
	chunks [][]byte
	err    error
	reads  int
}

func (p *pieces) Read(b []byte) (int, error) {
	p.reads++
	if len(p.chunks) == 0 {
		return 0, p.err
	}
	n := copy(b, p.chunks[0])
	if p.chunks[0] = p.chunks[0][n:]; len(p.chunks[0]) == 0 {
		p.chunks = p.chunks[1:]
	}
	return n, nil
}

// TestFullReader: uploads fill the copy buffer from record-sized reads, so
// that the file is written in buffer-sized pieces; the bytes are
// unchanged and the source's error (EOF, a truncated stream, a timeout)
// comes back with the bytes read before it.
func TestFullReader(t *testing.T) {
	t.Parallel()
	rec := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	errBroken := errors.New("broken")
	tests := []struct {
		name   string
		chunks [][]byte
		end    error
		buf    int
		want   []int // n of each Read of the buffer
		err    error // of the last Read
	}{
		{"records fill the buffer", [][]byte{rec(16, 'a'), rec(16, 'b'), rec(16, 'c'), rec(16, 'd')}, io.EOF, 32, []int{32, 32, 0}, io.EOF},
		{"a short tail before EOF", [][]byte{rec(16, 'a'), rec(5, 'b')}, io.EOF, 32, []int{21}, io.EOF},
		{"truncated stream", [][]byte{rec(16, 'a'), rec(3, 'b')}, io.ErrUnexpectedEOF, 32, []int{19}, io.ErrUnexpectedEOF},
		{"broken connection", [][]byte{rec(7, 'a')}, errBroken, 32, []int{7}, errBroken},
		{"a record larger than the buffer", [][]byte{rec(40, 'a')}, io.EOF, 32, []int{32, 8}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &pieces{chunks: tt.chunks, err: tt.end}
			var want []byte
			for _, c := range tt.chunks {
				want = append(want, c...)
			}
			r := fullReader{src}
			var got []byte
			var err error
			for i, w := range tt.want {
				buf := make([]byte, tt.buf)
				var n int
				n, err = r.Read(buf)
				if n != w {
					t.Fatalf("Read %d returned %d bytes, want %d", i, n, w)
				}
				got = append(got, buf[:n]...)
				if i < len(tt.want)-1 && err != nil {
					t.Fatalf("Read %d: %v before the end", i, err)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("last Read: %v, want %v", err, tt.err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
