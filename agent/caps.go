package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/config"
)

// capability is one Linux capability the pipelines may need.
type capability struct {
	bit  uint
	name string
	why  string
}

var (
	capBPF     = capability{unix.CAP_BPF, "CAP_BPF", "load BPF programs and create maps"}
	capPerfmon = capability{unix.CAP_PERFMON, "CAP_PERFMON", "load tracing programs that read kernel memory, and attach them"}
)

// pipelineCaps is what every pipeline needs: each one loads tracing
// programs (fentry, kprobe, tp_btf, raw or tracefs tracepoints) and reads
// kernel structures from them. None attaches to a network device, so
// CAP_NET_ADMIN is not needed (docs/security.md lists the optional ones).
var pipelineCaps = []capability{capBPF, capPerfmon}

// capIPCLock lets perf buffers exceed kernel.perf_event_mlock_kb, which
// tcp_receive's perf and auto transports (auto keeps perf buffers for the
// packets the ring cannot hold) do on any machine with more than a CPU or
// two; its ring transport needs no such thing.
var capIPCLock = capability{unix.CAP_IPC_LOCK, "CAP_IPC_LOCK", "map perf buffers beyond kernel.perf_event_mlock_kb (tcp_receive with transport: auto or perf)"}

// capsFor is what the sources of pl need.
func capsFor(cfg *config.Config, pl *config.Pipeline) []capability {
	need := pipelineCaps
	if memlockUnlimited() {
		return need // perf buffers fit under RLIMIT_MEMLOCK
	}
	for _, id := range pl.Sources {
		if s := cfg.Sources[id]; s != nil && s.TCPReceive != nil && s.TCPReceive.Transport != "ring" {
			need = append(slices.Clip(need), capIPCLock)
		}
	}
	return need
}

// effectiveCaps returns the calling thread's effective capability set.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

func hasCap(set uint64, c uint) bool { return set&(1<<c) != 0 }

// missingCaps lists the capabilities of need that set lacks; CAP_SYS_ADMIN
// stands in for CAP_BPF and CAP_PERFMON, as in the kernel.
func missingCaps(set uint64, need []capability) []capability {
	var miss []capability
	for _, c := range need {
		substitute := (c == capBPF || c == capPerfmon) && hasCap(set, unix.CAP_SYS_ADMIN)
		if !hasCap(set, c.bit) && !substitute {
			miss = append(miss, c)
		}
	}
	return miss
}

// checkCapabilities fails a pipeline before anything loads when the
// process lacks a capability, naming it: the kernel's bare EPERM would not.
func (a *Agent) checkCapabilities(pl *config.Pipeline) error {
	set, err := effectiveCaps()
	if err != nil {
		return nil // let the kernel decide
	}
	miss := missingCaps(set, capsFor(a.cfg, pl))
	if len(miss) == 0 {
		return nil
	}
	var parts, names []string
	for _, c := range miss {
		parts = append(parts, fmt.Sprintf("%s (to %s)", c.name, c.why))
		names = append(names, c.name)
	}
	return fmt.Errorf("missing capability %s: run as root or grant %s (docs/security.md)",
		strings.Join(parts, " and "), strings.Join(names, ", "))
}

// dropCapabilities empties every capability set of every thread and sets
// no_new_privs, once the pipelines are attached: reading maps and rings
// through the file descriptors already held needs no capability on
// kernels 6.5 and later.
func (a *Agent) dropCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	// capset is per thread: AllThreadsSyscall applies it to every thread
	// of the process, which needs a binary built without cgo.
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return capsErr("prctl(PR_SET_NO_NEW_PRIVS)", e)
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return capsErr("capset", e)
	}
	set, err := effectiveCaps()
	if err != nil {
		return err
	}
	if set != 0 {
		return fmt.Errorf("capabilities still effective after dropping them: %#x", set)
	}
	a.capsDropped = true
	a.log.Info("capabilities dropped: running pipelines go on, a reload can no longer attach new ones")
	return nil
}

func capsErr(what string, e syscall.Errno) error {
	if errors.Is(e, syscall.ENOTSUP) {
		return fmt.Errorf("%s on all threads: this binary was built with cgo; build it with CGO_ENABLED=0 to use drop_capabilities", what)
	}
	return fmt.Errorf("%s: %w", what, e)
}

// reportedCaps are the capabilities `sockeye check` shows: the required
// ones and those some rungs or features use (docs/security.md).
var reportedCaps = []capability{capBPF, capPerfmon, capIPCLock,
	{unix.CAP_SYSLOG, "CAP_SYSLOG", "read kernel addresses in /proc/kallsyms (drops: symbol names)"},
	{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", "read tracefs event ids as non-root (tracepoint rung)"},
	{unix.CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE", "raise RLIMIT_MEMLOCK (kernels before 5.11)"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "attach TCX programs (only the check's TCX probe)"},
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "stands in for CAP_BPF and CAP_PERFMON"},
}

func capsReport(set uint64) string {
	var have, lack []string
	for _, c := range reportedCaps {
		if hasCap(set, c.bit) {
			have = append(have, c.name)
		} else {
			lack = append(lack, c.name)
		}
	}
	out := "have " + strings.Join(have, ", ")
	if len(have) == 0 {
		out = "have none of the relevant ones"
	}
	if len(lack) > 0 {
		out += "; lack " + strings.Join(lack, ", ")
	}
	return out
}

// raiseMemlock lifts RLIMIT_MEMLOCK as far as allowed. Kernels since 5.11
// no longer charge maps to it, but perf buffers still count against it
// (or kernel.perf_event_mlock_kb, whichever is larger) unless the process
// has CAP_IPC_LOCK.
func raiseMemlock() {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r) != nil {
		return
	}
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf) != nil && r.Cur != r.Max {
		r.Cur = r.Max
		unix.Setrlimit(unix.RLIMIT_MEMLOCK, &r)
	}
}

func memlockUnlimited() bool {
	var r unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r) == nil && r.Cur == unix.RLIM_INFINITY
}
