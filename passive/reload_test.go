package passive

import (
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/test/testutil"
)

// TestReload: a reload changes the advertised address and the local
// networks for bindings made before it, and a change of the port range is
// refused as a whole, keeping the settings in force.
func TestReload(t *testing.T) {
	t.Parallel()
	log, _ := testutil.NewLogger()
	m := newTestManager(t, Config{PublicAddress: "198.51.100.7"}, log)
	b := m.Bind(nil, mustAddrPort(t, "10.0.0.2:21"), mustAddrPort(t, "192.168.1.20:40000"))
	t.Cleanup(b.Close)
	if got := b.PassiveAddr(t.Context()).String(); got != "198.51.100.7" {
		t.Fatalf("before reload: %s", got)
	}
	cfg := m.settings().cfg
	steps := []struct {
		name    string
		change  func(*Config)
		wantErr string
		want    string // PassiveAddr after the step
	}{
		{"new public address", func(c *Config) { c.PublicAddress = "203.0.113.9" }, "", "203.0.113.9"},
		{"peer becomes local", func(c *Config) { c.LocalNetworks = []string{"192.168.0.0/16"} }, "", "10.0.0.2"},
		{"ports change refused", func(c *Config) { c.Ports = "1024-1030"; c.LocalNetworks = nil }, "passive.ports: cannot change without a restart", "10.0.0.2"},
		{"invalid refused", func(c *Config) { c.PublicAddress = "not an address!" }, "passive.public_address", "10.0.0.2"},
		{"local networks dropped", func(c *Config) { c.LocalNetworks = nil }, "", "203.0.113.9"},
	}
	for _, st := range steps {
		next := cfg
		next.LocalNetworks = append([]string(nil), cfg.LocalNetworks...)
		st.change(&next)
		err := m.Reload(next)
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Fatalf("%s: Reload = %v, want %q", st.name, err, st.wantErr)
		case err == nil:
			cfg = next
		}
		if got := b.PassiveAddr(t.Context()).String(); got != st.want {
			t.Errorf("%s: PassiveAddr = %s, want %s", st.name, got, st.want)
		}
	}
}
