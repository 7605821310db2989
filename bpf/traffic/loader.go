//go:build linux

package traffic

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// progs are the attached programs, for the kernel's miss counters.
	progs []*ebpf.Program
	rung  string
	// Notes are limits of the chosen rung on this kernel, for the log and check.
	Notes []string

	counters   *ebpf.Map
	fronts     *ebpf.Map
	stats      *ebpf.Map
	maxEntries uint32
	ownerKey   string
	forgetTCP  bool
}

// How packets are tied to their socket's owner (Probe.OwnerKey).
const (
	// OwnerKeyCookie: by socket cookie, never reused (fentry and tp_btf on 5.12+).
	OwnerKeyCookie = "cookie"
	// OwnerKeyAddress: by the socket's kernel address, which a new socket
	// may inherit from a freed one.
	OwnerKeyAddress = "address"
)

// The fentry and kprobe rungs learn a TCP socket's owner at the protocol's
// own entry points, reached through a function pointer (never inlined), for
// IPv4 and IPv6, in the sending or receiving task before any data moves.
// Being TCP's, they cost other protocols nothing.
const (
	ownerSendFunc = "tcp_sendmsg"
	ownerRecvFunc = "tcp_recvmsg"
)

// ownerTracepoints are where the tracepoint rungs learn owners, best first
// per direction (hooks.SendTracepoints, hooks.RecvTracepoints), each
// program named after its tracepoint; the programs on sock_*_length skip
// all but TCP. For sends before 6.3, inet_sock_set_state's move to
// SYN_SENT, inside connect() (clients only; servers are learned when they
// receive).
var ownerTracepoints = [][]string{
	append(slices.Clone(hooks.SendTracepoints), "inet_sock_set_state"),
	hooks.RecvTracepoints,
}

// destroyTracepoint fires once per TCP socket the kernel tears down; the
// rungs that key owners by address forget the socket there.
const destroyTracepoint = "tcp_destroy_sock"

// plan is what one rung needs: the programs to keep and how to attach them.
type plan struct {
	progs []string
	// optional programs may fail to attach (older kernels): a note, not an error.
	optional map[string]string
	notes    []string
	// retarget names the kernel function or tracepoint of each program.
	retarget map[string]string
	// owners: the rung's programs learn socket owners. direct: they read
	// BTF pointers (fentry, tp_btf) and may key owners by socket cookie.
	owners, direct bool
	// destroy forgets a TCP socket's owner when it is destroyed; attached
	// only when owners are keyed by address. "" when the kernel lacks the
	// tracepoint.
	destroy string
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
			targets[prefix+"sendmsg"] = ownerSendFunc
			targets[prefix+"recvmsg"] = ownerRecvFunc
			p.progs = append(p.progs, prefix+"sendmsg", prefix+"recvmsg")
			p.optional[prefix+"sendmsg"] = "socket owners unknown for sends"
			p.optional[prefix+"recvmsg"] = "socket owners unknown for receives"
			p.owners = true
			// Tracepoints attach as the rung's receive program does.
			if k.HasTracepoint(destroyTracepoint) {
				p.destroy = strings.TrimSuffix(recv, "recv") + "sock_destroy"
				targets[p.destroy] = destroyTracepoint
			}
		}
		p.direct = rung == hooks.Fentry
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
			for _, choices := range ownerTracepoints {
				if tp := k.FirstTracepoint(choices...); tp != "" {
					tps[prefix+tp] = tp
					p.progs = append(p.progs, prefix+tp)
					p.owners = true
				}
			}
			if !p.owners {
				p.notes = append(p.notes, "no tracepoint to learn socket owners on (tcp:tcp_rcv_space_adjust, sock:sock_send_length): packets are attributed to the current task")
			} else if k.HasTracepoint(destroyTracepoint) {
				p.destroy = prefix + "sock_destroy"
				tps[p.destroy] = destroyTracepoint
			}
		}
		p.direct = rung == hooks.TpBTF
		p.retarget = tps
	default:
		return nil, fmt.Errorf("unknown rung %q", rung)
	}
	return p, nil
}

// attachProg attaches one program by the kind its name starts with. fentry
// and tp_btf programs carry their target from load; kprobes and raw
// tracepoints get it here.
func attachProg(name, target string, prog *ebpf.Program) (link.Link, error) {
	switch {
	case strings.HasPrefix(name, "raw_tp_"):
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: target, Program: prog})
	case strings.HasPrefix(name, "tp_btf_"):
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	case strings.HasPrefix(name, "kprobe_"):
		return link.Kprobe(target, prog, nil)
	case strings.HasPrefix(name, "fentry_"):
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
	}
	return nil, fmt.Errorf("no attach kind for program %s", name)
}

// typed are the program kinds that name their target at load.
func typed(name string) bool {
	return strings.HasPrefix(name, "fentry_") || strings.HasPrefix(name, "tp_btf_")
}

// attachEach attaches the plan's programs; an optional one that fails
// becomes a note. attached names those that did attach.
func attachEach(p *plan, c *ebpf.Collection) (links []link.Link, attached map[string]bool, err error) {
	attached = map[string]bool{}
	for _, name := range p.progs {
		l, err := attachProg(name, p.retarget[name], c.Programs[name])
		if err != nil {
			if why, ok := p.optional[name]; ok {
				p.notes = append(p.notes, fmt.Sprintf("%s: %s (%v)", name, why, err))
				continue
			}
			for _, l := range links {
				l.Close()
			}
			return nil, nil, fmt.Errorf("attach %s: %w", name, err)
		}
		links = append(links, l)
		attached[name] = true
	}
	return links, attached, nil
}

func load(rung string, p *plan, opts Options) (*Probe, error) {
	spec, err := loadTraffic()
	if err != nil {
		return nil, err
	}
	// Owners by socket cookie where the rung reads BTF pointers; a kernel
	// before 5.12 refuses the helper in tracing programs, and only then
	// does the rung fall back to the address.
	cookie := p.owners && p.direct
	coll, err := loadSpec(spec.Copy(), p, cookie, opts)
	if err != nil && cookie && cookieRefused(err) {
		opts.Log.Debug("traffic: socket cookie refused in tracing programs, owners keyed by address", "rung", rung, "error", err)
		cookie = false
		coll, err = loadSpec(spec.Copy(), p, cookie, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	key := ""
	if p.owners {
		key = OwnerKeyCookie
		if !cookie {
			key = OwnerKeyAddress
			why := "kprobe and raw tracepoint programs may not ask for socket cookies"
			if p.direct {
				why = "this kernel (before 5.12) refuses bpf_get_socket_cookie in tracing programs"
			}
			p.notes = append(p.notes, "socket owners keyed by socket address ("+why+")")
			if p.destroy != "" {
				p.progs = append(p.progs, p.destroy)
				p.optional[p.destroy] = "owners of closed TCP sockets are not forgotten"
			} else {
				p.notes = append(p.notes, "no tcp:tcp_destroy_sock tracepoint: owners of closed TCP sockets are not forgotten")
			}
		}
	}
	links, attached, err := attachEach(p, coll)
	if err != nil {
		coll.Close()
		return nil, err
	}
	var progs []*ebpf.Program
	for name := range attached {
		progs = append(progs, coll.Programs[name])
	}
	return &Probe{
		coll:       coll,
		links:      links,
		progs:      progs,
		rung:       rung,
		Notes:      p.notes,
		counters:   coll.Maps[trafficMapTraffic],
		fronts:     coll.Maps[trafficMapFronts],
		stats:      coll.Maps[trafficMapStats],
		maxEntries: coll.Maps[trafficMapTraffic].MaxEntries(),
		ownerKey:   key,
		forgetTCP:  p.destroy != "" && attached[p.destroy],
	}, nil
}

// loadSpec loads the programs of the plan (with the destroy program when
// owners are keyed by address) and sets the loader's constants.
func loadSpec(spec *ebpf.CollectionSpec, p *plan, cookie bool, opts Options) (*ebpf.Collection, error) {
	keep := map[string]bool{}
	for _, n := range p.progs {
		keep[n] = true
	}
	if p.owners && !cookie && p.destroy != "" {
		keep[p.destroy] = true
	}
	for name, ps := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
			continue
		}
		if typed(name) {
			ps.AttachTo = p.retarget[name]
		}
	}
	if opts.MaxEntries > 0 {
		spec.Maps[trafficMapTraffic].MaxEntries = opts.MaxEntries
	}
	for v, on := range map[string]bool{trafficVarAttributeSocket: opts.AttributeSocket, trafficVarOwnerCookie: cookie} {
		val := uint32(0)
		if on {
			val = 1
		}
		if err := spec.Variables[v].Set(val); err != nil {
			return nil, err
		}
	}
	return ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: opts.Kernel.Types},
	})
}

// cookieRefused tells the verifier's refusal of bpf_get_socket_cookie (as
// 5.10 and 5.11 say it: "unknown func bpf_get_socket_cookie#46") from any
// other load error, which must not be hidden by a fallback.
func cookieRefused(err error) bool {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return false
	}
	for _, l := range ve.Log {
		if strings.Contains(l, "bpf_get_socket_cookie") || strings.Contains(l, "func#46") {
			return true
		}
	}
	return false
}

// Rung is the hook rung in use.
func (p *Probe) Rung() string { return p.rung }

// OwnerKey is how packets are tied to their socket's owner: OwnerKeyCookie,
// OwnerKeyAddress, or "" when this rung learns no owners (attribution
// "current", or no hook to learn them on this kernel).
func (p *Probe) OwnerKey() string { return p.ownerKey }

// ForgetsClosedTCP reports whether owners of TCP sockets are forgotten when
// the kernel destroys the socket (address keys with tcp:tcp_destroy_sock).
func (p *Probe) ForgetsClosedTCP() bool { return p.forgetTCP }

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
