package ftps

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestThrottledReader: the bytes pass unchanged, reads are cut to the
// burst, a burst that shrinks between the read and the wait is handled,
// and a cancelled context ends a wait at once.
func TestThrottledReader(t *testing.T) {
	t.Parallel()
	if r := strings.NewReader("x"); throttle(context.Background(), r) != io.Reader(r) {
		t.Error("throttle without a limiter must return the reader itself")
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	fast := newLimiter(64 << 20)                            // burst 6.4 MiB: no wait
	capped := newLimiter(0)                                 // unlimited
	r := throttle(context.Background(), bytes.NewReader(data), fast, capped, nil).(*throttledReader)
	if len(r.lims) != 2 {
		t.Fatalf("%d limiters kept, want 2 (nil dropped)", len(r.lims))
	}
	setRate(fast, 100<<10) // burst 64 KiB
	buf := make([]byte, 256<<10)
	n, err := r.Read(buf)
	if err != nil || n != 64<<10 {
		t.Errorf("Read = %d, %v; want one burst of 65536", n, err)
	}
	setRate(fast, 64<<20)
	var got bytes.Buffer
	got.Write(buf[:n])
	if _, err := io.Copy(&got, r); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Errorf("copied %d bytes (%v), not the data", got.Len(), err)
	}

	// The burst shrank below the piece already read: waited in pieces.
	l := newLimiter(10 << 20) // burst 1 MiB, full
	setRate(l, 2<<20)         // burst 204.8 KiB
	if err := waitN(context.Background(), l, 300<<10); err != nil {
		t.Errorf("waitN over a shrunk burst: %v", err)
	}

	// A wait of a minute ends with its context.
	slow := newLimiter(1 << 10)
	slow.WaitN(context.Background(), minBurst) // take the initial burst
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if err := waitN(ctx, slow, minBurst); !errors.Is(err, context.Canceled) {
		t.Errorf("waitN = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the cancelled wait took %v", d)
	}
}
