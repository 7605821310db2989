package agent

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/otlp"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/socketcalls"
)

// newTraceSource makes the source for a config entry; every source type the
// config accepts in traces pipelines must be here.
func newTraceSource(a *Agent, src *config.Source, k *hooks.Kernel) (pipelines.TraceSource, error) {
	switch {
	case src.SocketCalls != nil:
		return socketcalls.New(src.ID.String(), *src.SocketCalls, k, a.log), nil
	}
	return nil, fmt.Errorf("source %s: no traces source of type %q", src.ID, src.ID.Type)
}

// tracesExporters makes the OTLP trace exporters of the pipeline.
func tracesExporters(a *Agent, ctx context.Context, pl *config.Pipeline) error {
	return otlpEventExporters(a, ctx, pl, config.SignalTraces,
		func(e *config.Exporter) *config.OTLPExporter { return e.OTLPTraces },
		func(name string, cfg *config.OTLPExporter, res *resource.Resource, log *slog.Logger) (shutdowner, error) {
			return otlp.NewTraces(name, cfg, res, log)
		})
}

// defaultMemoryLimit is the Go soft memory limit set with the raised GOGC.
const defaultMemoryLimit = 192 << 20

// tracesPipeline adapts pipelines.TracesPipeline to Pipeline.
type tracesPipeline struct {
	*pipelines.TracesPipeline
}

func (p tracesPipeline) Name() string { return p.TracesPipeline.Name }

func (p tracesPipeline) Close() error { return closeSources(p.Sources) }

func startTraces(a *Agent, ctx context.Context, pl *config.Pipeline, k *hooks.Kernel) (Pipeline, []SourceStatus, error) {
	// Spans are short-lived garbage at a high rate: a larger GC target
	// trades some heap for far less collection work, unless GOGC is set.
	if a.env("GOGC") == "" {
		debug.SetGCPercent(400)
		// and a soft limit keeps that heap from growing without bound in
		// bursts (the live heap is a few tens of MiB), unless GOMEMLIMIT is set.
		if a.env("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(defaultMemoryLimit)
		}
	}
	p := &pipelines.TracesPipeline{Name: pl.ID.String(), SelfInterval: config.DefaultInterval, Log: a.log}
	for _, id := range pl.Exporters {
		if a.cfg.Exporters[id].Console != nil {
			p.Exporters = append(p.Exporters, a.consoleExporter(id))
			continue
		}
		if e, ok := a.exporters[exporterKey{id, config.SignalTraces}].(pipelines.TraceExporter); ok {
			p.Exporters = append(p.Exporters, e)
		}
		if e, ok := a.exporters[exporterKey{id, config.SignalMetrics}].(pipelines.MetricExporter); ok {
			p.SelfExporters = append(p.SelfExporters, e)
		}
	}
	for _, id := range pl.Processors {
		proc := a.cfg.Processors[id]
		if proc.Containers == nil {
			return nil, nil, fmt.Errorf("processor %s: not a traces processor", id)
		}
		p.Processors = append(p.Processors, a.containersProcessor(proc))
	}
	srcs, status, err := startSources(a, ctx, pl, k, newTraceSource)
	if err != nil {
		return nil, nil, err
	}
	p.Sources = srcs
	return tracesPipeline{p}, status, nil
}

func probeTraceSource(a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel) (SourceStatus, error) {
	return probeSource(a, ctx, src, k, newTraceSource)
}
