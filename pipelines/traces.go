package pipelines

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Span is one finished span, as it moves down a traces pipeline.
type Span struct {
	// TraceID, SpanID and ParentID are set by sources that derive their
	// own ids (a child may be exported before its parent); all zero means
	// the exporter makes them. A zero ParentID is a root.
	TraceID  trace.TraceID
	SpanID   trace.SpanID
	ParentID trace.SpanID
	Name     string
	Kind     trace.SpanKind
	Start    time.Time
	End      time.Time
	Attrs    []attribute.KeyValue
	Events   []SpanEvent
	// Error marks a failed call; StatusMessage says why.
	Error         bool
	StatusMessage string
	// Resource describes what the span is about when that is not the agent
	// itself (the traced process); exporters merge it over their resource.
	Resource []attribute.KeyValue
	// Depth is the nesting level under the root (0 for a root), and Thread
	// the thread it ran on: for console views that print call trees.
	Depth  int
	Thread Thread
}

// Thread identifies the thread a span ran on.
type Thread struct {
	TID     int
	Command string
}

// SpanEvent is a point in time inside a span.
type SpanEvent struct {
	Name  string
	Time  time.Time
	Attrs []attribute.KeyValue
}

// SpanBatch is spans of one source on their way to the exporters.
type SpanBatch struct {
	Pipeline string
	Source   string
	Spans    []Span
}

// TraceConsole prints spans the way the source's seed script did. It may
// keep state between batches (a call tree is printed once its root ends),
// so each console exporter makes its own with the source's NewConsole.
type TraceConsole interface {
	Begin(w io.Writer) error
	WriteSpans(w io.Writer, spans []Span) error
	End(w io.Writer) error
}

// TraceProcessor changes spans in place on their way to the exporters,
// from the pipeline's one exporting goroutine.
type TraceProcessor interface {
	Name() string
	ProcessSpans(b *SpanBatch)
}

// TraceSource is a kernel-backed source of spans.
type TraceSource interface {
	Name() string
	// Start loads and attaches the source's kernel programs.
	Start(ctx context.Context) error
	// Rung is the hook rung in use after Start.
	Rung() string
	// Run hands spans to emit until ctx is done, then returns after
	// emitting what it still holds. emit never blocks: what the queue
	// cannot take is dropped and counted. While full reports true the
	// source should leave its records where they are (a kernel ring
	// buffer counts what overflows it) rather than build spans to drop:
	// building them would take the CPU the exporters need to catch up.
	Run(ctx context.Context, emit func(spans []Span), full func() bool) error
	// Self is the source's own telemetry (sockeye.agent.*).
	Self() []SelfPoint
	NewConsole() TraceConsole
	// Close detaches everything Start attached.
	Close() error
}

// TraceExporter receives the spans of the pipelines it is part of.
type TraceExporter interface {
	Name() string
	// BeginTraces is called once per pipeline and source before any span.
	BeginTraces(pipeline, source string, console func() TraceConsole) error
	ExportSpans(ctx context.Context, b *SpanBatch) error
	// FinishTraces is called once per pipeline and source after the last span.
	FinishTraces(pipeline, source string) error
	// Shutdown flushes and releases the exporter; called once, after all pipelines stopped.
	Shutdown(ctx context.Context) error
}

// DefaultTraceQueue is the default bound of a traces pipeline's queue, in spans.
const DefaultTraceQueue = 65536

// TracesPipeline moves spans from its sources to its exporters through a
// bounded queue: a source never waits for an exporter, and what does not
// fit is dropped and counted (sockeye.agent.spans.dropped).
type TracesPipeline struct {
	Name       string
	Sources    []TraceSource
	Processors []TraceProcessor
	Exporters  []TraceExporter
	// SelfExporters receive the sources' and exporters' own telemetry every
	// SelfInterval (metrics exporters of the same otlp exporters).
	SelfExporters []MetricExporter
	SelfInterval  time.Duration
	// QueueSize bounds the spans waiting for the exporters.
	QueueSize int
	Log       *slog.Logger
	// FinalTimeout bounds the last export at shutdown.
	FinalTimeout time.Duration

	queued  atomic.Int64
	dropped atomic.Int64
	spans   atomic.Int64
}

// Dropped is how many spans the queue could not take so far.
func (p *TracesPipeline) Dropped() int64 { return p.dropped.Load() }

// Exported is how many spans were handed to the exporters so far.
func (p *TracesPipeline) Exported() int64 { return p.spans.Load() }

// Run blocks until ctx is done, then drains the sources and the queue.
func (p *TracesPipeline) Run(ctx context.Context) error {
	limit := p.QueueSize
	if limit <= 0 {
		limit = DefaultTraceQueue
	}
	for _, e := range p.Exporters {
		for _, s := range p.Sources {
			if err := e.BeginTraces(p.Name, s.Name(), s.NewConsole); err != nil {
				return err
			}
		}
	}
	// Batches are counted in spans against the limit; the channel only
	// needs room for the smallest batches.
	queue := make(chan *SpanBatch, limit)
	// Full a batch early, so that a source that holds back finds room
	// when it goes on.
	full := func() bool { return p.queued.Load() > int64(limit-limit/8) }
	var wg sync.WaitGroup
	var srcErrs []error
	var mu sync.Mutex
	for _, s := range p.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Run(ctx, func(spans []Span) {
				n := int64(len(spans))
				if n == 0 {
					return
				}
				if p.queued.Add(n) > int64(limit) {
					p.queued.Add(-n)
					p.dropped.Add(n)
					return
				}
				select {
				case queue <- &SpanBatch{Pipeline: p.Name, Source: s.Name(), Spans: spans}:
				default:
					p.queued.Add(-n)
					p.dropped.Add(n)
				}
			}, full)
			if err != nil {
				mu.Lock()
				srcErrs = append(srcErrs, err)
				mu.Unlock()
			}
		}()
	}
	go func() {
		wg.Wait()
		close(queue)
	}()

	interval := p.SelfInterval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	exportCtx := context.WithoutCancel(ctx)
	var lastDropped int64
	for {
		select {
		case b, ok := <-queue:
			if !ok {
				timeout := p.FinalTimeout
				if timeout == 0 {
					timeout = 5 * time.Second
				}
				fctx, cancel := context.WithTimeout(exportCtx, timeout)
				p.exportSelf(fctx)
				cancel()
				errs := srcErrs
				for _, e := range p.Exporters {
					for _, s := range p.Sources {
						errs = append(errs, e.FinishTraces(p.Name, s.Name()))
					}
				}
				// The totals, to check a run's spans against what arrived.
				p.Log.Info("traces pipeline stopped", "pipeline", p.Name, "spans", p.spans.Load(), "queue_drops", p.dropped.Load())
				return errors.Join(errs...)
			}
			p.queued.Add(-int64(len(b.Spans)))
			p.spans.Add(int64(len(b.Spans)))
			for _, proc := range p.Processors {
				proc.ProcessSpans(b)
			}
			for _, e := range p.Exporters {
				if err := e.ExportSpans(exportCtx, b); err != nil {
					p.Log.Warn("export failed", "pipeline", p.Name, "exporter", e.Name(), "error", err)
				}
			}
		case <-tick.C:
			if d := p.dropped.Load(); d > lastDropped {
				p.Log.Warn("traces queue full: spans dropped (exporters too slow)", "pipeline", p.Name, "dropped", d-lastDropped)
				lastDropped = d
			}
			p.exportSelf(exportCtx)
		}
	}
}

// Self is the pipeline's own telemetry plus that of its sources and exporters.
func (p *TracesPipeline) Self() []SelfPoint {
	pl := attribute.String("sockeye.pipeline", p.Name)
	out := []SelfPoint{
		{Name: "sockeye.agent.spans.dropped", Unit: "{span}", Description: "Spans dropped on the way, by reason.", Kind: SelfCounter,
			Attrs: []attribute.KeyValue{pl, attribute.String("sockeye.reason", "queue_full")}, Value: p.dropped.Load()},
		{Name: "sockeye.agent.spans.exported", Unit: "{span}", Description: "Spans handed to the exporters.", Kind: SelfCounter,
			Attrs: []attribute.KeyValue{pl}, Value: p.spans.Load()},
	}
	for _, s := range p.Sources {
		out = append(out, s.Self()...)
	}
	for _, e := range p.Exporters {
		if r, ok := e.(SelfReporter); ok {
			out = append(out, r.Self()...)
		}
	}
	return out
}

func (p *TracesPipeline) exportSelf(ctx context.Context) {
	if len(p.SelfExporters) == 0 {
		return
	}
	b := &Batch{Pipeline: p.Name, Source: p.Name, End: time.Now(), Self: p.Self()}
	for _, e := range p.SelfExporters {
		if err := e.ExportMetrics(ctx, b); err != nil {
			p.Log.Warn("self telemetry export failed", "pipeline", p.Name, "exporter", e.Name(), "error", err)
		}
	}
}
