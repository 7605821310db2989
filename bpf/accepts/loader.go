//go:build linux

package accepts

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Options say how to load the accepts programs.
type Options struct {
	// Hook pins a rung (hooks.Fentry, hooks.Kprobe, hooks.TpBTF,
	// hooks.RawTracepoint, hooks.Tracepoint) or is hooks.Auto / "".
	Hook string
	// RingSize is the ring buffer's size in bytes, a power of two and a
	// multiple of the page size; 0 keeps the default (1 MiB).
	RingSize uint32
	// WakeupBytes batches wake-ups: the kernel wakes the reader only once
	// that many bytes are unread, and the reader must poll for the rest
	// (a read deadline). 0 wakes it for every record.
	WakeupBytes uint64
	// Connect also reports outbound connections.
	Connect bool
	Kernel  *hooks.Kernel
	Log     *slog.Logger
}

// Rungs lists the rungs of the accepts ladder, best first. The fentry rung
// uses fexit programs, the kprobe rung a kretprobe. The classic tracepoint
// comes before tp_btf here: syscalls:sys_exit_accept{,4} run a program only
// for accepts, where tp_btf/sys_exit runs one at the exit of every system
// call of every task (measured: 40 ns against 150-230 ns added to each
// getppid(2), docs/benchmarks.md).
var Rungs = []string{hooks.Fentry, hooks.Kprobe, hooks.Tracepoint, hooks.TpBTF, hooks.RawTracepoint}

const acceptFunc = "inet_csk_accept"

// Probe is the attached accepts programs, their ring buffer and its reader.
type Probe struct {
	coll   *ebpf.Collection
	links  []link.Link
	rung   string
	reader *ringbuf.Reader
	stats  *ebpf.Map
	// progs are the attached programs, for the kernel's miss counters.
	progs []*ebpf.Program
	// Notes are limits of the chosen rung on this kernel, for the log and check.
	Notes []string
}

// plan is what one rung needs: the programs to keep and how to attach each.
type plan struct {
	progs []string
	// attachTo is the kernel function or tracepoint a BTF-attached program
	// names at load time.
	attachTo map[string]string
	attach   func(name string, prog *ebpf.Program) (link.Link, error)
	notes    []string
}

// Open loads the accepts programs on the best rung the kernel allows (or
// the pinned one), attaches them and opens the ring buffer.
func Open(opts Options) (*Probe, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Kernel == nil {
		return nil, errors.New("accepts: no kernel BTF given")
	}
	var rungs []hooks.Rung[*Probe]
	for _, name := range Rungs {
		rungs = append(rungs, hooks.Rung[*Probe]{Name: name, Try: func() (*Probe, error) {
			p, err := planFor(name, opts)
			if err != nil {
				return nil, err
			}
			return load(name, p, opts)
		}})
	}
	p, _, err := hooks.Climb("accepts", opts.Hook, rungs, opts.Log)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func planFor(rung string, opts Options) (*plan, error) {
	k := opts.Kernel
	p := &plan{attachTo: map[string]string{}}
	needNative := func() error {
		if !k.Native {
			return fmt.Errorf("%s needs the kernel's own BTF", rung)
		}
		return nil
	}
	const stateTP = "inet_sock_set_state"
	if opts.Connect && !k.HasTracepoint(stateTP) {
		return nil, fmt.Errorf("tracepoint %s (for connect): %w", stateTP, hooks.ErrMissing)
	}
	switch rung {
	case hooks.Fentry:
		if err := needNative(); err != nil {
			return nil, err
		}
		n, err := paramCount(k, acceptFunc)
		if err != nil {
			return nil, err
		}
		prog := acceptsProgFexitAcceptArg
		switch n {
		case 2: // 6.10+: (sk, struct proto_accept_arg *)
		case 4: // up to 6.9: (sk, flags, err, kern)
			prog = acceptsProgFexitAcceptFlags
		default:
			return nil, fmt.Errorf("%s has %d parameters, a signature this program does not know", acceptFunc, n)
		}
		p.progs = []string{prog}
		p.attachTo[prog] = acceptFunc
		if opts.Connect {
			p.progs = append(p.progs, acceptsProgTpBtfState)
			p.attachTo[acceptsProgTpBtfState] = stateTP
		}
		p.attach = func(name string, prog *ebpf.Program) (link.Link, error) {
			at := ebpf.AttachTraceFExit
			if name == acceptsProgTpBtfState {
				at = ebpf.AttachTraceRawTp
			}
			return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: at})
		}
	case hooks.Kprobe:
		if !k.HasFunc(acceptFunc) {
			return nil, fmt.Errorf("%s: %w", acceptFunc, hooks.ErrMissing)
		}
		p.progs = []string{acceptsProgKretprobeAccept}
		if opts.Connect {
			p.progs = append(p.progs, acceptsProgRawTpState)
		}
		p.attach = func(name string, prog *ebpf.Program) (link.Link, error) {
			if name == acceptsProgRawTpState {
				return link.AttachRawTracepoint(link.RawTracepointOptions{Name: stateTP, Program: prog})
			}
			return link.Kretprobe(acceptFunc, prog, nil)
		}
		p.notes = append(p.notes, "a kretprobe has a bounded number of instances: accepts returning while more threads than that block in accept() are missed")
	case hooks.TpBTF, hooks.RawTracepoint:
		if rung == hooks.TpBTF {
			if err := needNative(); err != nil {
				return nil, err
			}
		}
		if !k.HasTracepoint("sys_exit") {
			return nil, fmt.Errorf("tracepoint sys_exit: %w", hooks.ErrMissing)
		}
		exit, state := acceptsProgTpBtfSysExit, acceptsProgTpBtfState
		if rung == hooks.RawTracepoint {
			exit, state = acceptsProgRawTpSysExit, acceptsProgRawTpState
		}
		p.progs = []string{exit}
		p.attachTo[exit] = "sys_exit"
		if opts.Connect {
			p.progs = append(p.progs, state)
			p.attachTo[state] = stateTP
		}
		p.attach = func(name string, prog *ebpf.Program) (link.Link, error) {
			if rung == hooks.RawTracepoint {
				return link.AttachRawTracepoint(link.RawTracepointOptions{Name: p.attachTo[name], Program: prog})
			}
			return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		}
		p.notes = append(p.notes, "runs a program at the exit of every system call of every task (the tracepoint rung, with tracefs mounted, costs less); accepts made through io_uring are not seen")
	case hooks.Tracepoint:
		p.progs = []string{acceptsProgTpSysExitAccept4, acceptsProgTpSysExitAccept}
		groups := map[string][2]string{
			acceptsProgTpSysExitAccept4: {"syscalls", "sys_exit_accept4"},
			acceptsProgTpSysExitAccept:  {"syscalls", "sys_exit_accept"},
		}
		if opts.Connect {
			p.progs = append(p.progs, acceptsProgTpState)
			groups[acceptsProgTpState] = [2]string{"sock", stateTP}
		}
		p.attach = func(name string, prog *ebpf.Program) (link.Link, error) {
			g := groups[name]
			l, err := link.Tracepoint(g[0], g[1], prog, nil)
			if err != nil && errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%w (is tracefs mounted? mount -t tracefs nodev /sys/kernel/tracing; syscall events also need CONFIG_FTRACE_SYSCALLS)", err)
			}
			return l, err
		}
		p.notes = append(p.notes, "accepts made through io_uring are not seen")
	default:
		return nil, fmt.Errorf("unknown rung %q", rung)
	}
	return p, nil
}

// paramCount is the number of parameters of a kernel function in its BTF.
func paramCount(k *hooks.Kernel, name string) (int, error) {
	var fn *btf.Func
	if err := k.Types.TypeByName(name, &fn); err != nil {
		return 0, fmt.Errorf("%s: %w", name, hooks.ErrMissing)
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return 0, fmt.Errorf("%s: no prototype in BTF", name)
	}
	return len(proto.Params), nil
}

func load(rung string, p *plan, opts Options) (*Probe, error) {
	spec, err := loadAccepts()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, n := range p.progs {
		keep[n] = true
	}
	for name, ps := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
			continue
		}
		if to, ok := p.attachTo[name]; ok && (rung == hooks.Fentry || rung == hooks.TpBTF) {
			ps.AttachTo = to
		}
	}
	if opts.RingSize > 0 {
		spec.Maps[acceptsMapEvents].MaxEntries = opts.RingSize
	}
	if !opts.Connect {
		// Not used without connect programs; keep it from taking memory.
		spec.Maps[acceptsMapConnecting].MaxEntries = 1
	}
	if err := spec.Variables[acceptsVarNrAccept].Set(uint32(unix.SYS_ACCEPT)); err != nil {
		return nil, err
	}
	if err := spec.Variables[acceptsVarNrAccept4].Set(uint32(unix.SYS_ACCEPT4)); err != nil {
		return nil, err
	}
	if err := spec.Variables[acceptsVarWakeupBytes].Set(opts.WakeupBytes); err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: opts.Kernel.Types},
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	pr := &Probe{coll: coll, rung: rung, stats: coll.Maps[acceptsMapStats], Notes: p.notes}
	// The reader exists before any program fires, so nothing is written
	// that no one will read.
	pr.reader, err = ringbuf.NewReader(coll.Maps[acceptsMapEvents])
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("ring buffer reader: %w", err)
	}
	for _, name := range p.progs {
		l, err := p.attach(name, coll.Programs[name])
		if err != nil {
			pr.Close()
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		pr.links = append(pr.links, l)
		pr.progs = append(pr.progs, coll.Programs[name])
	}
	return pr, nil
}

// Rung is the hook rung in use.
func (p *Probe) Rung() string { return p.rung }

// Reader is the ring buffer's reader; Close interrupts a blocked read.
func (p *Probe) Reader() *ringbuf.Reader { return p.reader }

// Close detaches every program, closes the reader and frees the maps.
func (p *Probe) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links, p.progs = nil, nil
	if p.reader != nil {
		errs = append(errs, p.reader.Close())
		p.reader = nil
	}
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return errors.Join(errs...)
}

// Stats are the kernel-side loss counters, totals since load.
type Stats struct {
	// RingbufFull counts events dropped because the ring buffer had no room.
	RingbufFull uint64
	// ConnectFull counts outbound connections not followed because the
	// table of connecting sockets was full.
	ConnectFull uint64
	// Missed counts program runs the kernel skipped (hooks.Missed), each
	// an accept or connection not reported.
	Missed uint64
}

// Stats reads the loss counters, summed over CPUs.
func (p *Probe) Stats() (Stats, error) {
	var s Stats
	read := func(idx uint32) (uint64, error) {
		var vals []uint64
		if err := p.stats.Lookup(idx, &vals); err != nil {
			return 0, fmt.Errorf("read accepts stats: %w", err)
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		return sum, nil
	}
	var err error
	if s.RingbufFull, err = read(0); err != nil {
		return s, err
	}
	if s.ConnectFull, err = read(1); err != nil {
		return s, err
	}
	s.Missed = hooks.Missed(p.progs, p.links)
	return s, nil
}

// RingSize is the ring buffer's size in bytes.
func (p *Probe) RingSize() int { return p.reader.BufferSize() }
