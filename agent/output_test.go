package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bpfFDs lists this process's BPF objects (programs, links, maps): what
// a capture or an agent that attached anything would still hold.
func bpfFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(l, "anon_inode:bpf") {
			out = append(out, l)
		}
	}
	return out
}

// readOnlyDir is a directory nothing can be created in: a read-only tmpfs
// as root (root ignores permission bits), a mode 0555 directory otherwise.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return dir
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY, "size=64k"); err != nil {
		t.Fatalf("mount a read-only tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// runMain runs the command line in this process, failing the test if it
// has not returned within a minute (it would be running pipelines).
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := runCLI(t, args...)
		done <- result{code, stderr}
	}()
	select {
	case r := <-done:
		return r.code, r.stderr
	case <-time.After(time.Minute):
		t.Fatalf("%v still running after a minute: the bad output path did not stop it", args)
	}
	return 0, ""
}

// TestCaptureUnwritableOutput: `sockeye capture -w` into a missing or
// read-only directory fails at once, naming the path and the cause, before
// anything is loaded into the kernel.
func TestCaptureUnwritableOutput(t *testing.T) {
	for _, c := range []struct {
		name, path string
		causes     []string
	}{
		{"missing directory", "/nonexistent/dir/x.pcapng", []string{"no such file or directory"}},
		{"read-only directory", filepath.Join(readOnlyDir(t), "x.pcapng"), []string{"read-only file system", "permission denied"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(bpfFDs(t))
			code, stderr := runMain(t, "capture", "-i", "lo", "-w", c.path, "port", "9")
			if code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			want := "sockeye capture: -w: cannot create capture file " + c.path + ": "
			if !strings.Contains(stderr, want) || !containsAny(stderr, c.causes) {
				t.Errorf("stderr does not say %q and one of %q:\n%s", want, c.causes, stderr)
			}
			if strings.Contains(stderr, "listening on") || strings.Contains(stderr, "packets captured") {
				t.Errorf("the capture started:\n%s", stderr)
			}
			if after := bpfFDs(t); len(after) != before {
				t.Errorf("BPF objects held: %d before, %v after", before, after)
			}
		})
	}
}

// TestConfigUnwritablePcapng: a config whose pcapng exporter writes into a
// missing or read-only directory stops the agent before the kernel is
// touched, the error naming the config file and line, the exporter's key
// and the path; the other pipelines do not start either.
func TestConfigUnwritablePcapng(t *testing.T) {
	for _, c := range []struct {
		name, path string
		causes     []string
	}{
		{"missing directory", "/nonexistent/dir/rx.pcapng", []string{"no such file or directory"}},
		{"read-only directory", filepath.Join(readOnlyDir(t), "rx.pcapng"), []string{"read-only file system", "permission denied"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  traffic:
  tcp_receive:
exporters:
  console:
  pcapng/rx:
    path: %s
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [console]
  packets:
    sources: [tcp_receive]
    exporters: [pcapng/rx]
`, c.path)), 0o644)
			before := len(bpfFDs(t))
			code, stderr := runMain(t, "run", "--config", cfg)
			if code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			want := cfg + ":6: exporters.pcapng/rx.path: cannot create capture file " + c.path + ": "
			if !strings.Contains(stderr, "sockeye cannot start") || !strings.Contains(stderr, want) || !containsAny(stderr, c.causes) {
				t.Errorf("stderr does not say %q and one of %q:\n%s", want, c.causes, stderr)
			}
			// Exporters are made before the kernel's types are even read.
			for _, started := range []string{"kernel types", "pipeline started"} {
				if strings.Contains(stderr, started) {
					t.Errorf("the agent logged %q before failing:\n%s", started, stderr)
				}
			}
			if after := bpfFDs(t); len(after) != before {
				t.Errorf("BPF objects held: %d before, %v after", before, after)
			}
		})
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
