package agent

import (
	"context"
	"fmt"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/otlp"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/drops"
	"github.com/sockeye/sockeye/pipelines/processors"
	"github.com/sockeye/sockeye/pipelines/traffic"
)

// newMetricSource makes the source for a config entry; every source type
// the config accepts in metrics pipelines must be here.
func newMetricSource(a *Agent, src *config.Source, k *hooks.Kernel) (pipelines.MetricSource, error) {
	switch {
	case src.Traffic != nil:
		return traffic.New(src.ID.String(), *src.Traffic, k, a.log), nil
	case src.Drops != nil:
		return drops.New(src.ID.String(), *src.Drops, k, a.log), nil
	}
	return nil, fmt.Errorf("source %s: no metrics source of type %q", src.ID, src.ID.Type)
}

func newMetricProcessor(a *Agent, p *config.Processor) (pipelines.MetricProcessor, error) {
	switch {
	case p.Filter != nil:
		return processors.NewFilter(p.ID.String(), p.Filter), nil
	case p.Attributes != nil:
		return processors.NewAttributes(p.ID.String(), p.Attributes), nil
	case p.Containers != nil:
		return a.containersProcessor(p), nil
	}
	return nil, fmt.Errorf("processor %s: not a metrics processor", p.ID)
}

func metricsExporters(a *Agent, ctx context.Context, pl *config.Pipeline) error {
	for _, id := range pl.Exporters {
		key := exporterKey{id, config.SignalMetrics}
		if _, done := a.exporters[key]; done {
			continue
		}
		e := a.cfg.Exporters[id]
		if e.OTLP == nil {
			continue
		}
		if !e.OTLP.Enabled {
			a.log.Info("otlp exporter off: no endpoint set (OTEL_EXPORTER_OTLP_ENDPOINT or endpoint:)", "exporter", id.String())
			continue
		}
		res, err := buildResource(ctx, a.cfg)
		if err != nil {
			return err
		}
		m, err := otlp.NewMetrics(id.String(), e.OTLP, res, a.interval(id), a.log)
		if err != nil {
			return err
		}
		a.log.Info("otlp metrics exporter", "exporter", id.String(), "endpoint", e.OTLP.Endpoint, "protocol", e.OTLP.Protocol)
		a.exporters[key] = m
	}
	return nil
}

// metricsPipeline adapts pipelines.MetricsPipeline to Pipeline.
type metricsPipeline struct {
	*pipelines.MetricsPipeline
}

func (p metricsPipeline) Name() string { return p.MetricsPipeline.Name }

func (p metricsPipeline) Close() error { return closeSources(p.Sources) }

func startMetrics(a *Agent, ctx context.Context, pl *config.Pipeline, k *hooks.Kernel) (Pipeline, []SourceStatus, error) {
	p := &pipelines.MetricsPipeline{Name: pl.ID.String(), Interval: pl.Interval, Log: a.log}
	for _, id := range pl.Processors {
		proc, err := newMetricProcessor(a, a.cfg.Processors[id])
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
		if e, ok := a.exporters[exporterKey{id, config.SignalMetrics}].(pipelines.MetricExporter); ok {
			p.Exporters = append(p.Exporters, e)
		}
	}
	srcs, status, err := startSources(a, ctx, pl, k, newMetricSource)
	if err != nil {
		return nil, nil, err
	}
	p.Sources = srcs
	return metricsPipeline{p}, status, nil
}

func probeMetricSource(a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel) (SourceStatus, error) {
	return probeSource(a, ctx, src, k, newMetricSource)
}
