package pipelines

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeSpanSource struct {
	batches, size int
}

func (f *fakeSpanSource) Name() string                { return "fake" }
func (f *fakeSpanSource) Start(context.Context) error { return nil }
func (f *fakeSpanSource) Rung() string                { return "test" }
func (f *fakeSpanSource) Self() []SelfPoint {
	return []SelfPoint{{Name: "sockeye.agent.test", Value: 1}}
}
func (f *fakeSpanSource) NewConsole() TraceConsole { return nil }
func (f *fakeSpanSource) Close() error             { return nil }
func (f *fakeSpanSource) Run(ctx context.Context, emit func([]Span), _ func() bool) error {
	for range f.batches {
		emit(make([]Span, f.size))
	}
	<-ctx.Done()
	return nil
}

type slowSpanExporter struct {
	delay           time.Duration
	spans           atomic.Int64
	begun, finished atomic.Int64
}

func (e *slowSpanExporter) Name() string { return "slow" }
func (e *slowSpanExporter) BeginTraces(string, string, func() TraceConsole) error {
	e.begun.Add(1)
	return nil
}
func (e *slowSpanExporter) ExportSpans(_ context.Context, b *SpanBatch) error {
	time.Sleep(e.delay)
	e.spans.Add(int64(len(b.Spans)))
	return nil
}
func (e *slowSpanExporter) FinishTraces(string, string) error { e.finished.Add(1); return nil }
func (e *slowSpanExporter) Shutdown(context.Context) error    { return nil }

type traceSelfSink struct {
	mu  sync.Mutex
	got []SelfPoint
}

func (s *traceSelfSink) Name() string                          { return "self" }
func (s *traceSelfSink) Begin(string, ConsoleFormatter) error  { return nil }
func (s *traceSelfSink) Finish(string, ConsoleFormatter) error { return nil }
func (s *traceSelfSink) Shutdown(context.Context) error        { return nil }
func (s *traceSelfSink) ExportMetrics(_ context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = b.Self
	return nil
}

// A slow exporter never blocks the source: what the queue cannot hold is
// dropped and counted, and every span is either exported or counted.
func TestTracesPipelineQueueOverflowCounted(t *testing.T) {
	src := &fakeSpanSource{batches: 200, size: 10}
	exp := &slowSpanExporter{delay: time.Millisecond}
	self := &traceSelfSink{}
	p := &TracesPipeline{Name: "traces/test", Sources: []TraceSource{src}, Exporters: []TraceExporter{exp},
		SelfExporters: []MetricExporter{self}, QueueSize: 100, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Dropped() == 0 {
		t.Error("nothing dropped with a queue of 100 spans and a slow exporter")
	}
	if got := exp.spans.Load() + p.Dropped(); got != 2000 {
		t.Errorf("exported %d + dropped %d = %d, want 2000", exp.spans.Load(), p.Dropped(), got)
	}
	if exp.begun.Load() != 1 || exp.finished.Load() != 1 {
		t.Errorf("begin %d finish %d", exp.begun.Load(), exp.finished.Load())
	}
	self.mu.Lock()
	defer self.mu.Unlock()
	var dropped int64 = -1
	for _, pt := range self.got {
		if pt.Name == "sockeye.agent.spans.dropped" {
			dropped = pt.Value
		}
	}
	if dropped != p.Dropped() {
		t.Errorf("self telemetry says %d dropped, want %d", dropped, p.Dropped())
	}
}

// politeSpanSource holds back while the pipeline says its queue is full, as
// a ring-buffer source does.
type politeSpanSource struct {
	fakeSpanSource
	waited int
}

func (f *politeSpanSource) Run(ctx context.Context, emit func([]Span), full func() bool) error {
	for range f.batches {
		for full() {
			f.waited++
			time.Sleep(100 * time.Microsecond)
		}
		emit(make([]Span, f.size))
	}
	<-ctx.Done()
	return nil
}

// full tells a source when to hold back: one that does loses nothing at
// the queue, however slow the exporter.
func TestTracesPipelineFullHoldsSourceBack(t *testing.T) {
	src := &politeSpanSource{fakeSpanSource: fakeSpanSource{batches: 200, size: 10}}
	exp := &slowSpanExporter{delay: time.Millisecond}
	p := &TracesPipeline{Name: "traces/test", Sources: []TraceSource{src}, Exporters: []TraceExporter{exp},
		QueueSize: 100, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if src.waited == 0 {
		t.Error("full() never reported a full queue to a source 20 times faster than its exporter")
	}
	if p.Dropped() != 0 || exp.spans.Load() != 2000 {
		t.Errorf("exported %d, dropped %d; want 2000 and 0", exp.spans.Load(), p.Dropped())
	}
}
