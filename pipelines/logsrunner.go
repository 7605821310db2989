package pipelines

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// DefaultLogQueue is how many records an exporter's queue holds.
const DefaultLogQueue = 8192

// LogsPipeline runs its sources, passes every record through its
// processors and hands it to each exporter through a bounded queue. Its own
// counters, and those of its sources and exporters, go every SelfInterval
// to SelfExporters as a batch of self points (the metrics side of an otlp
// exporter).
type LogsPipeline struct {
	Name          string
	Sources       []LogSource
	Processors    []LogProcessor
	Exporters     []LogExporter
	SelfExporters []MetricExporter
	// SelfInterval is how often the counters are exported; default 5s.
	SelfInterval time.Duration
	// QueueSize bounds each exporter's queue; default DefaultLogQueue.
	QueueSize int
	Log       *slog.Logger
	// FinalTimeout bounds the draining of the queues at shutdown.
	FinalTimeout time.Duration
}

// logQueue is one exporter's queue and its counters.
type logQueue struct {
	exporter LogExporter
	ch       chan *LogRecord
	// lost counts records that did not fit in ch; abandoned those still
	// queued when the drain at shutdown timed out.
	lost, abandoned atomic.Int64
	// failed counts records the exporter returned an error for.
	failed  atomic.Int64
	lastErr atomic.Pointer[error]
	// seen are the counters as last reported, to warn once per interval.
	seenLost, seenFailed int64
}

// Run blocks until ctx is done and every source has returned, then drains
// the queues (within FinalTimeout) so what the sources read is exported.
func (p *LogsPipeline) Run(ctx context.Context) error {
	if p.Log == nil {
		p.Log = slog.Default()
	}
	for _, e := range p.Exporters {
		for _, s := range p.Sources {
			if err := e.BeginLogs(p.Name, s.Console()); err != nil {
				return err
			}
		}
	}
	size := p.QueueSize
	if size <= 0 {
		size = DefaultLogQueue
	}
	// Exporters outlive ctx: they drain their queues after the sources stop.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	queues := make([]*logQueue, len(p.Exporters))
	var workers sync.WaitGroup
	for i, e := range p.Exporters {
		q := &logQueue{exporter: e, ch: make(chan *LogRecord, size)}
		queues[i] = q
		workers.Add(1)
		go func() {
			defer workers.Done()
			q.work(wctx)
		}()
	}

	emit := func(r *LogRecord) {
		r.Pipeline = p.Name
		for _, proc := range p.Processors {
			if !proc.ProcessLog(r) {
				return
			}
		}
		for _, q := range queues {
			select {
			case q.ch <- r:
			default:
				q.lost.Add(1)
			}
		}
	}
	var sources sync.WaitGroup
	errs := make([]error, len(p.Sources))
	for i, s := range p.Sources {
		sources.Add(1)
		go func() {
			defer sources.Done()
			if err := s.Run(ctx, emit); err != nil {
				errs[i] = err
				p.Log.Error("source stopped", "pipeline", p.Name, "source", s.Name(), "error", err)
			}
		}()
	}
	sourcesDone := make(chan struct{})
	go func() {
		sources.Wait()
		close(sourcesDone)
	}()

	interval := p.SelfInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
wait:
	for {
		select {
		case <-t.C:
			p.exportSelf(ctx, queues)
		case <-sourcesDone:
			break wait
		}
	}

	for _, q := range queues {
		close(q.ch)
	}
	drained := make(chan struct{})
	go func() {
		workers.Wait()
		close(drained)
	}()
	timeout := p.FinalTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	select {
	case <-drained:
	case <-time.After(timeout):
		p.Log.Warn("logs pipeline: exporters did not drain their queues in time; the rest is dropped", "pipeline", p.Name, "timeout", timeout)
		stopWorkers()
		<-drained
	}
	for _, e := range p.Exporters {
		for _, s := range p.Sources {
			errs = append(errs, e.FinishLogs(p.Name, s.Console()))
		}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	p.exportSelf(fctx, queues)
	cancel()
	return errors.Join(errs...)
}

// work exports the queue's records until it is closed and empty, flushing
// a buffering exporter whenever the queue runs dry. Once ctx is done the
// rest is counted as abandoned.
func (q *logQueue) work(ctx context.Context) {
	flusher, _ := q.exporter.(LogFlusher)
	export := func(r *LogRecord) {
		if ctx.Err() != nil {
			q.abandoned.Add(1)
			return
		}
		if err := q.exporter.ExportLog(ctx, r); err != nil {
			if ctx.Err() != nil {
				q.abandoned.Add(1)
				return
			}
			q.failed.Add(1)
			q.lastErr.Store(&err)
		}
	}
	flush := func() {
		if flusher == nil {
			return
		}
		if err := flusher.FlushLogs(); err != nil {
			q.lastErr.Store(&err)
		}
	}
	for r := range q.ch {
		export(r)
	drain:
		for {
			select {
			case r, ok := <-q.ch:
				if !ok {
					break drain
				}
				export(r)
			default:
				break drain
			}
		}
		flush()
	}
	flush()
}

// exportSelf sends the counters of the pipeline, its sources and its
// exporters, and warns (once per interval) about records lost since the
// last call.
func (p *LogsPipeline) exportSelf(ctx context.Context, queues []*logQueue) {
	var self []SelfPoint
	for _, s := range p.Sources {
		self = append(self, s.Self()...)
	}
	pl := attribute.String("sockeye.pipeline", p.Name)
	for _, q := range queues {
		ex := attribute.String("sockeye.exporter", q.exporter.Name())
		lost, failed := q.lost.Load(), q.failed.Load()
		lostPoint := func(reason string, v int64) SelfPoint {
			return SelfPoint{Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.",
				Kind: SelfCounter, Attrs: []attribute.KeyValue{pl, ex, attribute.String("sockeye.reason", reason)}, Value: v}
		}
		self = append(self, lostPoint("queue_full", lost), lostPoint("export_error", failed),
			lostPoint("shutdown_timeout", q.abandoned.Load()))
		if lost > q.seenLost {
			p.Log.Warn("logs queue full: records dropped; the exporter is slower than the events",
				"pipeline", p.Name, "exporter", q.exporter.Name(), "dropped", lost-q.seenLost)
		}
		if failed > q.seenFailed {
			var last error
			if e := q.lastErr.Load(); e != nil {
				last = *e
			}
			p.Log.Warn("log export failed", "pipeline", p.Name, "exporter", q.exporter.Name(),
				"records", failed-q.seenFailed, "error", last)
		}
		q.seenLost, q.seenFailed = lost, failed
		if sr, ok := q.exporter.(SelfReporter); ok {
			self = append(self, sr.Self()...)
		}
	}
	if len(p.SelfExporters) == 0 {
		return
	}
	now := time.Now()
	for _, e := range p.SelfExporters {
		b := &Batch{Pipeline: p.Name, End: now, Self: self}
		if err := e.ExportMetrics(ctx, b); err != nil {
			p.Log.Warn("self-telemetry export failed", "pipeline", p.Name, "exporter", e.Name(), "error", err)
		}
	}
}
