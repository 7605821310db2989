// Package hooks knows what the running kernel allows: where its BTF comes
// from, which functions and tracepoints it has, and which hook kinds load.
// Every source climbs its own ladder of rungs with it.
package hooks

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf/btf"
)

// KernelBTFPath is where a kernel built with CONFIG_DEBUG_INFO_BTF exposes its types.
const KernelBTFPath = "/sys/kernel/btf/vmlinux"

// Kernel is the type information of the running kernel.
type Kernel struct {
	// Types are the kernel's BTF types, from the kernel or an external file.
	Types *btf.Spec
	// Source says where Types came from.
	Source string
	// Native is true when the kernel itself exposes BTF; fentry, fexit and
	// tp_btf programs attach by BTF id and need it, whatever file CO-RE uses.
	Native bool
}

// ErrNoBTF is returned when neither the kernel nor the configuration gives BTF.
var ErrNoBTF = errors.New("kernel BTF not found at " + KernelBTFPath +
	": this kernel was built without CONFIG_DEBUG_INFO_BTF; give a BTF file for it with --btf FILE or the config key `btf:` (BTFHub publishes them for many distribution kernels)")

// LoadKernel reads the kernel's BTF, or externalPath when it is not empty.
func LoadKernel(externalPath string) (*Kernel, error) {
	_, statErr := os.Stat(KernelBTFPath)
	native := statErr == nil
	if externalPath != "" {
		spec, err := btf.LoadSpec(externalPath)
		if err != nil {
			return nil, fmt.Errorf("btf %s: %w", externalPath, err)
		}
		return &Kernel{Types: spec, Source: externalPath, Native: native}, nil
	}
	if !native {
		return nil, ErrNoBTF
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", KernelBTFPath, err)
	}
	return &Kernel{Types: spec, Source: KernelBTFPath, Native: true}, nil
}

// Release drops the types once every program is loaded: the inflated
// kernel BTF is tens of MiB that nothing needs after that. Using the
// Kernel afterwards panics.
func (k *Kernel) Release() {
	if k != nil {
		k.Types = nil
	}
}

// HasFunc reports whether the kernel has a function of that name in its BTF
// (a function that is inlined everywhere has none and cannot be traced).
func (k *Kernel) HasFunc(name string) bool {
	var fn *btf.Func
	return k.Types.TypeByName(name, &fn) == nil
}

// FirstFunc returns the first of names the kernel has, or "".
func (k *Kernel) FirstFunc(names ...string) string {
	for _, n := range names {
		if k.HasFunc(n) {
			return n
		}
	}
	return ""
}

// HasTracepoint reports whether the kernel defines the tracepoint, through
// the btf_trace_<name> typedef every tracepoint gets; this needs no tracefs.
func (k *Kernel) HasTracepoint(name string) bool {
	var td *btf.Typedef
	return k.Types.TypeByName("btf_trace_"+name, &td) == nil
}

// FirstTracepoint returns the first of names the kernel defines, or "".
func (k *Kernel) FirstTracepoint(names ...string) string {
	for _, n := range names {
		if k.HasTracepoint(n) {
			return n
		}
	}
	return ""
}

// Tracepoints that fire in the task sending (receiving) on a socket, best
// first for TCP: TCP's own, tcp:tcp_sendmsg_locked (6.6+) before any data
// is queued and tcp:tcp_rcv_space_adjust (4.16+) as data is copied out; then
// sock:sock_send_length / sock_recv_length (6.3+), after each call, for
// every protocol. Where socket owners are learned.
var (
	SendTracepoints = []string{"tcp_sendmsg_locked", "sock_send_length"}
	RecvTracepoints = []string{"tcp_rcv_space_adjust", "sock_recv_length"}
)

// FirstParamIsDoublePointer reports whether the function's first parameter
// is a pointer to a pointer, for functions whose signature changed that way.
func (k *Kernel) FirstParamIsDoublePointer(name string) (bool, error) {
	var fn *btf.Func
	if err := k.Types.TypeByName(name, &fn); err != nil {
		return false, err
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return false, fmt.Errorf("%s: no parameters in BTF", name)
	}
	ptr, ok := btf.UnderlyingType(proto.Params[0].Type).(*btf.Pointer)
	if !ok {
		return false, fmt.Errorf("%s: first parameter is not a pointer", name)
	}
	_, inner := btf.UnderlyingType(ptr.Target).(*btf.Pointer)
	return inner, nil
}
