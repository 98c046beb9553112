package tlsctl

import (
	"crypto/rand"
	"crypto/tls"
	"log/slog"
	"sync"
	"time"
)

// maxTicketKeys is the current session-ticket key plus two previous ones.
const maxTicketKeys = 3

// ticketKeys holds the session-ticket keys of the base config and rotates
// them. Keys are set explicitly rather than left to crypto/tls, whose
// automatic keys are created lazily per Config: clones made before the
// first handshake would each get their own and refuse each other's tickets.
type ticketKeys struct {
	base *tls.Config
	log  *slog.Logger

	mu   sync.Mutex
	keys [][32]byte // newest first, at most maxTicketKeys

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// newTicketKeys installs a first random key in base and rotates every
// interval until close.
func newTicketKeys(base *tls.Config, every time.Duration, log *slog.Logger) *ticketKeys {
	k := &ticketKeys{
		base: base,
		log:  log,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	k.rotate()
	go k.run(every)
	return k
}

func (k *ticketKeys) run(every time.Duration) {
	defer close(k.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			k.rotate()
			k.log.Debug("rotated session ticket keys")
		}
	}
}

// rotate puts a new random key first (it encrypts new tickets) and keeps
// the two previous ones (they still decrypt older tickets).
func (k *ticketKeys) rotate() {
	var key [32]byte
	rand.Read(key[:]) // never fails: since Go 1.24 it crashes the program instead
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := make([][32]byte, 0, maxTicketKeys)
	keys = append(keys, key)
	keys = append(keys, k.keys[:min(len(k.keys), maxTicketKeys-1)]...)
	k.keys = keys
	k.base.SetSessionTicketKeys(keys)
}

// count reports how many keys are installed (for tests).
func (k *ticketKeys) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// close stops the rotation and waits for its goroutine.
func (k *ticketKeys) close() {
	k.closeOnce.Do(func() { close(k.stop) })
	<-k.done
}
