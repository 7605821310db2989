// Package agentbin builds the sockeye binary for end-to-end tests and runs
// it as a child process, the way a user would.
package agentbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BinEnv names a prebuilt agent to run instead of building one: the
// kernel matrix's guests have no Go toolchain.
const BinEnv = "SOCKEYE_AGENT_BIN"

// Build compiles ./agent/cmd/sockeye once per test process, or returns the
// binary BinEnv names.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv(BinEnv); bin != "" {
			buildPath = bin
			if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
				buildErr = fmt.Errorf("%s=%s: not an executable file (%v)", BinEnv, bin, err)
			}
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		// One binary shared by every test process, replaced atomically: a
		// directory per process would leave 30 MB behind each run, and a
		// running agent keeps the file it was started from.
		dir := filepath.Join(os.TempDir(), "sockeye-test-bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		// Others may run it (tests drop to user nobody with setpriv).
		os.Chmod(dir, 0o755)
		tmp, err := os.CreateTemp(dir, "sockeye-*.tmp")
		if err != nil {
			buildErr = err
			return
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		cmd := exec.Command("go", "build", "-o", tmp.Name(), "./agent/cmd/sockeye")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build sockeye: %v\n%s", err, out)
			return
		}
		buildPath = filepath.Join(dir, "sockeye")
		buildErr = os.Rename(tmp.Name(), buildPath)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Agent is a running sockeye process.
type Agent struct {
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{}
	err    error
}

// Start runs sockeye with args and extra environment, and stops it (SIGKILL)
// at test end if the test has not.
func Start(t testing.TB, env []string, args ...string) *Agent {
	t.Helper()
	return StartWrapped(t, env, nil, args...)
}

// StartWrapped runs sockeye under wrapper (e.g. setpriv and its options):
// wrapper[0] runs with wrapper[1:], the sockeye binary and args.
func StartWrapped(t testing.TB, env, wrapper []string, args ...string) *Agent {
	t.Helper()
	a := &Agent{done: make(chan struct{})}
	argv := append(append(append([]string{}, wrapper...), Build(t)), args...)
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stdout = &a.stdout
	a.cmd.Stderr = &a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("sockeye stderr:\n%s", a.stderr.String())
		}
	})
	return a
}

// WaitLog waits until stderr contains s; the agent exiting first fails
// the test.
func (a *Agent) WaitLog(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	if !a.WaitLogOrExit(t, s, timeout) {
		t.Fatalf("sockeye exited (%v) before logging %q:\n%s", a.err, s, a.stderr.String())
	}
}

// WaitLogOrExit waits until stderr contains s (true) or the agent exits
// without having logged it (false); neither within timeout fails the test.
func (a *Agent) WaitLogOrExit(t testing.TB, s string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(a.stderr.String(), s) {
			return true
		}
		select {
		case <-a.done:
			return strings.Contains(a.stderr.String(), s)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("sockeye did not log %q within %s:\n%s", s, timeout, a.stderr.String())
	return false
}

// Stop sends sig and waits for the exit; it returns the exit code.
func (a *Agent) Stop(t testing.TB, sig syscall.Signal, timeout time.Duration) int {
	t.Helper()
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(timeout):
		t.Fatalf("sockeye did not exit within %s of %v", timeout, sig)
	}
	return a.cmd.ProcessState.ExitCode()
}

// PID is the process id (of the wrapper's exec'd sockeye, as setpriv execs).
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Exited reports whether the process has exited, and its exit code.
func (a *Agent) Exited() (bool, int) {
	select {
	case <-a.done:
		return true, a.cmd.ProcessState.ExitCode()
	default:
		return false, 0
	}
}

func (a *Agent) Stdout() string { return a.stdout.String() }
func (a *Agent) Stderr() string { return a.stderr.String() }

type syncBuffer = testenv.SyncBuffer
