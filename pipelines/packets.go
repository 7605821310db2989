package pipelines

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// A packets pipeline streams individual packets, not aggregates: its source
// hands over batches as they come off the kernel's buffers and every
// exporter sees each batch in turn.

// Interface names a network interface across namespaces.
type Interface struct {
	// Netns is the inode of the interface's network namespace.
	Netns uint32
	Index uint32
	// Name is the interface name in its namespace.
	Name string
}

// Owner is the process owning the local socket of a packet.
type Owner struct {
	PID, UID uint32
	Command  string
}

// Packet is one received packet. Data is raw IP (LINKTYPE_RAW): it starts
// at the network header.
type Packet struct {
	Time  time.Time
	Iface Interface
	// Len is the packet's length on the wire from the network header; Data
	// holds its first len(Data) bytes.
	Len      int
	Data     []byte
	Proto    uint8 // 6 TCP, 17 UDP
	Src, Dst netip.Addr
	// SrcPort and DstPort are 0 when unknown (a non-first fragment).
	SrcPort, DstPort uint16
	// TCPFlags are byte 13 of the TCP header (CWR ECE URG ACK PSH RST SYN
	// FIN from the top bit down), plus bit 8 for AE.
	TCPFlags uint16
	// Owner is the local socket's owner when Owned is true.
	Owner Owner
	Owned bool
}

// TCP flag bits of Packet.TCPFlags.
const (
	TCPFin uint16 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
	TCPAe
)

// IfaceStats are a source's totals for one interface since it started.
type IfaceStats struct {
	Iface Interface
	// Matched counts packets that passed the filter, delivered or not.
	Matched uint64
	// Dropped counts matched packets lost before reaching the exporters.
	Dropped uint64
}

// PacketBatch is what a source delivers at once. Packets and their Data are
// valid only during the ExportPackets call: exporters copy what they keep.
type PacketBatch struct {
	Pipeline string
	Source   string
	// Time is when the batch was handed over.
	Time    time.Time
	Packets []Packet
	// Stats, when not nil, are the source's per-interface totals at Time.
	Stats []IfaceStats
	// Snaplen is the most bytes a packet's Data holds.
	Snaplen int
	Console PacketConsole
	// Final marks the last batch of a source.
	Final bool
}

// PacketConsole prints packet batches the way the source's seed script did.
type PacketConsole interface {
	WritePackets(w io.Writer, b *PacketBatch) error
}

// PacketSource is a kernel-backed source of packets.
type PacketSource interface {
	Name() string
	// Start loads and attaches the source's kernel programs.
	Start(ctx context.Context) error
	Rung() string
	// Run hands batches to emit until ctx is done, then detaches, drains
	// what the kernel still holds and emits a last batch marked Final. An
	// error from emit stops it. It emits at least once per interval, empty
	// batches included, so consoles can keep time.
	Run(ctx context.Context, emit func(*PacketBatch) error) error
	// Close releases everything Start made.
	Close() error
}

// PacketExporter receives every batch of the pipelines it is part of. An
// exporter that is also a SelfReporter counts and logs its own losses: the
// pipeline reports its loss points instead of its errors.
type PacketExporter interface {
	Name() string
	ExportPackets(ctx context.Context, b *PacketBatch) error
	// Shutdown flushes and releases the exporter; called once, after all pipelines stopped.
	Shutdown(ctx context.Context) error
}

// MetricEventsLost is the self-metric counting what is lost anywhere on the
// way, by AttrReason.
const MetricEventsLost = "sockeye.agent.events.lost"

// AttrReason says why a loss happened ("write_failed", "queue_full", ...).
const AttrReason = attribute.Key("sockeye.reason")

// ErrLimit is returned by PacketsPipeline.Run when Limit packets were exported.
var ErrLimit = errors.New("packet limit reached")

// PacketsPipeline runs its sources, one goroutine each, and hands every
// batch to every exporter. Every SelfInterval it logs what its exporters
// lost since the last time and sends their counters to SelfExporters.
type PacketsPipeline struct {
	Name          string
	Sources       []PacketSource
	Exporters     []PacketExporter
	SelfExporters []MetricExporter
	// SelfInterval is how often losses are logged and exported; default 5s.
	SelfInterval time.Duration
	Log          *slog.Logger
	// Limit stops the pipeline after that many packets (0: no limit).
	Limit uint64
}

// exportState is what the pipeline knows of one exporter between two
// reports.
type exportState struct {
	exporter PacketExporter
	// errors counts failed exports of an exporter that does not report its
	// own losses; lastErr is the latest.
	errors, seenErrors atomic.Int64
	lastErr            atomic.Pointer[error]
	// seen are the exporter's loss counters as last logged.
	seen map[attribute.Distinct]int64
}

// Run blocks until ctx is done (or Limit is reached) and the sources have
// drained.
func (p *PacketsPipeline) Run(ctx context.Context) error {
	if p.Log == nil {
		p.Log = slog.Default()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errs := make(chan error, len(p.Sources))
	var sent uint64
	var gate chan struct{}
	if len(p.Sources) > 1 {
		// Exporters see one batch at a time, whatever the number of sources.
		gate = make(chan struct{}, 1)
	}
	states := make([]*exportState, len(p.Exporters))
	for i, e := range p.Exporters {
		states[i] = &exportState{exporter: e, seen: map[attribute.Distinct]int64{}}
	}
	for _, s := range p.Sources {
		go func() {
			errs <- s.Run(ctx, func(b *PacketBatch) error {
				if gate != nil {
					gate <- struct{}{}
					defer func() { <-gate }()
				}
				b.Pipeline = p.Name
				if p.Limit > 0 {
					if sent >= p.Limit {
						b.Packets = nil
					} else if left := p.Limit - sent; uint64(len(b.Packets)) >= left {
						b.Packets = b.Packets[:left]
						defer cancel(ErrLimit)
					}
					sent += uint64(len(b.Packets))
				}
				// Exports keep going after cancellation: the final drain must reach the file.
				ectx := context.WithoutCancel(ctx)
				for _, st := range states {
					if err := st.exporter.ExportPackets(ectx, b); err != nil {
						// Logged once per interval, not once per batch: a full
						// disk fails every batch.
						st.errors.Add(1)
						st.lastErr.Store(&err)
					}
				}
				return nil
			})
		}()
	}
	interval := p.SelfInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var all []error
	for left := len(p.Sources); left > 0; {
		select {
		case err := <-errs:
			left--
			if err != nil && !errors.Is(err, context.Canceled) {
				all = append(all, err)
			}
		case <-t.C:
			p.reportSelf(ctx, states)
		}
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), interval)
	p.reportSelf(fctx, states)
	fcancel()
	if errors.Is(context.Cause(ctx), ErrLimit) {
		all = append(all, ErrLimit)
	}
	return errors.Join(all...)
}

// reportSelf logs the losses of the exporters since the last call and
// sends their counters to the self exporters.
func (p *PacketsPipeline) reportSelf(ctx context.Context, states []*exportState) {
	var self []SelfPoint
	for _, st := range states {
		name := st.exporter.Name()
		sr, ok := st.exporter.(SelfReporter)
		if !ok {
			if n := st.errors.Load(); n > st.seenErrors.Load() {
				var last error
				if e := st.lastErr.Load(); e != nil {
					last = *e
				}
				p.Log.Warn("packets export failed", "pipeline", p.Name, "exporter", name,
					"batches", n-st.seenErrors.Load(), "error", last)
				st.seenErrors.Store(n)
			}
			continue
		}
		for _, pt := range sr.Self() {
			self = append(self, pt)
			if pt.Name != MetricEventsLost || pt.Kind != SelfCounter {
				continue
			}
			set := attribute.NewSet(pt.Attrs...)
			if prev := st.seen[set.Equivalent()]; pt.Value > prev {
				reason, _ := set.Value(AttrReason)
				p.Log.Warn("packets lost", "pipeline", p.Name, "exporter", name, "reason", reason.AsString(),
					"lost", pt.Value-prev, "lost_total", pt.Value)
			}
			st.seen[set.Equivalent()] = pt.Value
		}
	}
	for _, s := range p.Sources {
		if sr, ok := s.(SelfReporter); ok {
			self = append(self, sr.Self()...)
		}
	}
	if len(self) == 0 || len(p.SelfExporters) == 0 {
		return
	}
	now := time.Now()
	for _, e := range p.SelfExporters {
		if err := e.ExportMetrics(ctx, &Batch{Pipeline: p.Name, End: now, Self: self}); err != nil {
			p.Log.Warn("self-telemetry export failed", "pipeline", p.Name, "exporter", e.Name(), "error", err)
		}
	}
}
