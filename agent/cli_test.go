package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"run", "--help"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "sockeye top") {
			t.Errorf("%v: code %d, help without examples:\n%s", args, code, out)
		}
	}
	code, out, _ := runCLI(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "sockeye "+Version) {
		t.Errorf("--version: code %d, %q", code, out)
	}
}

func TestBadCommandLines(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"run", "--nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"run", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"top", "--interval", "soon"}, exitUsage, `invalid value "soon" for flag -interval: invalid duration "soon"`},
		{[]string{"top", "--interval", "10ms"}, exitUsage, "must be at least 100ms"},
		{[]string{"top", "--attribution", "thread"}, exitUsage, "--attribution"},
		{[]string{"top", "--hook", "uprobe"}, exitUsage, "--hook"},
		{[]string{"validate"}, exitUsage, "--config FILE is required"},
		{[]string{"validate", "--config", "/nonexistent/sockeye.yaml"}, exitFailure, "/nonexistent/sockeye.yaml"},
		{[]string{"check", "--config"}, exitUsage, "flag needs an argument: -config"},
		{[]string{"run", "--config", "/nonexistent.yaml"}, exitFailure, "/nonexistent.yaml"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr)
		}
		if !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: stderr %q does not say %q", c.args, stderr, c.msg)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`sources:
  traffic:
exporters:
  console:
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [console]
`), 0o644)
	code, out, errs := runCLI(t, "validate", "--config", good)
	if code != 0 || !strings.Contains(out, "valid (1 pipelines: metrics/traffic)") {
		t.Errorf("good config: code %d out %q err %q", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`sources:
  traffic:
exporters:
  console:
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [otlp/missing]
`), 0o644)
	code, _, errs = runCLI(t, "validate", "--config", bad)
	if code != exitFailure || !strings.Contains(errs, "bad.yaml:8:") || !strings.Contains(errs, `"otlp/missing"`) {
		t.Errorf("bad config: code %d, stderr %q", code, errs)
	}
}

func TestPrintDefaultConfigValidates(t *testing.T) {
	code, out, _ := runCLI(t, "run", "--print-default-config")
	if code != 0 || !strings.Contains(out, "metrics/traffic") {
		t.Fatalf("code %d: %s", code, out)
	}
	path := filepath.Join(t.TempDir(), "default.yaml")
	os.WriteFile(path, []byte(out), 0o644)
	if code, _, errs := runCLI(t, "validate", "--config", path); code != 0 {
		t.Errorf("printed default does not validate: %s", errs)
	}
}
