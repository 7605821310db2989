package agent

import (
	"context"
	"fmt"

	"github.com/sockeye/sockeye/bpf/hooks"
	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/exporters/pcapng"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/tcpreceive"
)

// newPacketSource makes the source for a config entry; every source type
// the config accepts in packets pipelines must be here.
func newPacketSource(a *Agent, src *config.Source, k *hooks.Kernel) (pipelines.PacketSource, error) {
	switch {
	case src.TCPReceive != nil:
		return tcpreceive.New(src.ID.String(), *src.TCPReceive, k, a.log), nil
	}
	return nil, fmt.Errorf("source %s: no packets source of type %q", src.ID, src.ID.Type)
}

// pcapngOptions maps the config to the writer's options. The config's
// count keeps a ring of files, as tcpdump -C -W does.
func pcapngOptions(c *config.PcapngExporter, a *Agent) pcapng.Options {
	return pcapng.Options{
		Path:          c.Path,
		Stdout:        a.stdout,
		RotateBytes:   int64(c.RotateMB) * 1_000_000,
		RotateEvery:   c.RotateEvery,
		Files:         c.Files,
		Flush:         c.Flush,
		FlushInterval: c.FlushInterval,
		Application:   "sockeye " + Version,
		Log:           a.log,
	}
}

func packetsExporters(a *Agent, ctx context.Context, pl *config.Pipeline) error {
	for _, id := range pl.Exporters {
		key := exporterKey{id, config.SignalPackets}
		if _, done := a.exporters[key]; done {
			continue
		}
		e := a.cfg.Exporters[id]
		if e.Pcapng == nil {
			continue
		}
		w, err := pcapng.New(id.String(), pcapngOptions(e.Pcapng, a))
		if err != nil {
			// Where the exporter was written, as config errors say it.
			return &config.Error{File: e.Pos.File, Line: e.Pos.Line, Key: "exporters." + id.String() + ".path", Msg: err.Error()}
		}
		a.log.Info("pcapng exporter", "exporter", id.String(), "path", e.Pcapng.Path)
		a.exporters[key] = w
	}
	return nil
}

// packetsPipeline adapts pipelines.PacketsPipeline to Pipeline.
type packetsPipeline struct {
	*pipelines.PacketsPipeline
}

func (p packetsPipeline) Name() string { return p.PacketsPipeline.Name }

func (p packetsPipeline) Close() error { return closeSources(p.Sources) }

func startPackets(a *Agent, ctx context.Context, pl *config.Pipeline, k *hooks.Kernel) (Pipeline, []SourceStatus, error) {
	p := &pipelines.PacketsPipeline{Name: pl.ID.String(), Log: a.log, SelfInterval: config.DefaultInterval}
	for _, id := range pl.Exporters {
		if a.cfg.Exporters[id].Console != nil {
			p.Exporters = append(p.Exporters, a.consoleExporter(id))
			continue
		}
		if e, ok := a.exporters[exporterKey{id, config.SignalPackets}].(pipelines.PacketExporter); ok {
			p.Exporters = append(p.Exporters, e)
		}
	}
	// No OTLP exporter takes packets: the pipeline's loss counters go out
	// through the agent's OTLP metrics exporters, those of its other
	// pipelines, if there are any.
	for key, e := range a.exporters {
		if m, ok := e.(pipelines.MetricExporter); ok && key.signal == config.SignalMetrics {
			p.SelfExporters = append(p.SelfExporters, m)
		}
	}
	srcs, status, err := startSources(a, ctx, pl, k, newPacketSource)
	if err != nil {
		return nil, nil, err
	}
	p.Sources = srcs
	return packetsPipeline{p}, status, nil
}

func probePacketSource(a *Agent, ctx context.Context, src *config.Source, k *hooks.Kernel) (SourceStatus, error) {
	return probeSource(a, ctx, src, k, newPacketSource)
}
