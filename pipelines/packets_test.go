package pipelines

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sockeye/sockeye/internal/testenv"
)

// packetSource emits a batch of one packet every pause until ctx is done.
type packetSource struct{ pause time.Duration }

func (s *packetSource) Name() string                { return "tcp_receive" }
func (s *packetSource) Start(context.Context) error { return nil }
func (s *packetSource) Rung() string                { return "none" }
func (s *packetSource) Close() error                { return nil }
func (s *packetSource) Run(ctx context.Context, emit func(*PacketBatch) error) error {
	for ctx.Err() == nil {
		if err := emit(&PacketBatch{Packets: make([]Packet, 1)}); err != nil {
			return err
		}
		time.Sleep(s.pause)
	}
	return emit(&PacketBatch{Final: true})
}

// failingFile fails every batch, as a writer on a full disk does; with
// counts it counts its lost packets itself.
type failingFile struct {
	name   string
	counts bool
	lost   atomic.Int64
}

func (e *failingFile) Name() string                   { return e.name }
func (e *failingFile) Shutdown(context.Context) error { return nil }
func (e *failingFile) ExportPackets(_ context.Context, b *PacketBatch) error {
	e.lost.Add(int64(len(b.Packets)))
	return errors.New("write /x.pcapng: no space left on device")
}

// selfFailingFile is a failingFile that reports its losses.
type selfFailingFile struct{ failingFile }

func (e *selfFailingFile) Self() []SelfPoint {
	return []SelfPoint{{Name: MetricEventsLost, Kind: SelfCounter, Value: e.lost.Load(),
		Attrs: []attribute.KeyValue{attribute.String("sockeye.exporter", e.name), AttrReason.String("write_failed")}}}
}

type syncText = testenv.SyncBuffer

// TestPacketsLossReports: exporters failing every batch are logged once
// per interval, not once per batch; an exporter counting its own losses
// has them logged with their reason and sent as self points.
func TestPacketsLossReports(t *testing.T) {
	var logs syncText
	counted := &selfFailingFile{failingFile{name: "pcapng"}}
	plain := &failingFile{name: "other"}
	sink := &selfSink{}
	p := &PacketsPipeline{Name: "packets", Sources: []PacketSource{&packetSource{pause: time.Millisecond}},
		Exporters: []PacketExporter{counted, plain}, SelfExporters: []MetricExporter{sink},
		SelfInterval: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	// Three ticks and the final report; the last may find nothing new.
	lost := strings.Count(out, `msg="packets lost" pipeline=packets exporter=pcapng reason=write_failed`)
	failed := strings.Count(out, `msg="packets export failed" pipeline=packets exporter=other`)
	if lost < 3 || lost > 4 || failed < 3 || failed > 4 {
		t.Errorf("%d loss and %d failure lines for about 300 failing batches, want one per interval:\n%s", lost, failed, out)
	}
	if strings.Contains(out, "exporter=pcapng batches=") {
		t.Errorf("errors of an exporter counting its own losses are logged too:\n%s", out)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if got := sink.last[MetricEventsLost+",pcapng,write_failed"]; got == 0 || got != counted.lost.Load() {
		t.Errorf("self points %v, want %d lost", sink.last, counted.lost.Load())
	}
}

// lossySource is a packetSource that reports kernel losses of its own.
type lossySource struct{ packetSource }

func (s *lossySource) Self() []SelfPoint {
	return []SelfPoint{{Name: MetricEventsLost, Kind: SelfCounter, Value: 7,
		Attrs: []attribute.KeyValue{attribute.String("sockeye.source", "tcp_receive"), AttrReason.String("kernel_buffer_full")}}}
}

// TestPacketsSourceSelf: the sources' loss counters go to the self
// exporters with the exporters', every interval.
func TestPacketsSourceSelf(t *testing.T) {
	sink := &selfSink{}
	p := &PacketsPipeline{Name: "packets", Sources: []PacketSource{&lossySource{packetSource{pause: time.Millisecond}}},
		Exporters: []PacketExporter{&failingFile{name: "plain"}}, SelfExporters: []MetricExporter{sink},
		SelfInterval: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if got := sink.last[MetricEventsLost+",tcp_receive,kernel_buffer_full"]; got != 7 {
		t.Errorf("self points %v, want the source's 7 kernel losses", sink.last)
	}
}
