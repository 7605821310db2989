package pipelines

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"time"
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

// PacketExporter receives every batch of the pipelines it is part of.
type PacketExporter interface {
	Name() string
	ExportPackets(ctx context.Context, b *PacketBatch) error
	// Shutdown flushes and releases the exporter; called once, after all pipelines stopped.
	Shutdown(ctx context.Context) error
}

// ErrLimit is returned by PacketsPipeline.Run when Limit packets were exported.
var ErrLimit = errors.New("packet limit reached")

// PacketsPipeline runs its sources, one goroutine each, and hands every
// batch to every exporter.
type PacketsPipeline struct {
	Name      string
	Sources   []PacketSource
	Exporters []PacketExporter
	Log       *slog.Logger
	// Limit stops the pipeline after that many packets (0: no limit).
	Limit uint64
}

// Run blocks until ctx is done (or Limit is reached) and the sources have
// drained.
func (p *PacketsPipeline) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errs := make(chan error, len(p.Sources))
	var sent uint64
	var gate chan struct{}
	if len(p.Sources) > 1 {
		// Exporters see one batch at a time, whatever the number of sources.
		gate = make(chan struct{}, 1)
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
				for _, e := range p.Exporters {
					if err := e.ExportPackets(ectx, b); err != nil {
						p.Log.Warn("export failed", "pipeline", p.Name, "exporter", e.Name(), "error", err)
					}
				}
				return nil
			})
		}()
	}
	var all []error
	for range p.Sources {
		if err := <-errs; err != nil && !errors.Is(err, context.Canceled) {
			all = append(all, err)
		}
	}
	if errors.Is(context.Cause(ctx), ErrLimit) {
		all = append(all, ErrLimit)
	}
	return errors.Join(all...)
}
