package tlsctl

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestACMEDefaults(t *testing.T) {
	c := Config{Mode: ModeACME, StateDir: "/state", Domains: []string{"ftp.example.com"}, AgreeToTerms: true, CA: "staging"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.CA != LetsEncryptStaging || c.Storage != filepath.Join("/state", "acme") ||
		c.HTTPPort != 80 || c.TLSALPNPort != 443 || len(c.Challenges) != 1 || c.Challenges[0] != ChallengeHTTP01 ||
		c.RenewCheckInterval != defaultRenewCheckInterval || c.ObtainTimeout != defaultObtainTimeout {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{Mode: ModeACME, StateDir: "/state", Domains: []string{"ftp.example.com"}, AgreeToTerms: true}
	c.Validate()
	if c.CA != LetsEncryptProduction {
		t.Errorf("default CA %q", c.CA)
	}
}

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	zl := newZapLogger(log).Named("obtain").With(zap.String("identifier", "a.example"))
	zl.Debug("hidden")
	zl.Error("could not get certificate", zap.Int("attempt", 2), zap.String("b", "x"))
	out := buf.String()
	for _, want := range []string{"level=ERROR", `msg="could not get certificate"`, "identifier=a.example", "logger=obtain", "attempt=2", "b=x"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Error("debug entry passed an info handler")
	}
}

func TestSplitTXT(t *testing.T) {
	long := strings.Repeat("a", 600)
	parts := splitTXT(long)
	if len(parts) != 3 || len(parts[0]) != 255 || strings.Join(parts, "") != long {
		t.Errorf("splitTXT: %d parts", len(parts))
	}
	if p := splitTXT("short"); len(p) != 1 || p[0] != "short" {
		t.Errorf("splitTXT(short) = %q", p)
	}
}
