package agent

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/otlp"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/accepts"
	"github.com/sockeye/sockeye/pipelines/processors"
)

// newLogSource makes the source for a config entry; every source type the
// config accepts in logs pipelines must be here.
func newLogSource(a *Agent, src *config.Source, k *hooks.Kernel) (pipelines.LogSource, error) {
	switch {
	case src.Accepts != nil:
		return accepts.New(src.ID.String(), *src.Accepts, k, a.log), nil
	}
	return nil, fmt.Errorf("source %s: no logs source of type %q", src.ID, src.ID.Type)
}

func newLogProcessor(a *Agent, p *config.Processor) (pipelines.LogProcessor, error) {
	switch {
	case p.Filter != nil:
		return processors.NewFilter(p.ID.String(), p.Filter), nil
	case p.Containers != nil:
		return a.containersProcessor(p), nil
	}
	return nil, fmt.Errorf("processor %s: not a logs processor", p.ID)
}

// logsExporters makes the OTLP log exporters of the pipeline.
func logsExporters(a *Agent, ctx context.Context, pl *config.Pipeline) error {
	return otlpEventExporters(a, ctx, pl, config.SignalLogs,
		func(e *config.Exporter) *config.OTLPExporter { return e.OTLPLogs },
		func(name string, cfg *config.OTLPExporter, res *resource.Resource, log *slog.Logger) (shutdowner, error) {
			return otlp.NewLogs(name, cfg, res, log)
		})
}

// logsPipeline adapts pipelines.LogsPipeline to Pipeline.
type logsPipeline struct {
	*pipelines.LogsPipeline
}

func (p logsPipeline) Name() string { return p.LogsPipeline.Name }

func (p logsPipeline) Close() error { return closeSources(p.Sources) }

func startLogs(a *Agent, ctx context.Context, pl *config.Pipeline, k *hooks.Kernel) (Pipeline, []SourceStatus, error) {
	p := &pipelines.LogsPipeline{Name: pl.ID.String(), SelfInterval: config.DefaultInterval, Log: a.log}
	for _, id := range pl.Processors {
		proc, err := newLogProcessor(a, a.cfg.Processors[id])
		if err != nil {
			return nil, nil, err
		}
		p.Processors = append(p.Processors, proc)
	}
	for _, id := range pl.Exporters {
		if a.cfg.Exporters[id].Console != nil {
			p.Exporters = append(p.Exporters, a.consoleExporter(id))
			continue
		}
		if e, ok := a.exporters[exporterKey{id, config.SignalLogs}].(pipelines.LogExporter); ok {
			p.Exporters = append(p.Exporters, e)
		}
		if e, ok := a.exporters[exporterKey{id, config.SignalMetrics}].(pipelines.MetricExporter); ok {
			p.SelfExporters = append(p.SelfExporters, e)
		}
	}
	srcs, status, err := startSources(a, ctx, pl, k, newLogSource)
	if err != nil {
		return nil, nil, err
	}
	p.Sources = srcs
	return logsPipeline{p}, status, nil
}

func probeLogSource(a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel) (SourceStatus, error) {
	return probeSource(a, ctx, src, k, newLogSource)
}
