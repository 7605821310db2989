package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/console"
	"github.com/sockeye/sockeye/exporters/otlp"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/processors"
	"github.com/sockeye/sockeye/pipelines/traffic"
)

// Agent runs the pipelines of one config.
type Agent struct {
	cfg    *config.Config
	log    *slog.Logger
	stdout io.Writer
	env    func(string) string

	exporters map[config.ID]pipelines.MetricExporter
	pipelines []*pipelines.MetricsPipeline
	sources   []pipelines.MetricSource
	// Failed names the pipelines that could not start, and why.
	Failed map[string]error
}

// New prepares an agent; nothing is attached until Start.
func New(cfg *config.Config, stdout io.Writer, log *slog.Logger, env func(string) string) *Agent {
	return &Agent{cfg: cfg, log: log, stdout: stdout, env: env, Failed: map[string]error{}}
}

// newSource makes the source for a config entry; every source type the
// config accepts for metrics pipelines must be here.
func newSource(src *config.Source, k *hooks.Kernel, log *slog.Logger) (pipelines.MetricSource, error) {
	switch {
	case src.Traffic != nil:
		return traffic.New(src.ID.String(), *src.Traffic, k, log), nil
	}
	return nil, fmt.Errorf("source %s: no metrics source of type %q", src.ID, src.ID.Type)
}

func newProcessor(p *config.Processor) (pipelines.MetricProcessor, error) {
	switch {
	case p.Filter != nil:
		return processors.NewFilter(p.ID.String(), p.Filter), nil
	case p.Attributes != nil:
		return processors.NewAttributes(p.ID.String(), p.Attributes), nil
	}
	return nil, fmt.Errorf("processor %s: unknown type", p.ID)
}

// Start builds every exporter first (a bad TLS file stops everything before
// any program is attached), then starts pipeline by pipeline. A pipeline
// whose sources cannot start is reported and skipped; the others run. It is
// an error when none can run.
func (a *Agent) Start(ctx context.Context) error {
	res, err := buildResource(ctx, a.cfg)
	if err != nil {
		return err
	}
	a.exporters = map[config.ID]pipelines.MetricExporter{}
	for _, pl := range a.cfg.Pipelines {
		for _, id := range pl.Exporters {
			if _, done := a.exporters[id]; done {
				continue
			}
			e := a.cfg.Exporters[id]
			switch {
			case e.Console != nil:
				a.exporters[id] = console.New(id.String(), a.stdout)
			case e.OTLP != nil:
				if !e.OTLP.Enabled {
					a.log.Info("otlp exporter off: no endpoint set (OTEL_EXPORTER_OTLP_ENDPOINT or endpoint:)", "exporter", id.String())
					a.exporters[id] = nil
					continue
				}
				m, err := otlp.NewMetrics(id.String(), e.OTLP, res, a.exportInterval(id), a.log)
				if err != nil {
					a.shutdownExporters(ctx)
					return err
				}
				a.log.Info("otlp exporter", "exporter", id.String(), "endpoint", e.OTLP.Endpoint, "protocol", e.OTLP.Protocol)
				a.exporters[id] = m
			}
		}
	}

	kernel, kerr := hooks.LoadKernel(a.cfg.BTF)
	if kerr == nil {
		a.log.Info("kernel types", "btf", kernel.Source)
	}
	for _, pl := range a.cfg.Pipelines {
		name := pl.ID.String()
		if kerr != nil {
			a.Failed[name] = kerr
			a.log.Error("pipeline cannot start", "pipeline", name, "error", kerr)
			continue
		}
		p, srcs, err := a.startPipeline(ctx, pl, kernel)
		if err != nil {
			a.Failed[name] = err
			a.log.Error("pipeline cannot start; the others go on", "pipeline", name, "error", err)
			continue
		}
		a.pipelines = append(a.pipelines, p)
		a.sources = append(a.sources, srcs...)
		for _, s := range srcs {
			a.log.Info("pipeline started", "pipeline", name, "source", s.Name(), "rung", s.Rung(), "interval", pl.Interval)
		}
	}
	if len(a.pipelines) == 0 {
		a.shutdownExporters(ctx)
		if kerr != nil {
			return kerr
		}
		return errors.New("no pipeline could start (see the errors above; `sockeye check` tells what this kernel allows)")
	}
	return nil
}

func (a *Agent) exportInterval(id config.ID) time.Duration {
	var d time.Duration
	for _, pl := range a.cfg.Pipelines {
		for _, e := range pl.Exporters {
			if e == id && (d == 0 || pl.Interval < d) {
				d = pl.Interval
			}
		}
	}
	if d == 0 {
		d = 5 * time.Second
	}
	return d
}

func (a *Agent) startPipeline(ctx context.Context, pl *config.Pipeline, k *hooks.Kernel) (*pipelines.MetricsPipeline, []pipelines.MetricSource, error) {
	p := &pipelines.MetricsPipeline{Name: pl.ID.String(), Interval: pl.Interval, Log: a.log}
	for _, id := range pl.Processors {
		proc, err := newProcessor(a.cfg.Processors[id])
		if err != nil {
			return nil, nil, err
		}
		p.Processors = append(p.Processors, proc)
	}
	for _, id := range pl.Exporters {
		if e := a.exporters[id]; e != nil {
			p.Exporters = append(p.Exporters, e)
		}
	}
	var started []pipelines.MetricSource
	for _, id := range pl.Sources {
		s, err := newSource(a.cfg.Sources[id], k, a.log)
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			for _, st := range started {
				st.Close()
			}
			return nil, nil, err
		}
		started = append(started, s)
	}
	p.Sources = started
	return p, started, nil
}

// Run drives the started pipelines until ctx is done, then flushes and
// releases everything within shutdownTimeout.
func (a *Agent) Run(ctx context.Context, shutdownTimeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(a.pipelines))
	for _, p := range a.pipelines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				errs <- fmt.Errorf("pipeline %s: %w", p.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	all = append(all, a.shutdownExporters(sctx))
	all = append(all, a.closeSources())
	return errors.Join(all...)
}

func (a *Agent) shutdownExporters(ctx context.Context) error {
	var errs []error
	for id, e := range a.exporters {
		if e == nil {
			continue
		}
		if err := e.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("exporter %s: %w", id, err))
		}
	}
	a.exporters = nil
	return errors.Join(errs...)
}

func (a *Agent) closeSources() error {
	var errs []error
	for _, s := range a.sources {
		errs = append(errs, s.Close())
	}
	a.sources = nil
	return errors.Join(errs...)
}
