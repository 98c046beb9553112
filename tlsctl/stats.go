package tlsctl

import (
	"context"
	"sync/atomic"
	"time"
)

// ACMEStats counts certmagic's issuance results since the Manager started
// (reloads keep the counts). All zero outside acme mode.
type ACMEStats struct {
	ObtainOK, ObtainFailed uint64 // first issuance of a name
	RenewOK, RenewFailed   uint64 // renewals
}

// acmeCounters are the live counters behind ACMEStats, fed by certmagic's
// OnEvent hook.
type acmeCounters struct {
	obtainOK, obtainFailed, renewOK, renewFailed atomic.Uint64
}

// onEvent is certmagic.Config.OnEvent. certmagic calls it for every event
// (one per handshake, too), so it only switches on the name. It never
// cancels anything: it returns nil.
func (c *acmeCounters) onEvent(_ context.Context, event string, data map[string]any) error {
	var ok bool
	switch event {
	case "cert_obtained":
		ok = true
	case "cert_failed":
	default:
		return nil
	}
	renewal, _ := data["renewal"].(bool)
	switch {
	case renewal && ok:
		c.renewOK.Add(1)
	case renewal:
		c.renewFailed.Add(1)
	case ok:
		c.obtainOK.Add(1)
	default:
		c.obtainFailed.Add(1)
	}
	return nil
}

// ACMEStats returns the counts of ACME obtains and renewals, successful
// and failed.
func (m *Manager) ACMEStats() ACMEStats {
	c := m.acme
	return ACMEStats{
		ObtainOK: c.obtainOK.Load(), ObtainFailed: c.obtainFailed.Load(),
		RenewOK: c.renewOK.Load(), RenewFailed: c.renewFailed.Load(),
	}
}

// expiries is implemented by sources that serve more than one certificate
// (acme mode: one per domain).
type expiries interface {
	Expiries() map[string]time.Time
}

// Expiries returns, for each name the served certificates cover, the end
// of validity (NotAfter) of the certificate served for it. A name with no
// certificate yet (acme mode before the first issuance) is left out.
func (m *Manager) Expiries() map[string]time.Time {
	src := m.src.Load().source
	if e, ok := src.(expiries); ok {
		return e.Expiries()
	}
	info := src.Info()
	out := make(map[string]time.Time, len(info.Names))
	if info.NotAfter.IsZero() {
		return out
	}
	for _, n := range info.Names {
		out[n] = info.NotAfter
	}
	return out
}

// Expiries returns the NotAfter of the newest cached certificate of each
// configured domain.
func (s *acmeSource) Expiries() map[string]time.Time {
	out := make(map[string]time.Time, len(s.domains))
	for _, d := range s.domains {
		for _, c := range s.cache.AllMatchingCertificates(d) {
			if c.Leaf != nil && c.Leaf.NotAfter.After(out[d]) {
				out[d] = c.Leaf.NotAfter
			}
		}
	}
	return out
}
