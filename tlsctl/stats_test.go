package tlsctl

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

// TestExpiries: every name of the served certificate maps to its NotAfter.
func TestExpiries(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{StateDir: t.TempDir()}, nil)
	info := m.Certificate()
	got := m.Expiries()
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, slices.Sorted(slices.Values(info.Names))) {
		t.Fatalf("Expiries() names %q, want %q", names, info.Names)
	}
	for name, na := range got {
		if !na.Equal(info.NotAfter) {
			t.Errorf("Expiries()[%s] = %v, want %v", name, na, info.NotAfter)
		}
	}
	if s := m.ACMEStats(); s != (ACMEStats{}) {
		t.Errorf("ACMEStats() = %+v outside acme mode", s)
	}
}

// TestACMEEventCounting feeds certmagic's events to the hook.
func TestACMEEventCounting(t *testing.T) {
	t.Parallel()
	events := []struct {
		name string
		data map[string]any
	}{
		{"cert_obtaining", map[string]any{"identifier": "a.test"}},
		{"cert_obtained", map[string]any{"renewal": false}},
		{"cert_failed", map[string]any{"renewal": false, "error": errors.New("x")}},
		{"cert_failed", map[string]any{"renewal": false}},
		{"cert_obtained", map[string]any{"renewal": true}},
		{"cert_obtained", map[string]any{"renewal": true}},
		{"cert_failed", map[string]any{"renewal": true}},
		{"tls_get_certificate", nil},
		{"cached_managed_cert", map[string]any{"sans": []string{"a.test"}}},
	}
	m := &Manager{acme: new(acmeCounters)}
	for _, e := range events {
		if err := m.acme.onEvent(t.Context(), e.name, e.data); err != nil {
			t.Fatalf("onEvent(%s) = %v: an observer must never cancel", e.name, err)
		}
	}
	want := ACMEStats{ObtainOK: 1, ObtainFailed: 2, RenewOK: 2, RenewFailed: 1}
	if got := m.ACMEStats(); got != want {
		t.Errorf("ACMEStats() = %+v, want %+v", got, want)
	}
}
