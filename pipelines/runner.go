package pipelines

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// MetricsPipeline drains its sources every Interval and feeds the batches
// through its processors to its exporters.
type MetricsPipeline struct {
	Name       string
	Interval   time.Duration
	Sources    []MetricSource
	Processors []MetricProcessor
	Exporters  []MetricExporter
	Log        *slog.Logger
	// FinalTimeout bounds the last collection and export at shutdown.
	FinalTimeout time.Duration
}

// Run blocks until ctx is done, then collects and exports one last time so
// nothing counted since the previous interval is lost.
func (p *MetricsPipeline) Run(ctx context.Context) error {
	for _, e := range p.Exporters {
		for _, s := range p.Sources {
			if err := e.Begin(p.Name, s.Console()); err != nil {
				return err
			}
		}
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			timeout := p.FinalTimeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
			p.Tick(fctx)
			cancel()
			var errs []error
			for _, e := range p.Exporters {
				for _, s := range p.Sources {
					errs = append(errs, e.Finish(p.Name, s.Console()))
				}
			}
			return errors.Join(errs...)
		case <-t.C:
			p.Tick(ctx)
		}
	}
}

// Tick runs one interval: collect, process, export. Errors are logged, not
// returned: one bad interval must not stop the pipeline.
func (p *MetricsPipeline) Tick(ctx context.Context) {
	for _, s := range p.Sources {
		b, err := s.Collect(ctx)
		if err != nil {
			p.Log.Warn("collect failed", "pipeline", p.Name, "source", s.Name(), "error", err)
			continue
		}
		b.Pipeline = p.Name
		for _, proc := range p.Processors {
			b = proc.Process(b)
		}
		for _, e := range p.Exporters {
			if err := e.ExportMetrics(ctx, b); err != nil {
				p.Log.Warn("export failed", "pipeline", p.Name, "exporter", e.Name(), "error", err)
			}
		}
	}
}
