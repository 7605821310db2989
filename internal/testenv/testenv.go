// Package testenv decides whether tests that need root and BPF may run, and
// makes them fail instead of skip where they must run (CI sets
// SOCKEYE_REQUIRE_BPF=1).
package testenv

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireEnv is the variable that turns skips into failures.
const RequireEnv = "SOCKEYE_REQUIRE_BPF"

// Required reports whether BPF tests must run here.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// RequireRoot skips the test when not root, or fails it when BPF tests are required.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	Unavailable(t, "needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)")
}

// Unavailable skips, or fails when BPF tests are required.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s, and %s=1 forbids skipping", why, RequireEnv)
	}
	t.Skip(why)
}

// Matrix prints the line the kernel-matrix harness collects. Tests call it
// once per pipeline and rung they exercised.
func Matrix(pipeline, rung, result, note string) {
	line := fmt.Sprintf("KERNEL-MATRIX pipeline=%s rung=%s result=%s", pipeline, rung, result)
	if note != "" {
		line += " note=" + note
	}
	fmt.Println(line)
}

// FreePort returns a loopback TCP port nothing listens on right now (a
// connection to it is refused until a test listens there).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr is FreePort as host:port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// KernelAtLeast compares the running kernel's release with major.minor.
func KernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
