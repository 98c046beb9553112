package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the project's module path.
const module = "github.com/ftpsd/ftpsd"

// TestImportDirection keeps the package graph of DESIGN.md: passive, auth
// and tlsctl are leaves of the project, ftps uses only passive and auth (it
// receives its *tls.Config, it never imports tlsctl), and nothing imports
// cmd; the leaves do not import Prometheus either. Only non-test imports count: test code (test/, _test.go) may use
// everything.
func TestImportDirection(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found:", err)
	}
	cmd := exec.CommandContext(t.Context(), goBin, "list", "-e", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}

	imports := map[string][]string{} // package (relative to module) -> project imports
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := rel(fields[0])
		imports[pkg] = nil
		for _, imp := range fields[1:] {
			// The leaves report plain statistics; only cmd/ftpsd and
			// ftps speak Prometheus.
			if strings.HasPrefix(imp, "github.com/prometheus/") && slices.Contains([]string{"auth", "passive", "tlsctl"}, pkg) {
				t.Errorf("%s imports %s; it must stay free of Prometheus (export plain statistics instead)", pkg, imp)
			}
			if r := rel(imp); r != imp {
				imports[pkg] = append(imports[pkg], r)
			}
		}
	}

	allowed := map[string][]string{
		"auth":    nil,
		"passive": nil,
		"tlsctl":  nil,
		"ftps":    {"auth", "passive"},
	}
	for pkg, allow := range allowed {
		got, ok := imports[pkg]
		if !ok {
			t.Errorf("package %s not found by go list", pkg)
			continue
		}
		for _, imp := range got {
			if !slices.Contains(allow, imp) {
				t.Errorf("%s imports %s; allowed project imports: %v", pkg, imp, allow)
			}
		}
	}
	for pkg, got := range imports {
		for _, imp := range got {
			if imp == "cmd" || strings.HasPrefix(imp, "cmd/") {
				t.Errorf("%s imports %s; nothing may import cmd", pkg, imp)
			}
			if strings.HasPrefix(imp, "test/") && !strings.HasPrefix(pkg, "test") {
				t.Errorf("%s imports the test helper %s outside test code", pkg, imp)
			}
		}
	}
}

// rel returns a project import path relative to the module ("ftps"), or
// path unchanged when it is outside the project.
func rel(path string) string {
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r
	}
	return path
}
