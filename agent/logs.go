package agent

import (
	"context"
	"errors"
	"fmt"

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

// logsExporters makes the OTLP log exporters of the pipeline and, for the
// pipeline's own counters, the metrics side of the same otlp exporters.
func logsExporters(a *Agent, ctx context.Context, pl *config.Pipeline) error {
	var otlpIDs []config.ID
	for _, id := range pl.Exporters {
		e := a.cfg.Exporters[id]
		if e.OTLPLogs == nil {
			continue
		}
		otlpIDs = append(otlpIDs, id)
		key := exporterKey{id, config.SignalLogs}
		if _, done := a.exporters[key]; done {
			continue
		}
		if !e.OTLPLogs.Enabled {
			a.log.Info("otlp logs exporter off: no endpoint set (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_LOGS_ENDPOINT or endpoint:)", "exporter", id.String())
			continue
		}
		res, err := buildResource(ctx, a.cfg)
		if err != nil {
			return err
		}
		l, err := otlp.NewLogs(id.String(), e.OTLPLogs, res, a.log)
		if err != nil {
			return err
		}
		a.log.Info("otlp logs exporter", "exporter", id.String(), "endpoint", e.OTLPLogs.Endpoint, "protocol", e.OTLPLogs.Protocol)
		a.exporters[key] = l
	}
	if len(otlpIDs) == 0 {
		return nil
	}
	// Self-telemetry rides on the metrics side, shared with any metrics
	// pipeline that names the same exporter.
	return metricsExporters(a, ctx, &config.Pipeline{ID: pl.ID, Signal: config.SignalMetrics, Exporters: otlpIDs})
}

// logsPipeline adapts pipelines.LogsPipeline to Pipeline.
type logsPipeline struct {
	*pipelines.LogsPipeline
}

func (p logsPipeline) Name() string { return p.LogsPipeline.Name }

func (p logsPipeline) Close() error {
	var errs []error
	for _, s := range p.Sources {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

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
	var status []SourceStatus
	for _, id := range pl.Sources {
		s, err := newLogSource(a, a.cfg.Sources[id], k)
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			logsPipeline{p}.Close()
			return nil, nil, err
		}
		p.Sources = append(p.Sources, s)
		status = append(status, statusOf(s))
	}
	return logsPipeline{p}, status, nil
}

func probeLogSource(a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel) (SourceStatus, error) {
	s, err := newLogSource(a, src, k)
	if err != nil {
		return SourceStatus{}, err
	}
	if err := s.Start(ctx); err != nil {
		return SourceStatus{}, err
	}
	defer s.Close()
	return statusOf(s), nil
}
