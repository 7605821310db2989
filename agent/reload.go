package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime/debug"
	"slices"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
)

// Reload asks a running agent to apply Config; the outcome comes back on
// Result (nil: applied).
type Reload struct {
	Config *config.Config
	Result chan error
}

// reload applies next in place. A pipeline whose definition, sources,
// processors and exporters are all unchanged keeps running untouched, so
// its kernel maps and the exporters' running totals carry on. Changed and
// new pipelines start after the removed and changed ones stop. Exporters
// are built before anything stops: if one cannot be built (an unreadable
// TLS file), the reload is rejected and the old config keeps running.
func (a *Agent) reload(ctx context.Context, next *config.Config) error {
	prev := a.cfg
	if next.Log.Format != prev.Log.Format {
		return fmt.Errorf("log.format changed from %s to %s: that needs a restart", prev.Log.Format, next.Log.Format)
	}
	everything := next.BTF != prev.BTF || !maps.Equal(next.Resource, prev.Resource)

	changedExp := map[config.ID]bool{}
	for id, e := range prev.Exporters {
		ne, ok := next.Exporters[id]
		// The OTLP metrics reader exports at the shortest interval of the
		// pipelines using it: a new interval needs a new reader.
		reader := e.OTLP != nil && a.interval(id) != intervalOf(next, id)
		if everything || !ok || !sameExporter(e, ne) || reader {
			changedExp[id] = true
		}
	}

	keep := map[string]bool{} // pipelines that go on untouched
	a.mu.Lock()
	for _, r := range a.running {
		name := r.Name()
		if !everything && unchangedPipeline(prev, next, name, changedExp) {
			keep[name] = true
		}
	}
	a.mu.Unlock()
	var toStart []*config.Pipeline
	for _, pl := range next.Pipelines {
		if !keep[pl.ID.String()] {
			toStart = append(toStart, pl)
		}
	}
	if a.capsDropped && len(toStart) > 0 {
		return fmt.Errorf("pipeline %s would need attaching, but capabilities were dropped after start (drop_capabilities): restart sockeye to apply this config", toStart[0].ID)
	}

	// Build the new exporters beside the kept ones.
	kinds := signalKinds()
	oldExp := a.exporters
	a.exporters = map[exporterKey]shutdowner{}
	for k, e := range oldExp {
		if _, inNext := next.Exporters[k.id]; inNext && !changedExp[k.id] {
			a.exporters[k] = e
		}
	}
	carried := maps.Clone(a.exporters)
	a.setConfig(next)
	if err := a.buildExporters(ctx, kinds); err != nil {
		for k, e := range a.exporters {
			if _, ok := carried[k]; !ok {
				e.Shutdown(ctx)
			}
		}
		a.setConfig(prev)
		a.exporters = oldExp
		return err
	}

	// Stop what goes, then release the exporters nobody uses any more.
	var errs []error
	a.mu.Lock()
	var stay, gone []*runningPipeline
	for _, r := range a.running {
		if keep[r.Name()] {
			stay = append(stay, r)
		} else {
			gone = append(gone, r)
		}
	}
	a.running = stay
	clear(a.Failed)
	a.mu.Unlock()
	for _, r := range gone {
		errs = append(errs, r.stop(), r.Close())
		a.log.Info("pipeline stopped for reload", "pipeline", r.Name())
	}
	for k, e := range oldExp {
		if _, ok := carried[k]; !ok {
			errs = append(errs, e.Shutdown(ctx))
		}
	}

	if a.level != nil {
		a.level.Set(logLevel(next.Log.Level))
	}
	kernel, kerr := hooks.LoadKernel(next.BTF)
	for _, pl := range toStart {
		a.startPipeline(ctx, kinds, pl, kernel, kerr)
	}
	kernel.Release()
	debug.FreeOSMemory()
	a.mu.Lock()
	for _, r := range a.running {
		r.launch(ctx)
	}
	a.mu.Unlock()
	a.log.Info("config reloaded", "config", next.Path, "kept", len(keep), "started", len(toStart), "stopped", len(gone))
	if err := errors.Join(errs...); err != nil {
		a.log.Warn("stopping pipelines for reload", "error", err)
	}
	return nil
}

// unchangedPipeline reports whether pipeline name is defined alike in both
// configs, down to its sources and processors, and uses no changed exporter.
func unchangedPipeline(prev, next *config.Config, name string, changedExp map[config.ID]bool) bool {
	find := func(c *config.Config) *config.Pipeline {
		for _, pl := range c.Pipelines {
			if pl.ID.String() == name {
				return pl
			}
		}
		return nil
	}
	p, n := find(prev), find(next)
	if p == nil || n == nil {
		return false
	}
	pc, nc := *p, *n
	pc.Pos, nc.Pos = config.Pos{}, config.Pos{}
	if !reflect.DeepEqual(pc, nc) {
		return false
	}
	for _, id := range n.Sources {
		ps, ns := *prev.Sources[id], *next.Sources[id]
		ps.Pos, ns.Pos = config.Pos{}, config.Pos{}
		if !reflect.DeepEqual(ps, ns) {
			return false
		}
	}
	for _, id := range n.Processors {
		pp, np := *prev.Processors[id], *next.Processors[id]
		pp.Pos, np.Pos = config.Pos{}, config.Pos{}
		if !reflect.DeepEqual(pp, np) {
			return false
		}
	}
	return !slices.ContainsFunc(n.Exporters, func(id config.ID) bool { return changedExp[id] })
}

func sameExporter(a, b *config.Exporter) bool {
	ac, bc := *a, *b
	ac.Pos, bc.Pos = config.Pos{}, config.Pos{}
	return reflect.DeepEqual(ac, bc)
}

// setConfig swaps the config under mu: /healthz reads it.
func (a *Agent) setConfig(c *config.Config) {
	a.mu.Lock()
	a.cfg = c
	a.mu.Unlock()
}
