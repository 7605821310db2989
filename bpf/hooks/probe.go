package hooks

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Kind is the result of trying one hook kind on the running kernel.
type Kind struct {
	Name string
	OK   bool
	Err  error
}

// ProbeKinds loads and attaches a do-nothing program of each hook kind, the
// only reliable test: fentry loads can fail with EPERM under lockdown even
// where the program type exists, and kprobes may not be built at all.
func ProbeKinds(k *Kernel) []Kind {
	fn := "tcp_v4_rcv"
	if k != nil && !k.HasFunc(fn) {
		fn = k.FirstFunc("__sys_bind", "ksys_read")
	}
	try := func(name string, f func() (link.Link, *ebpf.Program, error)) Kind {
		l, p, err := f()
		err = explain(name, err)
		if l != nil {
			l.Close()
		}
		if p != nil {
			p.Close()
		}
		return Kind{Name: name, OK: err == nil, Err: err}
	}
	var types *ebpfKernel
	if k != nil {
		types = &ebpfKernel{k}
	}
	return []Kind{
		try("fentry", func() (link.Link, *ebpf.Program, error) {
			return tracing(types, ebpf.AttachTraceFEntry, fn)
		}),
		try("fexit", func() (link.Link, *ebpf.Program, error) {
			return tracing(types, ebpf.AttachTraceFExit, fn)
		}),
		try("kprobe", func() (link.Link, *ebpf.Program, error) {
			p, err := newProg(&ebpf.ProgramSpec{Type: ebpf.Kprobe}, nil)
			if err != nil {
				return nil, nil, err
			}
			l, err := link.Kprobe(fn, p, nil)
			return l, p, err
		}),
		try("tp_btf", func() (link.Link, *ebpf.Program, error) {
			return tracing(types, ebpf.AttachTraceRawTp, "netif_receive_skb")
		}),
		try("raw_tracepoint", func() (link.Link, *ebpf.Program, error) {
			p, err := newProg(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint}, nil)
			if err != nil {
				return nil, nil, err
			}
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "netif_receive_skb", Program: p})
			return l, p, err
		}),
		try("tracepoint", func() (link.Link, *ebpf.Program, error) {
			p, err := newProg(&ebpf.ProgramSpec{Type: ebpf.TracePoint}, nil)
			if err != nil {
				return nil, nil, err
			}
			l, err := link.Tracepoint("net", "netif_receive_skb", p, nil)
			if err != nil && errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%w (is tracefs mounted? mount -t tracefs nodev /sys/kernel/tracing)", err)
			}
			return l, p, err
		}),
		try("tcx", func() (link.Link, *ebpf.Program, error) {
			lo, err := net.InterfaceByName("lo")
			if err != nil {
				return nil, nil, err
			}
			p, err := newProg(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, AttachType: ebpf.AttachTCXIngress}, asm.Instructions{
				asm.Mov.Imm(asm.R0, -1), // TCX_NEXT: leave the packet alone
				asm.Return(),
			})
			if err != nil {
				return nil, nil, err
			}
			l, err := link.AttachTCX(link.TCXOptions{Interface: lo.Index, Program: p, Attach: ebpf.AttachTCXIngress})
			return l, p, err
		}),
	}
}

type ebpfKernel struct{ k *Kernel }

func tracing(k *ebpfKernel, at ebpf.AttachType, target string) (link.Link, *ebpf.Program, error) {
	if target == "" {
		return nil, nil, fmt.Errorf("no probe target: %w", ErrMissing)
	}
	if k != nil && !k.k.Native {
		return nil, nil, errors.New("needs the kernel's own BTF (" + KernelBTFPath + ")")
	}
	p, err := newProg(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: at, AttachTo: target}, nil)
	if err != nil {
		return nil, nil, err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: at})
	return l, p, err
}

func newProg(spec *ebpf.ProgramSpec, insns asm.Instructions) (*ebpf.Program, error) {
	if insns == nil {
		insns = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	}
	spec.Instructions = insns
	spec.License = "GPL"
	return ebpf.NewProgram(spec)
}

// explain turns the kernel's terse refusals into reasons a user can act on.
func explain(kind string, err error) error {
	if err == nil {
		return nil
	}
	if kind == "kprobe" && !kprobesBuilt() {
		return errors.New("kernel built without CONFIG_KPROBES")
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("the kernel refuses it (lockdown, or missing CAP_BPF/CAP_PERFMON): %w", unix.EPERM)
	}
	return err
}

// kprobesBuilt looks for the kprobe core in the kernel's symbols; without
// CONFIG_KPROBES no kprobe can attach, however tracefs is set up.
func kprobesBuilt() bool {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return true // cannot tell; let the attach error speak
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), " register_kprobe") {
			return true
		}
	}
	return false
}
