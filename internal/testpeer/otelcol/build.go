package otelcol

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
)

// BinaryName is the file name of the built collector inside its cache dir.
const BinaryName = "otelcol-sockeye"

// CacheEnv overrides the directory built tools are cached in.
const CacheEnv = "SOCKEYE_TOOLS_CACHE"

// hashedFiles are the inputs that decide whether a cached binary is current.
// tools/otelcol/build.sh hashes the same files in the same order.
var hashedFiles = []string{"go.mod", "go.sum", "main.go"}

var (
	buildMu   sync.Mutex
	builtPath string
)

// Build compiles tools/otelcol unless a binary for the current
// go.mod+go.sum+main.go is already cached, and returns the binary's path.
//
// It is safe to call from parallel test binaries: a file lock serialises
// builds of the same version and the binary is published by atomic rename,
// so a reader never sees a partial file.
func Build(ctx context.Context) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtPath != "" {
		if _, err := os.Stat(builtPath); err == nil {
			return builtPath, nil
		}
	}
	src, err := SourceDir()
	if err != nil {
		return "", err
	}
	key, err := sourceHash(src)
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "otelcol-"+key)
	bin := filepath.Join(dir, BinaryName)
	if isExecutable(bin) {
		builtPath = bin
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("otelcol: create cache dir: %w", err)
	}

	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("otelcol: lock cache dir: %w", err)
	}
	defer unlock()
	// Another process may have finished the build while we waited.
	if isExecutable(bin) {
		builtPath = bin
		return bin, nil
	}

	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, BinaryName+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("otelcol: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName)

	// -mod=readonly: a stale go.sum must fail loudly, not be rewritten
	// behind the developer's back. GOWORK=off keeps a repository go.work
	// from pulling the tool into the main module's build list.
	cmd := exec.CommandContext(ctx, goBin, "build", "-mod=readonly", "-buildvcs=false", "-o", tmpName, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("otelcol: go build in %s failed: %w\n%s", src, err, strings.TrimSpace(out.String()))
	}
	if err := os.Chmod(tmpName, 0o755); err != nil {
		return "", fmt.Errorf("otelcol: %w", err)
	}
	if err := os.Rename(tmpName, bin); err != nil {
		return "", fmt.Errorf("otelcol: publish binary: %w", err)
	}
	builtPath = bin
	return bin, nil
}

// SourceDir returns the tools/otelcol directory. It is located relative to
// this source file, falling back to the main module root (via `go env GOMOD`)
// when the file path is unavailable, e.g. under -trimpath.
func SourceDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "tools", "otelcol")
		if fileExists(filepath.Join(dir, "go.mod")) {
			return filepath.Clean(dir), nil
		}
	}
	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("otelcol: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("otelcol: cannot locate tools/otelcol: not inside the sockeye module")
	}
	dir := filepath.Join(filepath.Dir(gomod), "tools", "otelcol")
	if !fileExists(filepath.Join(dir, "go.mod")) {
		return "", fmt.Errorf("otelcol: %s/go.mod not found", dir)
	}
	return dir, nil
}

// CacheDir is $SOCKEYE_TOOLS_CACHE, or sockeye-tools under the user cache dir.
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("otelcol: no cache dir (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(d, "sockeye-tools"), nil
}

// sourceHash must match build.sh: sha256 of the files concatenated, first
// 16 hex digits.
func sourceHash(src string) (string, error) {
	h := sha256.New()
	for _, name := range hashedFiles {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", fmt.Errorf("otelcol: %w", err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New("otelcol: the go command is not on PATH; it is needed to build tools/otelcol")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
