// Package jaeger runs a real Jaeger v2 (built from the modules pinned in
// tools/jaeger) for end-to-end tests of traces pipelines, and reads back
// what it stored through its query API.
//
// Jaeger with no config listens on fixed ports (OTLP on 127.0.0.1:4317 and
// :4318, the query API on :16686): Start holds a machine-wide lock for the
// whole test, so tests that use it never overlap, even across packages.
package jaeger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CacheEnv overrides the directory built tools are cached in (shared with
// internal/testpeer/otelcol).
const CacheEnv = "SOCKEYE_TOOLS_CACHE"

// Pkg is the Jaeger main package, a tool of the tools/jaeger module.
const Pkg = "github.com/jaegertracing/jaeger/cmd/jaeger"

// hashedFiles decide whether a cached binary is current; tools/jaeger/build.sh
// hashes the same files in the same order.
var hashedFiles = []string{"go.mod", "go.sum"}

// BinEnv names a prebuilt Jaeger to run instead of building one: the
// kernel matrix's guests have no Go toolchain.
const BinEnv = "SOCKEYE_JAEGER_BIN"

// Build compiles Jaeger unless a binary for the current go.mod+go.sum is
// cached, and returns its path (or the binary BinEnv names). Safe across
// parallel test binaries: a file lock serialises builds and the binary is
// published by atomic rename.
func Build(ctx context.Context) (string, error) {
	if bin := os.Getenv(BinEnv); bin != "" {
		if !isExecutable(bin) {
			return "", fmt.Errorf("jaeger: %s=%s is not an executable file", BinEnv, bin)
		}
		return bin, nil
	}
	src, err := SourceDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, name := range hashedFiles {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", fmt.Errorf("jaeger: %w", err)
		}
		h.Write(b)
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "jaeger-static-"+hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(dir, "jaeger")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("jaeger: create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("jaeger: lock cache dir: %w", err)
	}
	defer unlock()
	if isExecutable(bin) {
		return bin, nil
	}
	tmp, err := os.CreateTemp(dir, "jaeger.tmp-*")
	if err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName)
	// -mod=readonly: a stale go.sum must fail loudly. GOWORK=off keeps a
	// repository go.work out of the tool's build list.
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-buildvcs=false", "-o", tmpName, Pkg)
	cmd.Dir = src
	// Static, as tools/jaeger/build.sh: the kernel matrix's guests run the
	// same binary and have no C library.
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("jaeger: go build in %s failed: %w\n%s", src, err, strings.TrimSpace(out.String()))
	}
	if err := os.Chmod(tmpName, 0o755); err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	if err := os.Rename(tmpName, bin); err != nil {
		return "", fmt.Errorf("jaeger: publish binary: %w", err)
	}
	return bin, nil
}

// SourceDir returns the tools/jaeger directory, next to this package in the
// repository.
func SourceDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "tools", "jaeger")
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Clean(dir), nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("jaeger: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("jaeger: cannot locate tools/jaeger: not inside the sockeye module")
	}
	return filepath.Join(filepath.Dir(gomod), "tools", "jaeger"), nil
}

func cacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("jaeger: no cache dir (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(d, "sockeye-tools"), nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lockFile takes an exclusive flock on path, polling so ctx can cancel the
// wait. The lock dies with the process, so a crash never wedges it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				once.Do(func() {
					_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
					f.Close()
				})
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
