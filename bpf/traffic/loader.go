//go:build linux

package traffic

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Options say how to load the traffic programs.
type Options struct {
	// Hook pins a rung (hooks.Fentry, hooks.Kprobe, hooks.TpBTF,
	// hooks.RawTracepoint) or is hooks.Auto / "".
	Hook string
	// AttributeSocket attributes packets to the owner of their socket where
	// known; otherwise to the task running when the packet passes.
	AttributeSocket bool
	// MaxEntries bounds the counter map.
	MaxEntries uint32
	Kernel     *hooks.Kernel
	Log        *slog.Logger
}

// Rungs lists the rungs of the traffic ladder, best first.
var Rungs = []string{hooks.Fentry, hooks.Kprobe, hooks.TpBTF, hooks.RawTracepoint}

// Probe is the attached traffic programs and their maps.
type Probe struct {
	coll  *ebpf.Collection
	links []link.Link
	rung  string
	// Notes are limits of the chosen rung on this kernel, for the log and check.
	Notes []string

	counters   *ebpf.Map
	stats      *ebpf.Map
	maxEntries uint32
}

// plan is what one rung needs: the programs to keep and how to attach them.
type plan struct {
	progs  []string
	attach func(c *ebpf.Collection) ([]link.Link, error)
	// optional programs may fail to attach (older kernels): a note, not an error.
	optional map[string]string
	notes    []string
	// retarget names the kernel function or tracepoint of each program.
	retarget map[string]string
}

// Open loads the traffic programs on the best rung the kernel allows (or the
// pinned one) and attaches them.
func Open(opts Options) (*Probe, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Kernel == nil {
		return nil, errors.New("traffic: no kernel BTF given")
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
	p, _, err := hooks.Climb("traffic", opts.Hook, rungs, opts.Log)
	if err != nil {
		return nil, err
	}
	for _, n := range p.Notes {
		opts.Log.Warn("traffic: rung limit", "rung", p.rung, "note", n)
	}
	return p, nil
}

func planFor(rung string, opts Options) (*plan, error) {
	k := opts.Kernel
	p := &plan{optional: map[string]string{}}
	switch rung {
	case hooks.Fentry, hooks.Kprobe:
		if rung == hooks.Fentry && !k.Native {
			return nil, errors.New("fentry needs the kernel's own BTF")
		}
		xmit := k.FirstFunc("__dev_queue_xmit", "dev_queue_xmit")
		if xmit == "" {
			return nil, fmt.Errorf("dev_queue_xmit: %w", hooks.ErrMissing)
		}
		if !k.HasTracepoint("netif_receive_skb") {
			return nil, fmt.Errorf("tracepoint netif_receive_skb: %w", hooks.ErrMissing)
		}
		prefix := "fentry_"
		// The receive side stays on the netif_receive_skb tracepoint: the
		// function it sits in, __netif_receive_skb_core, is inlined on
		// common distribution kernels (Debian 6.1, 6.12) and takes a
		// struct sk_buff ** that fentry cannot read before 5.15.
		recv := "tp_btf_recv"
		if rung == hooks.Kprobe {
			prefix = "kprobe_"
			recv = "raw_tp_recv"
		}
		targets := map[string]string{prefix + "xmit": xmit, recv: "netif_receive_skb"}
		p.progs = []string{prefix + "xmit", recv}
		p.notes = append(p.notes, "receive counted at the netif_receive_skb tracepoint ("+strings.TrimSuffix(recv, "_recv")+")")
		if opts.AttributeSocket {
			targets[prefix+"sendmsg"] = "sock_sendmsg"
			targets[prefix+"recvmsg"] = "sock_recvmsg"
			p.progs = append(p.progs, prefix+"sendmsg", prefix+"recvmsg")
			p.optional[prefix+"sendmsg"] = "socket owners unknown for sends"
			p.optional[prefix+"recvmsg"] = "socket owners unknown for receives"
		}
		p.attach = func(c *ebpf.Collection) ([]link.Link, error) {
			return attachEach(p, c, func(name string, prog *ebpf.Program) (link.Link, error) {
				switch {
				case name == "raw_tp_recv":
					return link.AttachRawTracepoint(link.RawTracepointOptions{Name: targets[name], Program: prog})
				case name == "tp_btf_recv":
					return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
				case rung == hooks.Kprobe:
					return link.Kprobe(targets[name], prog, nil)
				}
				return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
			})
		}
		// fentry programs carry their target; kprobes get it at attach.
		p.retarget = targets
	case hooks.TpBTF, hooks.RawTracepoint:
		if rung == hooks.TpBTF && !k.Native {
			return nil, errors.New("tp_btf needs the kernel's own BTF")
		}
		for _, tp := range []string{"net_dev_start_xmit", "netif_receive_skb"} {
			if !k.HasTracepoint(tp) {
				return nil, fmt.Errorf("tracepoint %s: %w", tp, hooks.ErrMissing)
			}
		}
		prefix := "tp_btf_"
		if rung == hooks.RawTracepoint {
			prefix = "raw_tp_"
		}
		tps := map[string]string{prefix + "xmit": "net_dev_start_xmit", prefix + "recv": "netif_receive_skb"}
		p.progs = []string{prefix + "xmit", prefix + "recv"}
		if opts.AttributeSocket {
			if k.HasTracepoint("sock_send_length") && k.HasTracepoint("sock_recv_length") {
				tps[prefix+"send_length"] = "sock_send_length"
				tps[prefix+"recv_length"] = "sock_recv_length"
				p.progs = append(p.progs, prefix+"send_length", prefix+"recv_length")
			} else {
				p.notes = append(p.notes, "no sock_send_length/sock_recv_length tracepoints (before 6.3): socket owners are unknown, packets are attributed to the current task")
			}
		}
		p.attach = func(c *ebpf.Collection) ([]link.Link, error) {
			return attachEach(p, c, func(name string, prog *ebpf.Program) (link.Link, error) {
				if rung == hooks.RawTracepoint {
					return link.AttachRawTracepoint(link.RawTracepointOptions{Name: tps[name], Program: prog})
				}
				return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
			})
		}
		p.retarget = tps
	default:
		return nil, fmt.Errorf("unknown rung %q", rung)
	}
	return p, nil
}

func attachEach(p *plan, c *ebpf.Collection, attach func(string, *ebpf.Program) (link.Link, error)) ([]link.Link, error) {
	var links []link.Link
	for _, name := range p.progs {
		l, err := attach(name, c.Programs[name])
		if err != nil {
			if why, ok := p.optional[name]; ok {
				p.notes = append(p.notes, fmt.Sprintf("%s: %s (%v)", name, why, err))
				continue
			}
			for _, l := range links {
				l.Close()
			}
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		links = append(links, l)
	}
	return links, nil
}

func load(rung string, p *plan, opts Options) (*Probe, error) {
	spec, err := loadTraffic()
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
		if rung == hooks.Fentry || rung == hooks.TpBTF {
			ps.AttachTo = p.retarget[name]
		}
	}
	if opts.MaxEntries > 0 {
		spec.Maps[trafficMapTraffic].MaxEntries = opts.MaxEntries
	}
	attr := uint32(0)
	if opts.AttributeSocket {
		attr = 1
	}
	if err := spec.Variables[trafficVarAttributeSocket].Set(attr); err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: opts.Kernel.Types},
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	links, err := p.attach(coll)
	if err != nil {
		coll.Close()
		return nil, err
	}
	return &Probe{
		coll:       coll,
		links:      links,
		rung:       rung,
		Notes:      p.notes,
		counters:   coll.Maps[trafficMapTraffic],
		stats:      coll.Maps[trafficMapStats],
		maxEntries: spec.Maps[trafficMapTraffic].MaxEntries,
	}, nil
}

// Rung is the hook rung in use.
func (p *Probe) Rung() string { return p.rung }

// MaxEntries is the capacity of the counter map.
func (p *Probe) MaxEntries() uint32 { return p.maxEntries }

// Close detaches every program and frees the maps.
func (p *Probe) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return errors.Join(errs...)
}
