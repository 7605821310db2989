//go:build linux

package tcpreceive

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
)

// Limits of the kernel side.
const (
	// MaxHosts and MaxPorts bound the in-kernel filter.
	MaxHosts = 4
	MaxPorts = 4
	// MaxSnaplen is the most bytes one packet can carry: a perf record's
	// size is 16 bits.
	MaxSnaplen = 65000
	// KprobeSnaplen is the most the kprobe rung copies (its scratch buffer),
	// and it copies only the linear part of the skb.
	KprobeSnaplen = 16383
	// RingSnaplen is the most a ring buffer record holds.
	RingSnaplen = 256
)

// Dir says which end of a packet a filter item matches.
type Dir uint8

const (
	Either Dir = iota
	Source
	Destination
)

// Host matches packets from or to an address.
type Host struct {
	Addr netip.Addr
	Dir  Dir
}

// Port matches packets from or to a port.
type Port struct {
	Port uint16
	Dir  Dir
}

// Filter is what the programs keep; every listed host and port must match.
type Filter struct {
	// UDP adds UDP datagrams; NoTCP leaves TCP segments out.
	UDP, NoTCP bool
	// OnlyV4, OnlyV6 restrict the address family.
	OnlyV4, OnlyV6 bool
	// IfIndex and IfNetns pick one interface; IfIndex 0 means all.
	IfIndex, IfNetns uint32
	Hosts            []Host
	Ports            []Port
}

// Options say how to load the programs.
type Options struct {
	// Hook pins a rung (hooks.Fentry, hooks.Kprobe, hooks.TpBTF) or is hooks.Auto / "".
	Hook string
	// Snaplen is how many bytes of each packet to copy from the network
	// header; 0 copies none. Capped at MaxSnaplen.
	Snaplen uint32
	// HeadersOnly copies at most the IP and TCP/UDP headers.
	HeadersOnly bool
	// AttributeOwner looks up the process owning the local socket.
	AttributeOwner bool
	// Ring uses the BPF ring buffer instead of perf buffers (tp_btf rung
	// only; linear bytes, at most RingSnaplen of them). RingSize is its
	// size in bytes, a power of two.
	Ring bool
	// Mixed (the auto transport) uses the ring buffer on the tp_btf rung
	// for every packet it carries whole and perf buffers for the rest;
	// perf buffers alone on the other rungs.
	Mixed    bool
	RingSize uint32
	Filter   Filter
	Kernel   *hooks.Kernel
	Log      *slog.Logger
}

// Rungs lists the rungs of the ladder, best first.
var Rungs = []string{hooks.Fentry, hooks.Kprobe, hooks.TpBTF}

// Probe is the attached programs and their maps.
type Probe struct {
	coll  *ebpf.Collection
	links []link.Link
	rung  string
	// Notes are limits of the chosen rung on this kernel.
	Notes []string

	events *ebpf.Map
	ring   *ebpf.Map
	// mixed: both events and ring carry packets.
	mixed bool
	lost  *ebpf.Map
	stats *ebpf.Map
}

type target struct {
	prog, fn string
}

// Open loads the programs on the best rung the kernel allows (or the pinned
// one) and attaches them.
func Open(opts Options) (*Probe, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Kernel == nil {
		return nil, errors.New("tcp_receive: no kernel BTF given")
	}
	if err := opts.Filter.check(); err != nil {
		return nil, err
	}
	var rungs []hooks.Rung[*Probe]
	for _, name := range Rungs {
		rungs = append(rungs, hooks.Rung[*Probe]{Name: name, Try: func() (*Probe, error) { return load(name, opts) }})
	}
	p, _, err := hooks.Climb("tcp_receive", opts.Hook, rungs, opts.Log)
	if err != nil {
		return nil, err
	}
	for _, n := range p.Notes {
		opts.Log.Warn("tcp_receive: rung limit", "rung", p.rung, "note", n)
	}
	return p, nil
}

func (f Filter) check() error {
	if len(f.Hosts) > MaxHosts {
		return fmt.Errorf("at most %d hosts in a filter", MaxHosts)
	}
	if len(f.Ports) > MaxPorts {
		return fmt.Errorf("at most %d ports in a filter", MaxPorts)
	}
	if f.NoTCP && !f.UDP {
		return errors.New("the filter leaves neither TCP nor UDP")
	}
	if f.OnlyV4 && f.OnlyV6 {
		return errors.New("the filter leaves neither IPv4 nor IPv6")
	}
	for _, h := range f.Hosts {
		if !h.Addr.IsValid() {
			return errors.New("invalid host address in the filter")
		}
	}
	return nil
}

// targets lists the programs of a rung and the kernel function each hooks.
func targets(rung string, f Filter) []target {
	var prefix string
	switch rung {
	case hooks.Fentry:
		prefix = "fentry_"
	case hooks.Kprobe:
		prefix = "kprobe_"
	default:
		return []target{{"tp_btf_recv", "netif_receive_skb"}}
	}
	var ts []target
	if !f.NoTCP {
		ts = append(ts, target{prefix + "tcp_v4", "tcp_v4_rcv"}, target{prefix + "tcp_v6", "tcp_v6_rcv"})
	}
	if f.UDP {
		ts = append(ts, target{prefix + "udp_v4", "udp_rcv"}, target{prefix + "udp_v6", "udpv6_rcv"})
	}
	// One family only: leave the other's function alone.
	out := ts[:0]
	for _, t := range ts {
		v6 := t.fn == "tcp_v6_rcv" || t.fn == "udpv6_rcv"
		if f.OnlyV4 && v6 || f.OnlyV6 && !v6 {
			continue
		}
		out = append(out, t)
	}
	return out
}

// ownerTargets are the tracepoints that learn socket owners, in the
// owning task, each program named after its tracepoint: listen()
// (inet_sock_set_state), and one per direction for sends and receives
// (hooks.SendTracepoints, hooks.RecvTracepoints). Capturing UDP, the
// sock_*_length tracepoints, which fire for every protocol, come first;
// capturing TCP alone, TCP's own do, so UDP traffic runs no program.
// With btf the programs are tp_btf ones, which read the socket with plain
// loads; raw tracepoints make a helper call per field.
func ownerTargets(k *hooks.Kernel, udp, btf bool) []target {
	var out []target
	prefix := "raw_tp_"
	if btf {
		prefix = "tp_btf_"
	}
	add := func(tp string) {
		if tp != "" {
			out = append(out, target{prefix + tp, tp})
		}
	}
	add(k.FirstTracepoint("inet_sock_set_state"))
	for _, choices := range [][]string{hooks.RecvTracepoints, hooks.SendTracepoints} {
		if udp {
			choices = slices.Clone(choices)
			slices.Reverse(choices)
		}
		add(k.FirstTracepoint(choices...))
	}
	return out
}

func load(rung string, opts Options) (*Probe, error) {
	k := opts.Kernel
	if (rung == hooks.Fentry || rung == hooks.TpBTF) && !k.Native {
		return nil, fmt.Errorf("%s needs the kernel's own BTF", rung)
	}
	main := targets(rung, opts.Filter)
	useRing := opts.Ring || opts.Mixed && rung == hooks.TpBTF
	if useRing {
		if rung != hooks.TpBTF {
			return nil, fmt.Errorf("the ring buffer transport is built for the tp_btf rung only: %w", hooks.ErrMissing)
		}
		main = []target{{"tp_btf_recv_ring", "netif_receive_skb"}}
	}
	for _, t := range main {
		if rung == hooks.TpBTF {
			if !k.HasTracepoint(t.fn) {
				return nil, fmt.Errorf("tracepoint %s: %w", t.fn, hooks.ErrMissing)
			}
		} else if !k.HasFunc(t.fn) {
			return nil, fmt.Errorf("%s: %w", t.fn, hooks.ErrMissing)
		}
	}
	var notes []string
	var owners []target
	if opts.AttributeOwner {
		// The BTF rungs run tracing programs already: their owners do too.
		owners = ownerTargets(k, opts.Filter.UDP, rung == hooks.Fentry || rung == hooks.TpBTF)
		if len(owners) < 3 {
			notes = append(notes, "no tracepoint to learn the owners of connected sockets on (tcp:tcp_sendmsg_locked, sock:sock_send_length, tcp:tcp_rcv_space_adjust): only listening sockets have known owners")
		}
	}
	if rung == hooks.Kprobe {
		if opts.Snaplen > KprobeSnaplen {
			notes = append(notes, fmt.Sprintf("kprobe rung: at most %d bytes of the linear part of each packet are copied", KprobeSnaplen))
		} else {
			notes = append(notes, "kprobe rung: only the linear part of each packet is copied")
		}
	}
	if rung == hooks.TpBTF {
		notes = append(notes, "tp_btf rung: packets are seen at netif_receive_skb, before the IP layer: packets the host forwards or drops are captured too")
	}

	spec, err := loadTcpreceive()
	if err != nil {
		return nil, err
	}
	keep := map[string]string{}
	for _, t := range append(append([]target{}, main...), owners...) {
		keep[t.prog] = t.fn
	}
	for name, ps := range spec.Programs {
		fn, ok := keep[name]
		if !ok {
			delete(spec.Programs, name)
			continue
		}
		if rung == hooks.Fentry || strings.HasPrefix(name, "tp_btf_") {
			ps.AttachTo = fn
		}
	}
	if rung == hooks.TpBTF {
		delete(spec.Maps, tcpreceiveMapScratch)
	}
	if useRing {
		if opts.RingSize > 0 {
			spec.Maps[tcpreceiveMapRing].MaxEntries = opts.RingSize
		}
		if err := spec.Variables[tcpreceiveVarRingWakeup].Set(uint64(spec.Maps[tcpreceiveMapRing].MaxEntries / 4)); err != nil {
			return nil, err
		}
		var spill uint8
		if opts.Mixed {
			spill = 1
		}
		if err := spec.Variables[tcpreceiveVarRingSpill].Set(spill); err != nil {
			return nil, err
		}
	} else {
		delete(spec.Maps, tcpreceiveMapRing)
	}
	if err := setVars(spec, opts); err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: k.Types},
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	p := &Probe{coll: coll, rung: rung, Notes: notes, mixed: opts.Mixed && useRing,
		events: coll.Maps[tcpreceiveMapEvents], ring: coll.Maps[tcpreceiveMapRing], lost: coll.Maps[tcpreceiveMapLost], stats: coll.Maps[tcpreceiveMapStats]}
	// Owners first, so that packets are attributed from the first one.
	for _, t := range owners {
		var l link.Link
		if strings.HasPrefix(t.prog, "tp_btf_") {
			l, err = link.AttachTracing(link.TracingOptions{Program: coll.Programs[t.prog], AttachType: ebpf.AttachTraceRawTp})
		} else {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: t.fn, Program: coll.Programs[t.prog]})
		}
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: socket owners not tracked (%v)", t.fn, err))
			continue
		}
		p.links = append(p.links, l)
	}
	for _, t := range main {
		var l link.Link
		prog := coll.Programs[t.prog]
		switch rung {
		case hooks.Kprobe:
			l, err = link.Kprobe(t.fn, prog, nil)
		case hooks.Fentry:
			l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
		default:
			l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		}
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("attach %s: %w", t.prog, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

func setVars(spec *ebpf.CollectionSpec, opts Options) error {
	b := func(v bool) uint8 {
		if v {
			return 1
		}
		return 0
	}
	f := opts.Filter
	snap := min(opts.Snaplen, MaxSnaplen)
	var hosts [MaxHosts]tcpreceiveHostMatch
	for i, h := range f.Hosts {
		a := h.Addr.Unmap()
		hosts[i].Dir = uint8(h.Dir)
		if a.Is4() {
			hosts[i].Family = 4
			a4 := a.As4()
			copy(hosts[i].Addr[:], a4[:])
		} else {
			hosts[i].Family = 6
			hosts[i].Addr = a.As16()
		}
	}
	var ports [MaxPorts]tcpreceivePortMatch
	for i, p := range f.Ports {
		ports[i] = tcpreceivePortMatch{Port: p.Port, Dir: uint8(p.Dir)}
	}
	set := []struct {
		name string
		v    any
	}{
		{tcpreceiveVarSnaplen, snap},
		{tcpreceiveVarHeadersOnly, b(opts.HeadersOnly)},
		{tcpreceiveVarWantTcp, b(!f.NoTCP)},
		{tcpreceiveVarWantUdp, b(f.UDP)},
		{tcpreceiveVarWantV4, b(!f.OnlyV6)},
		{tcpreceiveVarWantV6, b(!f.OnlyV4)},
		{tcpreceiveVarAttributeOwner, b(opts.AttributeOwner)},
		{tcpreceiveVarIfIndex, f.IfIndex},
		{tcpreceiveVarIfNetns, f.IfNetns},
		{tcpreceiveVarN_hosts, uint32(len(f.Hosts))},
		{tcpreceiveVarHosts, hosts},
		{tcpreceiveVarN_ports, uint32(len(f.Ports))},
		{tcpreceiveVarPorts, ports},
	}
	for _, s := range set {
		if err := spec.Variables[s.name].Set(s.v); err != nil {
			return fmt.Errorf("set %s: %w", s.name, err)
		}
	}
	return nil
}

// Rung is the hook rung in use.
func (p *Probe) Rung() string { return p.rung }

// NewReader opens the per-CPU perf buffers of perCPU bytes each. Read
// blocks until one buffer holds watermark bytes or its deadline passes.
func (p *Probe) NewReader(perCPU, watermark int) (*perf.Reader, error) {
	r, err := perf.NewReaderWithOptions(p.events, perCPU, perf.ReaderOptions{Watermark: watermark})
	if errors.Is(err, unix.EPERM) {
		// The kernel caps a user's locked perf pages at
		// kernel.perf_event_mlock_kb unless CAP_IPC_LOCK.
		return nil, fmt.Errorf("%w (perf buffers beyond kernel.perf_event_mlock_kb need CAP_IPC_LOCK; or use transport: ring)", err)
	}
	return r, err
}

// Records reads the programs' records, from the perf buffers (perCPU
// bytes each, waking up at watermark bytes) or from the ring buffer.
type Records interface {
	// Next returns the next record, or a count of records the kernel
	// lost. It returns os.ErrDeadlineExceeded at the deadline and
	// ErrFlushed once Flush has drained what was there.
	Next() (raw []byte, lost uint64, err error)
	SetDeadline(time.Time)
	Flush() error
	Close() error
}

// ErrFlushed ends a drain started by Records.Flush.
var ErrFlushed = perf.ErrFlushed

// NewRecords opens the reader of the transport the probe was loaded with.
func (p *Probe) NewRecords(perCPU, watermark int) (Records, error) {
	if p.ring != nil {
		r, err := ringbuf.NewReader(p.ring)
		if err != nil {
			return nil, err
		}
		if !p.mixed {
			return &ringRecords{r: r}, nil
		}
		pr, err := p.NewReader(perCPU, watermark)
		if err != nil {
			r.Close()
			return nil, err
		}
		return &mixedRecords{ring: r, perf: pr}, nil
	}
	r, err := p.NewReader(perCPU, watermark)
	if err != nil {
		return nil, err
	}
	return &perfRecords{r: r}, nil
}

type perfRecords struct {
	r   *perf.Reader
	rec perf.Record
}

func (p *perfRecords) Next() ([]byte, uint64, error) {
	if err := p.r.ReadInto(&p.rec); err != nil {
		return nil, 0, err
	}
	return p.rec.RawSample, p.rec.LostSamples, nil
}
func (p *perfRecords) SetDeadline(t time.Time) { p.r.SetDeadline(t) }
func (p *perfRecords) Flush() error            { return p.r.Flush() }
func (p *perfRecords) Close() error            { return p.r.Close() }

type ringRecords struct {
	r   *ringbuf.Reader
	rec ringbuf.Record
}

func (r *ringRecords) Next() ([]byte, uint64, error) {
	if err := r.r.ReadInto(&r.rec); err != nil {
		if errors.Is(err, ringbuf.ErrFlushed) {
			err = ErrFlushed
		}
		return nil, 0, err
	}
	return r.rec.RawSample, 0, nil
}
func (r *ringRecords) SetDeadline(t time.Time) { r.r.SetDeadline(t) }
func (r *ringRecords) Flush() error            { return r.r.Flush() }
func (r *ringRecords) Close() error            { return r.r.Close() }

// IfKey names an interface across namespaces.
type IfKey struct {
	Netns, Ifindex uint32
}

// Lost is what the programs could not hand to user space.
type Lost struct {
	// ByInterface counts packets lost because the buffer was full.
	ByInterface map[IfKey]uint64
	// Unattributed counts lost packets whose interface could not be recorded.
	Unattributed uint64
	// OwnerErrors counts sockets whose owner could not be remembered.
	OwnerErrors uint64
}

// Lost reads the loss counters, totals since load.
func (p *Probe) Lost() (Lost, error) {
	l := Lost{ByInterface: map[IfKey]uint64{}}
	var (
		k tcpreceiveIfkey
		v uint64
	)
	it := p.lost.Iterate()
	for it.Next(&k, &v) {
		l.ByInterface[IfKey{k.Netns, k.Ifindex}] = v
	}
	if err := it.Err(); err != nil {
		return l, fmt.Errorf("read lost map: %w", err)
	}
	read := func(idx uint32) (uint64, error) {
		var vals []uint64
		if err := p.stats.Lookup(idx, &vals); err != nil {
			return 0, fmt.Errorf("read stats: %w", err)
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		return sum, nil
	}
	var err error
	if l.Unattributed, err = read(0); err != nil {
		return l, err
	}
	if l.OwnerErrors, err = read(1); err != nil {
		return l, err
	}
	return l, nil
}

// Detach removes the programs from their hooks but keeps the maps, so the
// buffers can be drained and the counters read.
func (p *Probe) Detach() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	return errors.Join(errs...)
}

// Close detaches every program and frees the maps.
func (p *Probe) Close() error {
	err := p.Detach()
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return err
}
