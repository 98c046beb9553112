package passive

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/test/testutil"
)

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// plainBinding binds a plain-FTP session from 127.0.0.1 on a manager over
// n free ports.
func plainBinding(t *testing.T, n int) (*Manager, *Binding, *testutil.LogBuffer) {
	t.Helper()
	first, last := freeRange(t, n)
	log, logs := testutil.NewLogger()
	m := newTestManager(t, Config{Ports: strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))}, log)
	b := m.Bind(nil, mustAddrPort(t, "127.0.0.1:21"), mustAddrPort(t, "127.0.0.1:40000"))
	t.Cleanup(b.Close)
	return m, b, logs
}

// listenInRange listens on b and fails unless the port is within m's range.
func listenInRange(t *testing.T, m *Manager, b *Binding) *Listener {
	t.Helper()
	l := mustListen(t, b)
	if first, last := m.settings().cfg.PortRange(); l.Port() < first || l.Port() > last {
		t.Fatalf("port %d outside %d-%d", l.Port(), first, last)
	}
	return l
}

func TestPortsExhaustionAndReuse(t *testing.T) {
	t.Parallel()
	m, b, logs := plainBinding(t, 3)
	if m.Size() != 3 {
		t.Fatalf("Size() = %d, want 3", m.Size())
	}
	first, _ := m.settings().cfg.PortRange()
	seen := map[uint16]*Listener{}
	for range 3 {
		l := listenInRange(t, m, b)
		if seen[l.Port()] != nil {
			t.Fatalf("port %d handed out twice", l.Port())
		}
		seen[l.Port()] = l
	}
	if got := m.InUse(); got != 3 {
		t.Fatalf("InUse() = %d, want 3", got)
	}
	if _, err := b.Listen(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("Listen on a full range: %v, want ErrNoPorts", err)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "size=3 in_use=3") {
		t.Errorf("exhaustion not logged at Warn with counts:\n%s", out)
	}

	// Reuse: the released port is the only free one, so it comes back.
	freed := seen[first]
	if freed == nil {
		for _, l := range seen {
			freed = l
			break
		}
	}
	freed.Close()
	if got := m.InUse(); got != 2 {
		t.Fatalf("InUse() after Close = %d, want 2", got)
	}
	again, err := b.Listen()
	if err != nil {
		t.Fatalf("Listen after a release: %v", err)
	}
	if again.Port() != freed.Port() {
		t.Fatalf("got port %d, want the released %d", again.Port(), freed.Port())
	}

	// Double close: the old Listener must not free the port its
	// successor now holds.
	freed.Close()
	if got := m.InUse(); got != 3 {
		t.Fatalf("InUse() after a double Close = %d, want 3", got)
	}
	if _, err := b.Listen(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("double Close freed a port in use: %v", err)
	}

	b.Close()
	if got := m.InUse(); got != 0 {
		t.Fatalf("InUse() after Binding.Close = %d, want 0", got)
	}
	if _, err := b.Listen(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Listen after Binding.Close: %v, want ErrClosed", err)
	}
}

func TestPortsRandomWithinRange(t *testing.T) {
	t.Parallel()
	m, b, _ := plainBinding(t, 6)
	counts := map[uint16]int{}
	for range 60 {
		l := listenInRange(t, m, b)
		counts[l.Port()]++
		l.Close()
	}
	// With 60 uniform draws over 6 ports, fewer than 3 distinct ports is
	// vanishingly unlikely unless the choice is not random.
	if len(counts) < 3 {
		t.Fatalf("ports not random: %v", counts)
	}
}

func TestPortsSkipBusy(t *testing.T) {
	t.Parallel()
	m, b, logs := plainBinding(t, 2)
	first, last := m.settings().cfg.PortRange()
	// Another process (here: another socket) holds the first port.
	other, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(int(first)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for range 5 {
		l, err := b.Listen()
		if err != nil {
			t.Fatalf("Listen with one busy port: %v", err)
		}
		if l.Port() != last {
			t.Fatalf("got port %d, want the free %d", l.Port(), last)
		}
		l.Close()
	}
	l := mustListen(t, b)
	defer l.Close()
	if _, err := b.Listen(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("Listen with no bindable port: %v, want ErrNoPorts", err)
	}
	if out := logs.String(); !strings.Contains(out, "busy=1") {
		t.Errorf("busy port not counted in the log:\n%s", out)
	}
	if got := m.InUse(); got != 1 {
		t.Fatalf("InUse() = %d, want 1 (a busy port is not kept)", got)
	}
}

func TestPortPoolRelease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		steps  func(p *portPool)
		inUse  int
		freeOf uint16 // a port that must be reservable afterwards, or 0
	}{
		{"release frees", func(p *portPool) {
			id, _ := p.reserve(10)
			p.release(10, id)
		}, 0, 10},
		{"double release", func(p *portPool) {
			id, _ := p.reserve(10)
			p.release(10, id)
			p.release(10, id)
		}, 0, 10},
		{"stale release keeps the new holder", func(p *portPool) {
			id, _ := p.reserve(10)
			p.release(10, id)
			p.reserve(10)
			p.release(10, id)
		}, 1, 11},
		{"release of a port never held", func(p *portPool) {
			p.reserve(11)
			p.release(10, 1)
		}, 1, 10},
		{"reserve twice fails", func(p *portPool) {
			p.reserve(10)
			if _, ok := p.reserve(10); ok {
				panic("port reserved twice")
			}
		}, 1, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPortPool(10, 12)
			tt.steps(p)
			if got := p.inUse(); got != tt.inUse {
				t.Fatalf("inUse() = %d, want %d", got, tt.inUse)
			}
			if tt.freeOf != 0 {
				if _, ok := p.reserve(tt.freeOf); !ok {
					t.Fatalf("port %d not free", tt.freeOf)
				}
			}
			if got := len(p.candidates(100)); got != p.size()-p.inUse() {
				t.Fatalf("candidates: %d, want %d", got, p.size()-p.inUse())
			}
		})
	}
}

func TestListenAfterManagerClose(t *testing.T) {
	t.Parallel()
	m, b, _ := plainBinding(t, 2)
	m.Close()
	m.Close()
	if _, err := b.Listen(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Listen after Manager.Close: %v, want ErrClosed", err)
	}
}
