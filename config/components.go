package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// kind describes one component type: which signals it handles, which
// attributes it produces (sources only), which keys it takes and how to
// decode them. Adding a source type means adding a row to sourceKinds and
// a settings struct to Source.
type kind[T any] struct {
	signals    []Signal
	attributes []string
	keys       []string
	decode     func(d *decoder, f fields, c *T)
}

// Attribute names the sources put on their data points.
const (
	AttrProcessPID    = "process.pid"
	AttrProcessName   = "process.executable.name"
	AttrProcessUID    = "process.user.id"
	AttrInterfaceName = "network.interface.name"
	AttrDropLocation  = "sockeye.drop.location"
	AttrDropReason    = "sockeye.drop.reason"
	AttrNetworkType   = "network.type"
	AttrTransport     = "network.transport"
	AttrThreadID      = "thread.id"
	AttrServerAddress = "server.address"
	AttrServerPort    = "server.port"
	AttrClientAddress = "client.address"
	AttrClientPort    = "client.port"
)

// sourceKinds is a function rather than a variable so the table cannot be
// changed at run time.
func sourceKinds() map[string]kind[Source] {
	return map[string]kind[Source]{
		"traffic": {
			signals:    []Signal{SignalMetrics},
			attributes: []string{AttrProcessPID, AttrProcessName, AttrProcessUID, AttrInterfaceName},
			keys:       []string{"attribution", "max_entries", "hook"},
			decode:     func(d *decoder, f fields, s *Source) { s.Traffic = d.traffic(f) },
		},
		"drops": {
			signals:    []Signal{SignalMetrics},
			attributes: []string{AttrDropLocation, AttrDropReason, AttrNetworkType, AttrTransport, AttrInterfaceName},
			keys:       []string{"hook", "max_entries", "interface", "console_reason", "console_offset"},
			decode:     func(d *decoder, f fields, s *Source) { s.Drops = d.drops(f) },
		},
		"accepts": {
			signals: []Signal{SignalLogs},
			attributes: []string{AttrProcessPID, AttrThreadID, AttrProcessName, AttrProcessUID, AttrTransport,
				AttrNetworkType, AttrServerAddress, AttrServerPort, AttrClientAddress, AttrClientPort},
			keys:   []string{"hook", "ring_size", "connect"},
			decode: func(d *decoder, f fields, s *Source) { s.Accepts = d.accepts(f) },
		},
		"socket_calls": {
			signals: []Signal{SignalTraces},
			attributes: []string{AttrProcessPID, AttrThreadID, AttrProcessName, AttrProcessUID, AttrTransport,
				AttrNetworkType, "thread.name", "code.function.name"},
			keys:   socketCallsKeys(),
			decode: func(d *decoder, f fields, s *Source) { s.SocketCalls = d.socketCalls(f) },
		},
		"tcp_receive": {
			signals: []Signal{SignalPackets},
			keys:    []string{"hook", "snaplen", "udp", "interface", "filter", "buffer_size", "attribution"},
			decode:  func(d *decoder, f fields, s *Source) { s.TCPReceive = d.tcpReceive(f) },
		},
	}
}

func processorKinds() map[string]kind[Processor] {
	return map[string]kind[Processor]{
		"filter": {
			signals: []Signal{SignalMetrics, SignalLogs},
			keys:    []string{"include", "exclude"},
			decode:  func(d *decoder, f fields, p *Processor) { p.Filter = d.filter(f) },
		},
		"attributes": {
			signals: []Signal{SignalMetrics},
			keys:    []string{"drop", "keep"},
			decode:  func(d *decoder, f fields, p *Processor) { p.Attributes = d.attributes(f) },
		},
		"containers": {
			signals: []Signal{SignalMetrics, SignalLogs, SignalTraces},
			keys:    []string{"proc_root", "pod_logs_root"},
			decode:  func(d *decoder, f fields, p *Processor) { p.Containers = d.containers(f) },
		},
	}
}

func exporterKinds() map[string]kind[Exporter] {
	return map[string]kind[Exporter]{
		"console": {
			signals: []Signal{SignalMetrics, SignalLogs, SignalTraces, SignalPackets},
			decode:  func(d *decoder, f fields, e *Exporter) { e.Console = &ConsoleExporter{} },
		},
		"otlp": {
			signals: []Signal{SignalMetrics, SignalLogs, SignalTraces},
			keys: []string{"enabled", "endpoint", "protocol", "insecure", "headers", "tls",
				"compression", "timeout", "temporality", "cardinality_limit", "export_interval", "queue_size"},
			decode: func(d *decoder, f fields, e *Exporter) {
				e.OTLP, e.OTLPLogs, e.OTLPTraces = d.otlp(f), d.otlpLogs(f), d.otlpTraces(f)
			},
		},
		"pcapng": {
			signals: []Signal{SignalPackets},
			keys:    []string{"path", "rotation", "flush", "flush_interval"},
			decode:  func(d *decoder, f fields, e *Exporter) { e.Pcapng = d.pcapng(f) },
		},
	}
}

// SourceAttributes returns the attribute names a source type produces, or
// nil for an unknown type.
func SourceAttributes(sourceType string) []string {
	return slices.Clone(sourceKinds()[sourceType].attributes)
}

// allSourceAttributes returns every attribute any source type produces, sorted.
func allSourceAttributes() []string {
	var out []string
	for _, k := range sourceKinds() {
		for _, a := range k.attributes {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out
}

func signalNames(ss []Signal) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// parseID parses "type" or "type/name".
func parseID(s string) (ID, error) {
	typ, name, hasName := strings.Cut(s, "/")
	switch {
	case typ == "":
		return ID{}, fmt.Errorf("invalid ID %q: empty type (want \"type\" or \"type/name\")", s)
	case hasName && name == "":
		return ID{}, fmt.Errorf("invalid ID %q: empty name after \"/\"", s)
	case strings.Contains(name, "/"):
		return ID{}, fmt.Errorf("invalid ID %q: more than one \"/\" (want \"type\" or \"type/name\")", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return ID{}, fmt.Errorf("invalid ID %q: spaces and control characters are not allowed", s)
	}
	return ID{Type: typ, Name: name}, nil
}

// decodeSection decodes one of "sources", "processors", "exporters".
// declared collects every key written, valid or not, so that pipelines do
// not report a component that already has an error as undefined; ok is
// false when the section itself is not a mapping.
func decodeSection[T any](d *decoder, n *yaml.Node, section, noun string, kinds map[string]kind[T],
	newT func(ID, Pos) *T, declared map[string]bool) (_ map[ID]*T, ok bool) {
	out := map[ID]*T{}
	es, ok := d.entries(n, section)
	known := slices.Sorted(maps.Keys(kinds))
	for _, e := range es {
		declared[e.key] = true
		id, err := parseID(e.key)
		if err != nil {
			d.errorf(e.kn.Line, e.path, "%v", err)
			continue
		}
		k, ok := kinds[id.Type]
		if !ok {
			d.errorf(e.kn.Line, e.path, "unknown %s type %q%s", noun, id.Type, suggest(id.Type, known))
			continue
		}
		c := newT(id, Pos{File: d.file, Line: e.kn.Line})
		k.decode(d, d.fields(e.vn, e.path, e.kn.Line, k.keys...), c)
		out[id] = c
	}
	return out, ok
}
