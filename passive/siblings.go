package passive

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"sync"
	"time"
)

// sessionSet holds every open Binding by its ticket tag, so that a data
// connection can tell whose ticket it was given: its own session's, a
// sibling's of the same user and address ("user" mode accepts those), or
// someone else's (named in the refusal log).
type sessionSet struct {
	mu    sync.Mutex
	byTag map[string]*Binding
}

func (s *sessionSet) add(b *Binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byTag == nil {
		s.byTag = make(map[string]*Binding)
	}
	s.byTag[string(b.tag)] = b
}

func (s *sessionSet) remove(b *Binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byTag, string(b.tag))
}

func (s *sessionSet) lookup(tag []byte) *Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byTag[string(tag)]
}

// SetUser records the user the control session is logged in as: call it
// after a successful login, and with "" when the session logs out. In
// "user" mode (Config.TLSResumption) a data connection may resume a ticket
// issued to another open session of the same user from the same client
// IP; the user is read when the data connection arrives, so a ticket
// minted before login (AUTH TLS comes before USER) counts only once its
// session has logged in, and only as long as it stays logged in and open.
func (b *Binding) SetUser(name string) {
	b.mu.Lock()
	b.user = name
	b.notifyLocked()
	b.mu.Unlock()
}

// notifyLocked wakes the data connections waiting for this session to log
// in (or end). b.mu is held.
func (b *Binding) notifyLocked() {
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

// loggedIn returns the session's user, or "" before login and after Close.
func (b *Binding) loggedIn() string {
	u, _, _ := b.state()
	return u
}

// state returns the session's user ("" before login), whether it has
// ended, and a channel closed at its next change of either.
func (b *Binding) state() (user string, closed bool, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	if b.closed {
		return "", true, b.changed
	}
	return b.user, false, b.changed
}

// waitLogin waits until o, an open session from b's address, has logged in
// or ended, or ctx is done. A client with one ticket cache for all its
// connections gets a new control session's ticket at AUTH TLS and may
// present it on a data connection of an older session before the new
// one's USER and PASS are through.
func (b *Binding) waitLogin(ctx context.Context, o *Binding) {
	for {
		user, closed, changed := o.state()
		if user != "" || closed {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// ticketKind is what a data connection presented as its session ticket.
type ticketKind uint8

const (
	ticketNone         ticketKind = iota // no ticket
	ticketUnreadable                     // not ours, expired, or under a retired key
	ticketUntagged                       // issued without a session tag (a refused data connection's)
	ticketOwn                            // this session's
	ticketSibling                        // an open session's of the same user from the same address
	ticketNotLoggedIn                    // an open session's from the same address, but one of the two has not logged in
	ticketOtherUser                      // an open session's of another user
	ticketOtherAddress                   // an open session's from another client address
	ticketClosed                         // a session that has ended
)

func (k ticketKind) String() string {
	return [...]string{"none", "unreadable", "untagged", "own", "sibling", "not_logged_in",
		"other_user", "other_address", "closed_session"}[k]
}

func isTag(e []byte) bool { return bytes.HasPrefix(e, []byte(tagPrefix)) }

// classify says whose ticket ss is, from b's point of view, and returns the
// tag it carries.
func (b *Binding) classify(ss *tls.SessionState) (ticketKind, []byte) {
	i := slices.IndexFunc(ss.Extra, isTag)
	if i < 0 {
		return ticketUntagged, nil
	}
	tag := ss.Extra[i]
	if bytes.Equal(tag, b.tag) {
		return ticketOwn, tag
	}
	o := b.m.sessions.lookup(tag)
	if o == nil {
		return ticketClosed, tag
	}
	if o.remote.Addr() != b.remote.Addr() {
		return ticketOtherAddress, tag
	}
	mine, theirs := b.loggedIn(), o.loggedIn()
	switch {
	case mine == "" || theirs == "":
		return ticketNotLoggedIn, tag
	case mine != theirs:
		return ticketOtherUser, tag
	}
	return ticketSibling, tag
}

// dataCheck is what the ticket hooks of one data connection learnt during
// its handshake (which runs in one goroutine; read it after the handshake).
type dataCheck struct {
	ticket   ticketKind    // the (last) ticket the client presented
	resumed  []byte        // the tag of the session it resumed, if any
	noTicket bool          // a full handshake was failed rather than sent a ticket
	waited   time.Duration // for a sibling's login
}

// errNoTicket fails the handshake of a data connection that is about to be
// refused, before it is sent a ticket.
var errNoTicket = errors.New("passive: data connection did not resume; no ticket issued")

// dataConfig returns the TLS config of one data connection: a clone of the
// server's config (its current ticket keys, so that a sibling's newer
// tickets are readable too) that resumes this session's tickets and, in
// "user" mode, those of open sibling sessions.
//
// A ticket the data connection issues is tagged only when the connection
// resumed a tagged session, and with that session's tag: were the ticket of
// a refused full handshake tagged, its client could come back with it and
// take over the session's next data connection. In "required" and "user"
// mode, which refuse every full handshake, such a connection is sent no
// ticket at all (its handshake fails instead): an untagged ticket would
// displace the good one in a cache that the client shares across its
// connections, and refuse them all from then on.
//
// wait bounds the wait for a sibling that is still logging in (waitLogin).
func (b *Binding) dataConfig(wait context.Context, mode resumptionMode) (*tls.Config, *dataCheck) {
	chk := &dataCheck{}
	cfg := b.base.Clone()
	// Full 16 KiB records from the first byte: a data connection moves
	// files, and small first records (sized for a web page's first
	// paint) only cost records and system calls.
	cfg.DynamicRecordSizingDisabled = true
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if !cs.DidResume && (mode == modeRequired || mode == modeUser) {
			chk.noTicket = true
			return nil, errNoTicket
		}
		ss.Extra = slices.DeleteFunc(ss.Extra, isTag)
		if cs.DidResume && chk.resumed != nil {
			ss.Extra = append(ss.Extra, chk.resumed)
		}
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		if len(identity) == 0 { // TLS 1.2: tickets supported, none held
			return nil, nil
		}
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			chk.ticket = ticketUnreadable
			return nil, nil
		}
		kind, tag := b.classify(ss)
		if kind == ticketNotLoggedIn && mode == modeUser && b.loggedIn() != "" {
			if o := b.m.sessions.lookup(tag); o != nil {
				start := time.Now()
				b.waitLogin(wait, o)
				chk.waited += time.Since(start)
				kind, tag = b.classify(ss)
			}
		}
		chk.ticket = kind
		if kind == ticketOwn || kind == ticketSibling && mode == modeUser {
			chk.resumed = tag
			return ss, nil
		}
		// No resumption: a full handshake, DidResume == false.
		return nil, nil
	}
	return cfg, chk
}
