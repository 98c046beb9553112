package passive

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// maxBindAttempts bounds how many free ports one Listen tries to bind before
// it gives up with ErrNoPorts (ports can be held by other processes).
const maxBindAttempts = 32

// portPool tracks which ports of [first, last] this process holds. A
// reservation carries an id so that releasing it twice, even after the port
// was handed out again, cannot free somebody else's reservation.
type portPool struct {
	first, last uint16

	mu     sync.Mutex
	used   map[uint16]uint64 // port -> reservation id
	nextID uint64
}

func newPortPool(first, last uint16) *portPool {
	return &portPool{first: first, last: last, used: make(map[uint16]uint64)}
}

func (p *portPool) size() int { return int(p.last) - int(p.first) + 1 }

func (p *portPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}

// candidates returns up to n free ports in random order.
func (p *portPool) candidates(n int) []uint16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	free := make([]uint16, 0, p.size()-len(p.used))
	for port := int(p.first); port <= int(p.last); port++ {
		if _, ok := p.used[uint16(port)]; !ok {
			free = append(free, uint16(port))
		}
	}
	n = min(n, len(free))
	for i := range n { // partial Fisher-Yates: only the first n matter
		j := i + rand.IntN(len(free)-i)
		free[i], free[j] = free[j], free[i]
	}
	return free[:n]
}

// reserve marks port as used; it fails if the port is taken meanwhile.
func (p *portPool) reserve(port uint16) (id uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, taken := p.used[port]; taken {
		return 0, false
	}
	p.nextID++
	p.used[port] = p.nextID
	return p.nextID, true
}

// release frees port if it is still held by reservation id; otherwise it is
// a no-op, which makes double release harmless.
func (p *portPool) release(port uint16, id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[port] == id {
		delete(p.used, port)
	}
}

// listen binds a random free port of the pool on ip. A port that another
// process holds is skipped; after maxBindAttempts ports (or when none is
// free) it returns ErrNoPorts. An invalid ip listens on all addresses.
func (p *portPool) listen(ip netip.Addr) (*net.TCPListener, uint16, uint64, error) {
	network := "tcp"
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		network = "tcp4"
	case ip.Is6():
		network = "tcp6"
	}
	// No TCP keep-alive on data connections: one lives for one transfer,
	// under the stall timeout, and the four setsockopt calls keep-alive
	// costs per connection are a measurable part of a small file's.
	lc := net.ListenConfig{KeepAlive: -1}
	busy := 0
	cands := p.candidates(maxBindAttempts)
	for _, port := range cands {
		id, ok := p.reserve(port)
		if !ok {
			continue
		}
		addr := &net.TCPAddr{Port: int(port)}
		if ip.IsValid() {
			addr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, port))
		}
		ln, err := lc.Listen(context.Background(), network, addr.String())
		if err == nil {
			return ln.(*net.TCPListener), port, id, nil
		}
		p.release(port, id)
		if errors.Is(err, syscall.EADDRINUSE) {
			busy++
			continue
		}
		return nil, 0, 0, fmt.Errorf("passive: listen: %w", err)
	}
	return nil, 0, 0, &exhaustedError{tried: len(cands), busy: busy}
}

// exhaustedError is ErrNoPorts with the counts for the log line.
type exhaustedError struct {
	tried, busy int
}

func (e *exhaustedError) Error() string { return ErrNoPorts.Error() }
func (e *exhaustedError) Unwrap() error { return ErrNoPorts }
