//go:build linux

// Package drops loads the dropwatch programs: every skb the kernel frees as
// dropped is counted in the kernel per (location, reason, protocol) and,
// optionally, device; user space drains the counters once per interval.
package drops

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Options say how to load the drops programs.
type Options struct {
	// Hook pins a rung (hooks.TpBTF, hooks.RawTracepoint, hooks.Tracepoint)
	// or is hooks.Auto / "".
	Hook string
	// MaxEntries bounds the counter map.
	MaxEntries uint32
	// Interface adds the device the skb was on to the key.
	Interface bool
	Kernel    *hooks.Kernel
	Log       *slog.Logger

	// noReason loads the variant for kernels without drop reasons, so
	// tests can run it on any kernel.
	noReason bool
}

// Rungs lists the rungs of the drops ladder, best first. kfree_skb is a
// tracepoint, so only the tracepoint family applies.
var Rungs = []string{hooks.TpBTF, hooks.RawTracepoint, hooks.Tracepoint}

// ReasonNone is the reason of every drop on kernels whose kfree_skb
// tracepoint has no reason argument (before 5.17).
const ReasonNone = ^uint32(0)

const tracepointName = "kfree_skb"

// Probe is the attached drops program and its maps.
type Probe struct {
	coll    *ebpf.Collection
	closers []io.Closer
	rung    string
	// Notes are limits of the chosen rung on this kernel, for the log and check.
	Notes []string

	counters *ebpf.Map
	stats    *ebpf.Map
	// prog is the attached program, for the kernel's miss counter.
	prog       *ebpf.Program
	maxEntries uint32
	hasReason  bool
}

// Open loads the drops program on the best rung the kernel allows (or the
// pinned one) and attaches it.
func Open(opts Options) (*Probe, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Kernel == nil {
		return nil, errors.New("drops: no kernel BTF given")
	}
	var rungs []hooks.Rung[*Probe]
	for _, name := range Rungs {
		rungs = append(rungs, hooks.Rung[*Probe]{Name: name, Try: func() (*Probe, error) {
			return open(name, opts)
		}})
	}
	p, _, err := hooks.Climb("drops", opts.Hook, rungs, opts.Log)
	if err != nil {
		return nil, err
	}
	for _, n := range p.Notes {
		opts.Log.Warn("drops: rung limit", "rung", p.rung, "note", n)
	}
	return p, nil
}

func open(rung string, opts Options) (*Probe, error) {
	k := opts.Kernel
	if !k.HasTracepoint(tracepointName) {
		return nil, fmt.Errorf("tracepoint %s: %w", tracepointName, hooks.ErrMissing)
	}
	if rung == hooks.TpBTF && !k.Native {
		return nil, errors.New("tp_btf needs the kernel's own BTF")
	}
	hasReason, err := tracepointHasReason(k.Types)
	if err != nil {
		return nil, err
	}
	hasReason = hasReason && !opts.noReason
	var prog string
	switch rung {
	case hooks.TpBTF:
		prog = dropsProgTpBtfKfreeSkb
	case hooks.RawTracepoint:
		prog = dropsProgRawTpKfreeSkb
	case hooks.Tracepoint:
		prog = dropsProgTpKfreeSkb
	default:
		return nil, fmt.Errorf("unknown rung %q", rung)
	}
	var notes []string
	if !hasReason {
		prog += "_noreason"
		notes = append(notes, "kfree_skb has no drop reason on this kernel (before 5.17): every reason is \"unknown\"")
	}

	spec, err := loadDrops()
	if err != nil {
		return nil, err
	}
	for name := range spec.Programs {
		if name != prog {
			delete(spec.Programs, name)
		}
	}
	if opts.MaxEntries > 0 {
		spec.Maps[dropsMapDrops].MaxEntries = opts.MaxEntries
	}
	if err := setConsts(spec, opts.Interface, k.Types); err != nil {
		return nil, err
	}

	// The classic tracepoint needs tracefs; check before loading anything.
	var tracefs string
	if rung == hooks.Tracepoint {
		dir, mounted, err := ensureTracefs()
		if err != nil {
			return nil, err
		}
		if mounted {
			opts.Log.Info("drops: mounted tracefs for the classic tracepoint", "path", dir)
		}
		tracefs = dir
	}

	coll, err := newCollection(spec, k)
	if err != nil {
		return nil, err
	}
	p := &Probe{
		coll:       coll,
		rung:       rung,
		Notes:      notes,
		counters:   coll.Maps[dropsMapDrops],
		stats:      coll.Maps[dropsMapStats],
		maxEntries: spec.Maps[dropsMapDrops].MaxEntries,
		hasReason:  hasReason,
	}
	var c io.Closer
	switch rung {
	case hooks.TpBTF:
		c, err = link.AttachTracing(link.TracingOptions{Program: coll.Programs[prog], AttachType: ebpf.AttachTraceRawTp})
	case hooks.RawTracepoint:
		c, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tracepointName, Program: coll.Programs[prog]})
	case hooks.Tracepoint:
		c, err = attachTracepoint(tracefs, "skb", tracepointName, coll.Programs[prog])
	}
	if err != nil {
		coll.Close()
		return nil, fmt.Errorf("attach %s: %w", prog, err)
	}
	p.closers = append(p.closers, c)
	p.prog = coll.Programs[prog]
	return p, nil
}

func newCollection(spec *ebpf.CollectionSpec, k *hooks.Kernel) (*ebpf.Collection, error) {
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: k.Types},
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return coll, nil
}

// tracepointHasReason reads the kfree_skb tracepoint's signature from BTF:
// btf_trace_kfree_skb is void (*)(void *, skb, location[, reason[, rx_sk]]).
func tracepointHasReason(types *btf.Spec) (bool, error) {
	var td *btf.Typedef
	if err := types.TypeByName("btf_trace_"+tracepointName, &td); err != nil {
		return false, fmt.Errorf("btf_trace_%s: %w", tracepointName, err)
	}
	ptr, ok := btf.UnderlyingType(td.Type).(*btf.Pointer)
	if !ok {
		return false, fmt.Errorf("btf_trace_%s is not a function pointer", tracepointName)
	}
	proto, ok := btf.UnderlyingType(ptr.Target).(*btf.FuncProto)
	if !ok {
		return false, fmt.Errorf("btf_trace_%s is not a function pointer", tracepointName)
	}
	if len(proto.Params) < 4 {
		return false, nil
	}
	e, ok := btf.UnderlyingType(proto.Params[3].Type).(*btf.Enum)
	return ok && e.Name == "skb_drop_reason", nil
}

// setConsts sets the loader-set globals: the interface switch and the
// number of SKB_CONSUMED on this kernel, if it has one.
func setConsts(spec *ebpf.CollectionSpec, iface bool, types *btf.Spec) error {
	v := uint32(0)
	if iface {
		v = 1
	}
	if err := spec.Variables[dropsVarWithInterface].Set(v); err != nil {
		return err
	}
	consumed, ok := ConsumedReason(types)
	skip := uint32(0)
	if ok {
		skip = 1
	}
	if err := spec.Variables[dropsVarSkipConsumed].Set(skip); err != nil {
		return err
	}
	return spec.Variables[dropsVarConsumedReason].Set(consumed)
}

// ConsumedReason is the value of SKB_CONSUMED in the kernel's enum
// skb_drop_reason; ok is false where the kernel has none (before 6.3).
func ConsumedReason(types *btf.Spec) (uint32, bool) {
	var e *btf.Enum
	if err := types.TypeByName("skb_drop_reason", &e); err != nil {
		return 0, false
	}
	for _, v := range e.Values {
		if v.Name == "SKB_CONSUMED" {
			return uint32(v.Value), true
		}
	}
	return 0, false
}

// Rung is the hook rung in use.
func (p *Probe) Rung() string { return p.rung }

// HasReason is false on kernels whose tracepoint carries no drop reason.
func (p *Probe) HasReason() bool { return p.hasReason }

// MaxEntries is the capacity of the counter map.
func (p *Probe) MaxEntries() uint32 { return p.maxEntries }

// Close detaches the program and frees the maps.
func (p *Probe) Close() error {
	var errs []error
	for _, c := range p.closers {
		errs = append(errs, c.Close())
	}
	p.closers, p.prog = nil, nil
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return errors.Join(errs...)
}
