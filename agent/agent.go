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
)

// Agent runs the pipelines of one config.
type Agent struct {
	cfg    *config.Config
	log    *slog.Logger
	stdout io.Writer
	env    func(string) string

	// exporters are shared by the pipelines that name them, one instance per
	// (exporter, signal): an otlp exporter ships metrics and logs through
	// different SDK exporters.
	exporters map[exporterKey]shutdowner
	console   map[config.ID]*console.Exporter
	running   []Pipeline
	// Failed names the pipelines that could not start, and why.
	Failed map[string]error
}

type exporterKey struct {
	id     config.ID
	signal config.Signal
}

type shutdowner interface {
	Shutdown(ctx context.Context) error
}

// Pipeline is a started pipeline of any signal.
type Pipeline interface {
	Name() string
	// Run blocks until ctx is done, then flushes what it holds.
	Run(ctx context.Context) error
	// Close detaches the pipeline's sources.
	Close() error
}

// SourceStatus is what starting a source told: its rung and its limits.
type SourceStatus struct {
	Source string
	Rung   string
	Notes  []string
}

// signalKind is how the agent handles the pipelines of one signal. Each
// signal has its file (metrics.go, ...) and a row in signalKinds.
type signalKind struct {
	// exporters creates the pipeline's exporters; run for every pipeline
	// before any source starts, so a bad exporter setting attaches nothing.
	exporters func(a *Agent, ctx context.Context, pl *config.Pipeline) error
	// start builds and starts the pipeline; on error nothing stays attached.
	start func(a *Agent, ctx context.Context, pl *config.Pipeline, k *hooks.Kernel) (Pipeline, []SourceStatus, error)
	// probe starts and releases one source, for `sockeye check`.
	probe func(a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel) (SourceStatus, error)
}

func signalKinds() map[config.Signal]signalKind {
	return map[config.Signal]signalKind{
		config.SignalMetrics: {exporters: metricsExporters, start: startMetrics, probe: probeMetricSource},
		config.SignalLogs:    {exporters: logsExporters, start: startLogs, probe: probeLogSource},
		config.SignalPackets: {exporters: packetsExporters, start: startPackets, probe: probePacketSource},
		config.SignalTraces:  {exporters: tracesExporters, start: startTraces, probe: probeTraceSource},
	}
}

// New prepares an agent; nothing is attached until Start.
func New(cfg *config.Config, stdout io.Writer, log *slog.Logger, env func(string) string) *Agent {
	return &Agent{
		cfg: cfg, log: log, stdout: stdout, env: env,
		exporters: map[exporterKey]shutdowner{},
		console:   map[config.ID]*console.Exporter{},
		Failed:    map[string]error{},
	}
}

// consoleExporter is shared by every signal: one writer, samples kept whole.
func (a *Agent) consoleExporter(id config.ID) *console.Exporter {
	if c, ok := a.console[id]; ok {
		return c
	}
	c := console.New(id.String(), a.stdout)
	a.console[id] = c
	return c
}

// Start builds every exporter first (a bad TLS file stops everything before
// any program is attached), then starts pipeline by pipeline. A pipeline
// whose sources cannot start is reported and skipped; the others run. It is
// an error when none can run.
func (a *Agent) Start(ctx context.Context) error {
	kinds := signalKinds()
	for _, pl := range a.cfg.Pipelines {
		k, ok := kinds[pl.Signal]
		if !ok {
			a.shutdownExporters(ctx)
			return fmt.Errorf("pipeline %s: %s pipelines are not supported yet", pl.ID, pl.Signal)
		}
		if err := k.exporters(a, ctx, pl); err != nil {
			a.shutdownExporters(ctx)
			return err
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
		p, status, err := kinds[pl.Signal].start(a, ctx, pl, kernel)
		if err != nil {
			a.Failed[name] = err
			a.log.Error("pipeline cannot start; the others go on", "pipeline", name, "error", err)
			continue
		}
		a.running = append(a.running, p)
		for _, s := range status {
			a.log.Info("pipeline started", "pipeline", name, "source", s.Source, "rung", s.Rung)
			for _, n := range s.Notes {
				a.log.Warn("rung limit", "pipeline", name, "source", s.Source, "rung", s.Rung, "note", n)
			}
		}
	}
	if len(a.running) == 0 {
		a.shutdownExporters(ctx)
		if kerr != nil {
			return kerr
		}
		return errors.New("no pipeline could start (see the errors above; `sockeye check` tells what this kernel allows)")
	}
	return nil
}

// Run drives the started pipelines until ctx is done, then flushes and
// releases everything within shutdownTimeout.
func (a *Agent) Run(ctx context.Context, shutdownTimeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(a.running))
	for _, p := range a.running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				errs <- fmt.Errorf("pipeline %s: %w", p.Name(), err)
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
	for _, p := range a.running {
		all = append(all, p.Close())
	}
	a.running = nil
	return errors.Join(all...)
}

func (a *Agent) shutdownExporters(ctx context.Context) error {
	var errs []error
	for key, e := range a.exporters {
		if err := e.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("exporter %s (%s): %w", key.id, key.signal, err))
		}
	}
	clear(a.exporters)
	return errors.Join(errs...)
}

// interval is the shortest interval of the pipelines that use exporter id.
func (a *Agent) interval(id config.ID) time.Duration {
	var d time.Duration
	for _, pl := range a.cfg.Pipelines {
		for _, e := range pl.Exporters {
			if e == id && pl.Interval > 0 && (d == 0 || pl.Interval < d) {
				d = pl.Interval
			}
		}
	}
	if d == 0 {
		d = config.DefaultInterval
	}
	return d
}
