package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/console"
	"github.com/sockeye/sockeye/pipelines/containers"
	"github.com/sockeye/sockeye/pipelines/processors"
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
	// mu guards running, Failed and stopping, which /healthz reads.
	mu       sync.Mutex
	running  []*runningPipeline
	stopping bool
	// Failed names the pipelines that could not start, and why.
	Failed map[string]error
	// level is the log level a reload may change.
	level *slog.LevelVar
	// resolvers are the containers processors' pid lookups, one per
	// setting, shared by the pipelines (and kept across reloads).
	resolvers map[config.ContainersProcessor]*containers.Resolver
	// capsDropped is set once drop_capabilities has taken effect: nothing
	// new can be attached after that.
	capsDropped bool
	// detaching is closed when shutdown is past the final exports and
	// detaches the kernel programs.
	detaching     chan struct{}
	detachingOnce sync.Once
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
	Source string   `json:"source"`
	Rung   string   `json:"rung"`
	Notes  []string `json:"notes,omitempty"`
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
		resolvers: map[config.ContainersProcessor]*containers.Resolver{},
		detaching: make(chan struct{}),
	}
}

// Detaching is closed once shutdown has done its exports and is detaching
// the kernel programs: work that is bounded but not by the exports'
// timeout (the kernel waits a grace period per fentry or kprobe link).
func (a *Agent) Detaching() <-chan struct{} { return a.detaching }

// containersProcessor makes a containers processor for p, sharing the
// resolver (and its cache) with the others of the same settings.
func (a *Agent) containersProcessor(p *config.Processor) *processors.Containers {
	r, ok := a.resolvers[*p.Containers]
	if !ok {
		r = processors.NewResolver(p.Containers)
		a.resolvers[*p.Containers] = r
	}
	return processors.NewContainers(p.ID.String(), r)
}

// WithLevel lets reloads change the log level.
func (a *Agent) WithLevel(l *slog.LevelVar) *Agent {
	a.level = l
	return a
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
	if err := a.buildExporters(ctx, kinds); err != nil {
		a.shutdownExporters(ctx)
		return err
	}
	kernel, kerr := hooks.LoadKernel(a.cfg.BTF)
	if kerr == nil {
		a.log.Info("kernel types", "btf", kernel.Source)
	}
	for _, pl := range a.cfg.Pipelines {
		a.startPipeline(ctx, kinds, pl, kernel, kerr)
	}
	kernel.Release()
	// Loading parsed the kernel's BTF: return that garbage to the system
	// now rather than leave it to a GC that a raised GOGC makes rare.
	debug.FreeOSMemory()
	if len(a.running) == 0 {
		a.shutdownExporters(ctx)
		if kerr != nil {
			return kerr
		}
		return errors.New("no pipeline could start (see the errors above; `sockeye check` tells what this kernel allows)")
	}
	return nil
}

// buildExporters makes the exporters every pipeline of a.cfg names, keeping
// those already in a.exporters.
func (a *Agent) buildExporters(ctx context.Context, kinds map[config.Signal]signalKind) error {
	for _, pl := range a.cfg.Pipelines {
		k, ok := kinds[pl.Signal]
		if !ok {
			return fmt.Errorf("pipeline %s: %s pipelines are not supported yet", pl.ID, pl.Signal)
		}
		if err := k.exporters(a, ctx, pl); err != nil {
			return err
		}
	}
	return nil
}

// startPipeline attaches one pipeline, or records why it cannot run.
func (a *Agent) startPipeline(ctx context.Context, kinds map[config.Signal]signalKind, pl *config.Pipeline, kernel *hooks.Kernel, kerr error) {
	name := pl.ID.String()
	fail := func(err error) {
		a.mu.Lock()
		a.Failed[name] = err
		a.mu.Unlock()
	}
	if kerr != nil {
		fail(kerr)
		a.log.Error("pipeline cannot start", "pipeline", name, "error", kerr)
		return
	}
	if err := a.checkCapabilities(pl); err != nil {
		fail(err)
		a.log.Error("pipeline cannot start; the others go on", "pipeline", name, "error", err)
		return
	}
	p, status, err := kinds[pl.Signal].start(a, ctx, pl, kernel)
	if err != nil {
		fail(err)
		a.log.Error("pipeline cannot start; the others go on", "pipeline", name, "error", err)
		return
	}
	a.mu.Lock()
	a.running = append(a.running, &runningPipeline{Pipeline: p, status: status})
	delete(a.Failed, name)
	a.mu.Unlock()
	for _, s := range status {
		a.log.Info("pipeline started", "pipeline", name, "source", s.Source, "rung", s.Rung)
		for _, n := range s.Notes {
			a.log.Warn("rung limit", "pipeline", name, "source", s.Source, "rung", s.Rung, "note", n)
		}
	}
}

// runningPipeline is a started pipeline and, once launched, the means to
// stop it alone (a reload stops only what changed).
type runningPipeline struct {
	Pipeline
	status []SourceStatus
	cancel context.CancelFunc
	done   chan error
}

func (r *runningPipeline) launch(ctx context.Context) {
	if r.done != nil {
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.Run(pctx) }()
}

// stop ends the pipeline's Run (which flushes) and returns its error.
func (r *runningPipeline) stop() error {
	if r.done == nil {
		return nil
	}
	r.cancel()
	err := <-r.done
	r.done = nil
	if err != nil {
		return fmt.Errorf("pipeline %s: %w", r.Name(), err)
	}
	return nil
}

// Run drives the started pipelines until ctx is done, applying the configs
// sent on reloads (nil: never), then flushes and releases everything; the
// exporters' final flush is bounded by shutdownTimeout.
func (a *Agent) Run(ctx context.Context, shutdownTimeout time.Duration, reloads <-chan Reload) error {
	a.mu.Lock()
	for _, r := range a.running {
		r.launch(ctx)
	}
	a.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return a.stopAll(shutdownTimeout)
		case req := <-reloads:
			req.Result <- a.reload(ctx, req.Config)
		}
	}
}

func (a *Agent) stopAll(shutdownTimeout time.Duration) error {
	a.mu.Lock()
	a.stopping = true
	running := a.running
	a.mu.Unlock()
	// Stop concurrently: each pipeline's final export has its own bound.
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for i, r := range running {
		wg.Go(func() { errs[i] = r.stop() })
	}
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	errs = append(errs, a.shutdownExporters(sctx))
	a.detachingOnce.Do(func() { close(a.detaching) })
	for _, r := range running {
		errs = append(errs, r.Close())
	}
	a.mu.Lock()
	a.running = nil
	a.mu.Unlock()
	return errors.Join(errs...)
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
func (a *Agent) interval(id config.ID) time.Duration { return intervalOf(a.cfg, id) }

func intervalOf(cfg *config.Config, id config.ID) time.Duration {
	var d time.Duration
	for _, pl := range cfg.Pipelines {
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
