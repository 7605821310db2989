package testenv

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Kernel is the running kernel's BTF (or the file SOCKEYE_TEST_BTF names),
// for tests that load programs: root only, and skipped where BTF is
// missing unless SOCKEYE_REQUIRE_BPF says the machine must have it.
func Kernel(t testing.TB) *hooks.Kernel {
	t.Helper()
	RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	k, err := hooks.LoadKernel(os.Getenv("SOCKEYE_TEST_BTF"))
	if err != nil {
		Unavailable(t, err.Error())
	}
	return k
}
