package tlsctl

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// maxTicketKeys is the current session-ticket key plus two previous ones.
const maxTicketKeys = 3

// minTicketSecret is the least number of bytes a ticket_key_file holds.
const minTicketSecret = 32

// ticketKeyInfo starts the HKDF info of a shared ticket key; the epoch
// follows it as 8 big-endian bytes.
const ticketKeyInfo = "ftpsd ticket key"

// ticketKeys holds the session-ticket keys of the base config and rotates
// them. Keys are set explicitly rather than left to crypto/tls, whose
// automatic keys are created lazily per Config: clones made before the
// first handshake would each get their own and refuse each other's tickets.
//
// Without a secret each node makes random keys. With one (ticket_key_file)
// the keys are derived from it and the epoch, floor(unix time / rotation),
// so that every node holding the same secret computes the same keys at the
// same time and resumes the others' tickets.
type ticketKeys struct {
	base  *tls.Config
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	keys   [][32]byte // encryption key first
	secret []byte     // nil: random keys
	epoch  int64      // of keys, with a secret

	wake      chan struct{} // the secret changed: recompute the next rotation
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// newTicketKeys installs the first keys in base (derived from secret, or
// random when secret is nil) and rotates every interval until close.
func newTicketKeys(base *tls.Config, every time.Duration, secret []byte, log *slog.Logger) *ticketKeys {
	k := &ticketKeys{
		base:   base,
		log:    log,
		every:  every,
		now:    time.Now,
		secret: secret,
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	k.mu.Lock()
	k.rotateLocked()
	k.mu.Unlock()
	go k.run()
	return k
}

func (k *ticketKeys) run() {
	defer close(k.done)
	t := time.NewTimer(k.next())
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-k.wake:
		case <-t.C:
			k.mu.Lock()
			k.rotateLocked()
			k.mu.Unlock()
			k.log.Debug("rotated session ticket keys")
		}
		t.Reset(k.next())
	}
}

// next is the time until the next rotation: a full interval for random
// keys, the start of the next epoch for derived ones (every node turns at
// the same moment, as far as their clocks agree).
func (k *ticketKeys) next() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.secret == nil {
		return k.every
	}
	n := k.now().UnixNano()
	return time.Duration(k.every.Nanoseconds() - n%k.every.Nanoseconds())
}

// rotateLocked installs the keys of now. Random: a new key first (it
// encrypts new tickets) and the two previous ones (they still decrypt
// older tickets). Derived: the keys of the epoch and of the two before it,
// plus the next epoch's for decryption only, so that a node whose clock
// runs a little behind still resumes the tickets of one that already
// turned.
func (k *ticketKeys) rotateLocked() {
	if k.secret == nil {
		var key [32]byte
		rand.Read(key[:]) // never fails: since Go 1.24 it crashes the program instead
		keys := make([][32]byte, 0, maxTicketKeys)
		keys = append(keys, key)
		keys = append(keys, k.keys[:min(len(k.keys), maxTicketKeys-1)]...)
		k.keys = keys
		k.base.SetSessionTicketKeys(keys)
		return
	}
	e := k.now().UnixNano() / k.every.Nanoseconds()
	keys := [][32]byte{deriveTicketKey(k.secret, e), deriveTicketKey(k.secret, e-1), deriveTicketKey(k.secret, e-2), deriveTicketKey(k.secret, e+1)}
	k.epoch, k.keys = e, keys
	k.base.SetSessionTicketKeys(keys)
}

// deriveTicketKey is HKDF-SHA256(secret, info "ftpsd ticket key" || epoch).
func deriveTicketKey(secret []byte, epoch int64) [32]byte {
	info := binary.BigEndian.AppendUint64([]byte(ticketKeyInfo), uint64(epoch))
	b, err := hkdf.Key(sha256.New, secret, nil, string(info), 32)
	if err != nil {
		panic(err) // only for lengths over 255*32 bytes
	}
	return [32]byte(b)
}

// setSecret puts a (re)loaded ticket_key_file in force: the keys are
// derived from it from now on (random ones again when secret is nil). An
// unchanged secret changes nothing.
func (k *ticketKeys) setSecret(secret []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if bytes.Equal(secret, k.secret) && (secret == nil) == (k.secret == nil) {
		return
	}
	k.secret = secret
	if secret == nil {
		k.keys = nil // old derived keys must not outlive their secret
	}
	k.rotateLocked()
	select {
	case k.wake <- struct{}{}:
	default:
	}
	k.log.Info("session ticket keys replaced", "shared", secret != nil)
}

// rotate rotates now, as the timer does (for tests).
func (k *ticketKeys) rotate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rotateLocked()
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

// readTicketSecret reads a ticket_key_file. It holds at least 32 bytes
// (any bytes: `head -c 64 /dev/urandom` and `openssl rand -base64 48`
// both do), and no user but its owner and group may read it, nor the
// group write it: whoever reads it can decrypt every session ticket.
func readTicketSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tls.ticket_key_file: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("tls.ticket_key_file: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("tls.ticket_key_file: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return nil, fmt.Errorf("tls.ticket_key_file: %s has mode %04o; other users could read the session ticket keys (chmod 600 or 640)", path, perm)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("tls.ticket_key_file: %v", err)
	}
	if len(b) < minTicketSecret {
		return nil, fmt.Errorf("tls.ticket_key_file: %s holds %d bytes, want at least %d random bytes (head -c 64 /dev/urandom > %s)", path, len(b), minTicketSecret, path)
	}
	return b, nil
}
