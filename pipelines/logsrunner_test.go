package pipelines

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// fakeSource emits n records, pause apart, then waits for ctx.
type fakeSource struct {
	n       int
	pause   time.Duration
	emitted chan struct{}
}

func (s *fakeSource) Name() string                 { return "fake" }
func (s *fakeSource) Start(context.Context) error  { return nil }
func (s *fakeSource) Rung() string                 { return "none" }
func (s *fakeSource) Notes() []string              { return nil }
func (s *fakeSource) Console() LogConsoleFormatter { return nil }
func (s *fakeSource) Close() error                 { return nil }
func (s *fakeSource) Self() []SelfPoint {
	return []SelfPoint{{Name: "sockeye.agent.events.read", Kind: SelfCounter, Value: int64(s.n)}}
}

func (s *fakeSource) Run(ctx context.Context, emit func(*LogRecord)) error {
	for i := 0; i < s.n; i++ {
		emit(&LogRecord{Attrs: []attribute.KeyValue{attribute.Int("i", i)}})
		time.Sleep(s.pause)
	}
	close(s.emitted)
	<-ctx.Done()
	return nil
}

// fakeExporter keeps records; it blocks on gate before the first one.
type fakeExporter struct {
	name    string
	gate    chan struct{}
	mu      sync.Mutex
	got     []*LogRecord
	flushes atomic.Int64
	begun   atomic.Int64
	ended   atomic.Int64
}

func (e *fakeExporter) Name() string { return e.name }
func (e *fakeExporter) BeginLogs(string, LogConsoleFormatter) error {
	e.begun.Add(1)
	return nil
}
func (e *fakeExporter) FinishLogs(string, LogConsoleFormatter) error {
	e.ended.Add(1)
	return nil
}
func (e *fakeExporter) Shutdown(context.Context) error { return nil }
func (e *fakeExporter) FlushLogs() error {
	e.flushes.Add(1)
	return nil
}
func (e *fakeExporter) ExportLog(ctx context.Context, r *LogRecord) error {
	if e.gate != nil {
		select {
		case <-e.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e.mu.Lock()
	e.got = append(e.got, r)
	e.mu.Unlock()
	return nil
}

func (e *fakeExporter) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got)
}

// selfSink is a metrics exporter that keeps the last self points.
type selfSink struct {
	mu   sync.Mutex
	last map[string]int64
}

func (s *selfSink) Name() string                          { return "self" }
func (s *selfSink) Begin(string, ConsoleFormatter) error  { return nil }
func (s *selfSink) Finish(string, ConsoleFormatter) error { return nil }
func (s *selfSink) Shutdown(context.Context) error        { return nil }
func (s *selfSink) ExportMetrics(_ context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = map[string]int64{}
	for _, p := range b.Self {
		key := p.Name
		for _, kv := range p.Attrs {
			key += "," + kv.Value.Emit()
		}
		s.last[key] = p.Value
	}
	return nil
}

type dropOdd struct{}

func (dropOdd) Name() string { return "odd" }
func (dropOdd) ProcessLog(r *LogRecord) bool {
	return r.Attrs[0].Value.AsInt64()%2 == 0
}

// TestLogsPipeline checks the fan-out: a fast exporter gets every record
// the processors keep, a stuck one gets what its queue holds and the rest
// is counted as queue_full, and the counts reach the self exporter.
func TestLogsPipeline(t *testing.T) {
	// Paced so the fast exporter keeps up; the slow one is stuck throughout.
	src := &fakeSource{n: 300, pause: 200 * time.Microsecond, emitted: make(chan struct{})}
	fast := &fakeExporter{name: "fast"}
	slow := &fakeExporter{name: "slow", gate: make(chan struct{})}
	sink := &selfSink{}
	p := &LogsPipeline{
		Name: "logs/test", Sources: []LogSource{src}, Processors: []LogProcessor{dropOdd{}},
		Exporters: []LogExporter{fast, slow}, SelfExporters: []MetricExporter{sink},
		QueueSize: 100, SelfInterval: time.Hour, FinalTimeout: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	<-src.emitted
	close(slow.gate)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fast.count() != 150 {
		t.Errorf("fast exporter got %d records, want the 150 kept", fast.count())
	}
	// The slow exporter's worker may hold one record while blocked, on top
	// of the queue's 100.
	if n := slow.count(); n < 100 || n > 101 {
		t.Errorf("slow exporter got %d records, want 100 or 101", n)
	}
	if fast.begun.Load() != 1 || fast.ended.Load() != 1 || fast.flushes.Load() == 0 {
		t.Errorf("begin %d end %d flushes %d", fast.begun.Load(), fast.ended.Load(), fast.flushes.Load())
	}
	for i, r := range fast.got {
		if r.Pipeline != "logs/test" || r.Attrs[0].Value.AsInt64() != int64(2*i) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	want := map[string]int64{
		"sockeye.agent.events.read":                                 300,
		"sockeye.agent.events.lost,logs/test,fast,queue_full":       0,
		"sockeye.agent.events.lost,logs/test,slow,queue_full":       int64(150 - slow.count()),
		"sockeye.agent.events.lost,logs/test,slow,export_error":     0,
		"sockeye.agent.events.lost,logs/test,fast,shutdown_timeout": 0,
	}
	for k, v := range want {
		if got, ok := sink.last[k]; !ok || got != v {
			t.Errorf("self %s = %d (present %v), want %d; all: %v", k, got, ok, v, sink.last)
		}
	}
}

// TestLogsPipelineShutdownTimeout checks that an exporter stuck at
// shutdown is abandoned after FinalTimeout and what it held is counted.
func TestLogsPipelineShutdownTimeout(t *testing.T) {
	src := &fakeSource{n: 5, emitted: make(chan struct{})}
	stuck := &fakeExporter{name: "stuck", gate: make(chan struct{})}
	sink := &selfSink{}
	p := &LogsPipeline{
		Name: "logs/t", Sources: []LogSource{src}, Exporters: []LogExporter{stuck}, SelfExporters: []MetricExporter{sink},
		FinalTimeout: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	<-src.emitted
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if got := sink.last["sockeye.agent.events.lost,logs/t,stuck,shutdown_timeout"]; got != 5 {
		t.Errorf("shutdown_timeout = %d, want 5: %v", got, sink.last)
	}
}
