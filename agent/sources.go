package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
)

// source is what the sources of every signal share.
type source interface {
	Name() string
	Rung() string
	Start(ctx context.Context) error
	Close() error
}

// sourceMaker makes the source of one config entry for a signal.
type sourceMaker[S source] func(a *Agent, src *config.Source, k *hooks.Kernel) (S, error)

// startSources makes and starts the sources of pl; when one fails, those
// already started are closed, so nothing stays attached.
func startSources[S source](a *Agent, ctx context.Context, pl *config.Pipeline, k *hooks.Kernel, make sourceMaker[S]) ([]S, []SourceStatus, error) {
	var started []S
	var status []SourceStatus
	for _, id := range pl.Sources {
		s, err := make(a, a.cfg.Sources[id], k)
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			closeSources(started)
			return nil, nil, err
		}
		started = append(started, s)
		status = append(status, statusOf(s))
	}
	return started, status, nil
}

func closeSources[S interface{ Close() error }](ss []S) error {
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// probeSource starts and releases one source, for `sockeye check`.
func probeSource[S source](a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel, make sourceMaker[S]) (SourceStatus, error) {
	s, err := make(a, src, k)
	if err != nil {
		return SourceStatus{}, err
	}
	if err := s.Start(ctx); err != nil {
		return SourceStatus{}, err
	}
	defer s.Close()
	return statusOf(s), nil
}

func statusOf(s interface {
	Name() string
	Rung() string
}) SourceStatus {
	st := SourceStatus{Source: s.Name(), Rung: s.Rung()}
	if n, ok := s.(interface{ Notes() []string }); ok {
		st.Notes = n.Notes()
	}
	return st
}

// otlpEventExporters makes the OTLP exporters of a logs or traces pipeline
// (settings picks the exporter's settings resolved for that signal) and,
// for the pipeline's own counters, the metrics side of the same exporters.
func otlpEventExporters(a *Agent, ctx context.Context, pl *config.Pipeline, signal config.Signal,
	settings func(*config.Exporter) *config.OTLPExporter,
	build func(name string, cfg *config.OTLPExporter, res *resource.Resource, log *slog.Logger) (shutdowner, error)) error {
	var otlpIDs []config.ID
	for _, id := range pl.Exporters {
		cfg := settings(a.cfg.Exporters[id])
		if cfg == nil {
			continue
		}
		otlpIDs = append(otlpIDs, id)
		key := exporterKey{id, signal}
		if _, done := a.exporters[key]; done {
			continue
		}
		if !cfg.Enabled {
			a.log.Info(fmt.Sprintf("otlp %s exporter off: no endpoint set (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_%s_ENDPOINT or endpoint:)",
				signal, strings.ToUpper(string(signal))), "exporter", id.String())
			continue
		}
		res, err := buildResource(ctx, a.cfg)
		if err != nil {
			return err
		}
		e, err := build(id.String(), cfg, res, a.log)
		if err != nil {
			return err
		}
		a.log.Info("otlp "+string(signal)+" exporter", "exporter", id.String(), "endpoint", cfg.Endpoint, "protocol", cfg.Protocol)
		a.exporters[key] = e
	}
	if len(otlpIDs) == 0 {
		return nil
	}
	// Self-telemetry rides on the metrics side, shared with any metrics
	// pipeline that names the same exporter.
	return metricsExporters(a, ctx, &config.Pipeline{ID: pl.ID, Signal: config.SignalMetrics, Exporters: otlpIDs})
}
