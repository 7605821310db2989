//go:build linux

package tcpreceive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/sockeye/sockeye/bpf/hooks"
	bpftcp "github.com/sockeye/sockeye/bpf/tcpreceive"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// How the source batches: a batch goes out when it holds maxBatch packets,
// when its arena is full, or interval after it was started, whichever
// comes first; the kernel loss counters are read once per statsEvery.
const (
	interval   = 100 * time.Millisecond
	maxBatch   = 1024
	arenaSize  = 4 << 20
	statsEvery = time.Second
	clockEvery = 10 * time.Second
)

// Counts are the source's totals since Start.
type Counts struct {
	// Delivered packets reached the exporters.
	Delivered uint64
	// KernelDropped packets matched the filter but the kernel buffer was full.
	KernelDropped uint64
	// Undecodable records could not be read; each is a lost packet.
	Undecodable uint64
}

// Source is the tcp_receive source of one pipeline.
type Source struct {
	name    string
	cfg     config.TCPReceiveSource
	kernel  *hooks.Kernel
	log     *slog.Logger
	snaplen int
	console *Console

	probe  *bpftcp.Probe
	reader bpftcp.Records

	// ifaces holds every interface seen or expected, for the statistics.
	ifaces map[bpftcp.IfKey]*iface
	comms  map[string]string
	offset int64 // wall clock minus CLOCK_MONOTONIC, in ns
	lost   bpftcp.Lost

	delivered, perfLost, undecodable atomic.Uint64
	// kernelLost is Counts().KernelDropped as of the last read of the
	// kernel's counters, for Self from another goroutine.
	kernelLost atomic.Uint64
}

type iface struct {
	info      pipelines.Interface
	delivered uint64
}

// New makes a source; nothing is loaded until Start. console may be nil.
func New(name string, cfg config.TCPReceiveSource, kernel *hooks.Kernel, log *slog.Logger) *Source {
	snap := int(min(cfg.Snaplen, bpftcp.MaxSnaplen))
	return &Source{
		name: name, cfg: cfg, kernel: kernel, log: log.With("source", name),
		snaplen: snap,
		console: NewConsole(),
		ifaces:  map[bpftcp.IfKey]*iface{},
		comms:   map[string]string{},
	}
}

func (s *Source) Name() string { return s.name }

// Rung is the hook rung in use, "" before Start.
func (s *Source) Rung() string {
	if s.probe == nil {
		return ""
	}
	return s.probe.Rung()
}

// Notes are the chosen rung's limits on this kernel.
func (s *Source) Notes() []string {
	if s.probe == nil {
		return nil
	}
	return s.probe.Notes
}

// Snaplen is the most bytes of a packet the source delivers.
func (s *Source) Snaplen() int { return s.snaplen }

// Counts are the totals so far; final once Run has returned.
func (s *Source) Counts() Counts {
	kernel := s.perfLost.Load()
	var attributed uint64
	for _, v := range s.lost.ByInterface {
		attributed += v
	}
	// The perf buffer reports each loss too; either count may lag the other.
	kernel = max(kernel, attributed+s.lost.Unattributed)
	return Counts{Delivered: s.delivered.Load(), KernelDropped: kernel, Undecodable: s.undecodable.Load()}
}

// Self is the source's loss counters as self-telemetry; safe to call
// while Run goes on.
func (s *Source) Self() []pipelines.SelfPoint {
	src := attribute.String("sockeye.source", s.name)
	lost := func(reason string, n uint64) pipelines.SelfPoint {
		return pipelines.SelfPoint{Name: pipelines.MetricEventsLost, Unit: "{event}",
			Description: "Events or packets lost anywhere on the way, by reason.", Kind: pipelines.SelfCounter,
			Attrs: []attribute.KeyValue{src, pipelines.AttrReason.String(reason)}, Value: int64(n)}
	}
	return []pipelines.SelfPoint{
		lost("kernel_buffer_full", max(s.kernelLost.Load(), s.perfLost.Load())),
		lost("decode_error", s.undecodable.Load()),
		{Name: "sockeye.agent.events.read", Unit: "{event}", Description: "Records read from a kernel buffer.",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{src}, Value: int64(s.delivered.Load())},
	}
}

// Filter converts the configured filter for the kernel.
func Filter(cfg config.TCPReceiveSource) bpftcp.Filter {
	f := cfg.Filter
	out := bpftcp.Filter{
		UDP:    cfg.UDP || f.UDP,
		NoTCP:  f.UDP,
		OnlyV4: f.IPv4,
		OnlyV6: f.IPv6,
	}
	if f.TCP {
		out.UDP = false
	}
	dir := func(d string) bpftcp.Dir {
		switch d {
		case "src":
			return bpftcp.Source
		case "dst":
			return bpftcp.Destination
		}
		return bpftcp.Either
	}
	for _, h := range f.Hosts {
		out.Hosts = append(out.Hosts, bpftcp.Host{Addr: h.Addr, Dir: dir(h.Dir)})
	}
	for _, p := range f.Ports {
		out.Ports = append(out.Ports, bpftcp.Port{Port: p.Port, Dir: dir(p.Dir)})
	}
	return out
}

// ownNetns is the inode of this process's network namespace.
func ownNetns() (uint32, error) {
	fi, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return 0, err
	}
	return uint32(fi.Sys().(*syscall.Stat_t).Ino), nil
}

func (s *Source) Start(ctx context.Context) error {
	netns, err := ownNetns()
	if err != nil {
		return fmt.Errorf("tcp_receive: network namespace: %w", err)
	}
	f := Filter(s.cfg)
	var expect []net.Interface
	if s.cfg.Interface != "" {
		ifc, err := net.InterfaceByName(s.cfg.Interface)
		if err != nil {
			return fmt.Errorf("tcp_receive: interface %q: %w", s.cfg.Interface, err)
		}
		f.IfIndex, f.IfNetns = uint32(ifc.Index), netns
		expect = []net.Interface{*ifc}
	} else if expect, err = net.Interfaces(); err != nil {
		return fmt.Errorf("tcp_receive: list interfaces: %w", err)
	}
	for _, ifc := range expect {
		k := bpftcp.IfKey{Netns: netns, Ifindex: uint32(ifc.Index)}
		s.ifaces[k] = &iface{info: pipelines.Interface{Netns: netns, Index: uint32(ifc.Index), Name: ifc.Name}}
	}
	ring := s.cfg.Transport == "ring"
	if ring {
		s.snaplen = min(s.snaplen, bpftcp.RingSnaplen)
	}
	buf := max(s.cfg.BufferSize, config.MinCaptureBuffer)
	p, err := bpftcp.Open(bpftcp.Options{
		Hook:           s.cfg.Hook,
		Ring:           ring,
		Mixed:          s.cfg.Transport == "" || s.cfg.Transport == "auto",
		RingSize:       ringSize(buf),
		Snaplen:        uint32(s.snaplen),
		HeadersOnly:    s.cfg.HeadersOnly,
		AttributeOwner: s.cfg.Attribution != "none",
		Filter:         f,
		Kernel:         s.kernel,
		Log:            s.log,
	})
	if err != nil {
		return err
	}
	// Wake up when a quarter of a buffer is full, or at the batch interval.
	rd, err := p.NewRecords(buf, buf/4)
	if err != nil {
		p.Close()
		return fmt.Errorf("tcp_receive: perf buffer: %w", err)
	}
	s.probe, s.reader = p, rd
	s.offset = clockOffset()
	return nil
}

func (s *Source) Close() error {
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
		s.reader = nil
	}
	if s.probe != nil {
		errs = append(errs, s.probe.Close())
		s.probe = nil
	}
	return errors.Join(errs...)
}

// ringSize is the ring buffer for a per-CPU budget: as much in total, a
// power of two.
func ringSize(perCPU int) uint32 {
	total := uint64(perCPU) * uint64(max(runtime.NumCPU(), 1))
	size := uint32(1 << 16)
	for uint64(size) < total && size < 1<<30 {
		size <<= 1
	}
	return size
}

// clockOffset is CLOCK_REALTIME minus CLOCK_MONOTONIC (what
// bpf_ktime_get_ns reads), from the closest of a few paired readings.
func clockOffset() int64 {
	best, off := int64(1<<62), int64(0)
	for range 5 {
		var m1, r, m2 unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
		unix.ClockGettime(unix.CLOCK_REALTIME, &r)
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
		if gap := m2.Nano() - m1.Nano(); gap < best {
			best, off = gap, r.Nano()-(m1.Nano()+m2.Nano())/2
		}
	}
	return off
}

// Run reads the perf buffers until ctx is done, then detaches the programs,
// drains the buffers and emits the last batch.
func (s *Source) Run(ctx context.Context, emit func(*pipelines.PacketBatch) error) error {
	if s.probe == nil {
		return errors.New("tcp_receive: not started")
	}
	stop := context.AfterFunc(ctx, func() {
		if err := s.probe.Detach(); err != nil {
			s.log.Warn("detach", "error", err)
		}
		s.reader.Flush()
	})
	defer stop()

	b := &pipelines.PacketBatch{Source: s.name, Console: s.console, Snaplen: s.snaplen}
	arena := make([]byte, 0, arenaSize)
	var lastStats, lastClock time.Time
	flush := func(final bool) error {
		now := time.Now()
		b.Time, b.Final = now, final
		if final || now.Sub(lastStats) >= statsEvery {
			before := s.Counts().KernelDropped
			if l, err := s.probe.Lost(); err != nil {
				s.log.Warn("reading loss counters", "error", err)
			} else {
				s.lost = l
			}
			total := s.Counts().KernelDropped
			s.kernelLost.Store(total)
			if total > before {
				s.log.Warn("kernel buffer full: packets lost; raise buffer_size (-B) or narrow the filter",
					"lost", total-before, "lost_total", total)
			}
			lastStats = now
		}
		b.Stats = s.stats()
		// Per-CPU perf buffers interleave; the ring is nearly always in
		// order already, and checking costs less than sorting.
		byTime := func(x, y pipelines.Packet) int { return x.Time.Compare(y.Time) }
		if !slices.IsSortedFunc(b.Packets, byTime) {
			slices.SortStableFunc(b.Packets, byTime)
		}
		err := emit(b)
		s.delivered.Add(uint64(len(b.Packets)))
		b.Packets, arena = b.Packets[:0], arena[:0]
		if now.Sub(lastClock) >= clockEvery {
			s.offset, lastClock = clockOffset(), now
		}
		s.reader.SetDeadline(now.Add(interval))
		return err
	}
	// An empty first batch: consoles print their header, files their interfaces.
	if err := flush(false); err != nil {
		return err
	}
	started := time.Now()
	var ev bpftcp.Event
	for {
		raw, lost, err := s.reader.Next()
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if err := flush(false); err != nil {
				return err
			}
			started = b.Time
			continue
		case errors.Is(err, bpftcp.ErrFlushed):
			return flush(true)
		default:
			return fmt.Errorf("tcp_receive: read: %w", err)
		}
		if lost > 0 {
			s.perfLost.Add(lost)
			continue
		}
		if err := bpftcp.Decode(raw, &ev); err != nil {
			if s.undecodable.Add(1) == 1 {
				s.log.Warn("undecodable record", "error", err)
			}
			continue
		}
		if len(arena)+len(ev.Data) > cap(arena) {
			if err := flush(false); err != nil {
				return err
			}
			started = b.Time
		}
		start := len(arena)
		arena = append(arena, ev.Data...)
		b.Packets = append(b.Packets, s.packet(&ev, arena[start:len(arena):len(arena)]))
		if len(b.Packets) >= maxBatch || len(b.Packets)%64 == 0 && time.Since(started) >= interval {
			if err := flush(false); err != nil {
				return err
			}
			started = b.Time
		}
	}
}

func (s *Source) packet(ev *bpftcp.Event, data []byte) pipelines.Packet {
	k := bpftcp.IfKey{Netns: ev.Netns, Ifindex: ev.Ifindex}
	ifc := s.ifaces[k]
	if ifc == nil {
		ifc = &iface{info: pipelines.Interface{Netns: ev.Netns, Index: ev.Ifindex, Name: string(ev.Dev)}}
		s.ifaces[k] = ifc
	}
	ifc.delivered++
	p := pipelines.Packet{
		Time:     time.Unix(0, int64(ev.Mono)+s.offset),
		Iface:    ifc.info,
		Len:      int(ev.Len),
		Data:     data,
		Proto:    ev.Proto,
		Src:      ev.Src,
		Dst:      ev.Dst,
		SrcPort:  ev.SrcPort,
		DstPort:  ev.DstPort,
		TCPFlags: ev.TCPFlags,
	}
	if ev.Flags&bpftcp.FlagOwner != 0 {
		p.Owned = true
		p.Owner = pipelines.Owner{PID: ev.PID, UID: ev.UID, Command: s.comm(ev.Comm)}
	}
	return p
}

// comm interns command names: the same few repeat for every packet.
func (s *Source) comm(b []byte) string {
	if c, ok := s.comms[string(b)]; ok {
		return c
	}
	if len(s.comms) >= 4096 {
		clear(s.comms)
	}
	c := string(b)
	s.comms[c] = c
	return c
}

// stats are the per-interface totals: every interface expected or seen,
// and those the kernel lost packets on.
func (s *Source) stats() []pipelines.IfaceStats {
	for k := range s.lost.ByInterface {
		if s.ifaces[k] == nil {
			name := fmt.Sprintf("ifindex%d", k.Ifindex)
			if own, err := ownNetns(); err == nil && own == k.Netns {
				if ifc, err := net.InterfaceByIndex(int(k.Ifindex)); err == nil {
					name = ifc.Name
				}
			}
			s.ifaces[k] = &iface{info: pipelines.Interface{Netns: k.Netns, Index: k.Ifindex, Name: name}}
		}
	}
	out := make([]pipelines.IfaceStats, 0, len(s.ifaces))
	for k, ifc := range s.ifaces {
		lost := s.lost.ByInterface[k]
		out = append(out, pipelines.IfaceStats{Iface: ifc.info, Matched: ifc.delivered + lost, Dropped: lost})
	}
	slices.SortFunc(out, func(a, b pipelines.IfaceStats) int {
		return cmp.Or(cmp.Compare(a.Iface.Netns, b.Iface.Netns), cmp.Compare(a.Iface.Index, b.Iface.Index))
	})
	return out
}
