package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

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

// tracesExporters makes the OTLP trace exporters of the pipeline and, for
// the pipeline's own counters, the metrics side of the same otlp exporters.
func tracesExporters(a *Agent, ctx context.Context, pl *config.Pipeline) error {
	var otlpIDs []config.ID
	for _, id := range pl.Exporters {
		e := a.cfg.Exporters[id]
		if e.OTLPTraces == nil {
			continue
		}
		otlpIDs = append(otlpIDs, id)
		key := exporterKey{id, config.SignalTraces}
		if _, done := a.exporters[key]; done {
			continue
		}
		if !e.OTLPTraces.Enabled {
			a.log.Info("otlp traces exporter off: no endpoint set (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or endpoint:)", "exporter", id.String())
			continue
		}
		res, err := buildResource(ctx, a.cfg)
		if err != nil {
			return err
		}
		t, err := otlp.NewTraces(id.String(), e.OTLPTraces, res, a.log)
		if err != nil {
			return err
		}
		a.log.Info("otlp traces exporter", "exporter", id.String(), "endpoint", e.OTLPTraces.Endpoint, "protocol", e.OTLPTraces.Protocol)
		a.exporters[key] = t
	}
	if len(otlpIDs) == 0 {
		return nil
	}
	// Self-telemetry rides on the metrics side, shared with any metrics
	// pipeline that names the same exporter.
	return metricsExporters(a, ctx, &config.Pipeline{ID: pl.ID, Signal: config.SignalMetrics, Exporters: otlpIDs})
}

// defaultMemoryLimit is the Go soft memory limit set with the raised GOGC.
const defaultMemoryLimit = 192 << 20

// tracesPipeline adapts pipelines.TracesPipeline to Pipeline.
type tracesPipeline struct {
	*pipelines.TracesPipeline
}

func (p tracesPipeline) Name() string { return p.TracesPipeline.Name }

func (p tracesPipeline) Close() error {
	var errs []error
	for _, s := range p.Sources {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

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
	var status []SourceStatus
	for _, id := range pl.Sources {
		s, err := newTraceSource(a, a.cfg.Sources[id], k)
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			tracesPipeline{p}.Close()
			return nil, nil, err
		}
		p.Sources = append(p.Sources, s)
		status = append(status, statusOf(s))
	}
	return tracesPipeline{p}, status, nil
}

func probeTraceSource(a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel) (SourceStatus, error) {
	s, err := newTraceSource(a, src, k)
	if err != nil {
		return SourceStatus{}, err
	}
	if err := s.Start(ctx); err != nil {
		return SourceStatus{}, err
	}
	defer s.Close()
	return statusOf(s), nil
}
