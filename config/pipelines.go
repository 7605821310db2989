package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Pipeline intervals.
const (
	DefaultInterval = 5 * time.Second
	MinInterval     = 100 * time.Millisecond
)

func allSignals() []Signal {
	return []Signal{SignalMetrics, SignalLogs, SignalTraces, SignalPackets}
}

// refSet describes what a pipeline list may name: the components defined
// in one section.
type refSet struct {
	key      string // "sources"
	noun     string // "source"
	verb     string // "emits": how the message says which signals it takes
	required bool
	defined  map[ID]bool
	declared map[string]bool // every key written in the section, valid or not
	broken   bool            // the section is not a mapping: names cannot be checked
	signals  func(typ string) []Signal
}

func (d *decoder) pipelines(n *yaml.Node, line int, sets [3]refSet) []*Pipeline {
	var out []*Pipeline
	es, ok := d.entries(n, "pipelines")
	if ok && len(es) == 0 {
		d.errorf(line, "pipelines", "at least one pipeline is required")
	}
	for _, e := range es {
		id, err := parseID(e.key)
		if err != nil {
			d.errorf(e.kn.Line, e.path, "%v", err)
			continue
		}
		signal := Signal(id.Type)
		if !slices.Contains(allSignals(), signal) {
			d.errorf(e.kn.Line, e.path, "unknown signal %q (want %s)", id.Type, signalNames(allSignals()))
			continue
		}
		f := d.fields(e.vn, e.path, e.kn.Line, "sources", "processors", "exporters", "interval")
		p := &Pipeline{ID: id, Pos: Pos{File: d.file, Line: e.kn.Line}, Signal: signal}
		p.Sources = d.refs(f, signal, sets[0])
		p.Processors = d.refs(f, signal, sets[1])
		p.Exporters = d.refs(f, signal, sets[2])
		if signal == SignalMetrics {
			p.Interval = DefaultInterval
			if v, ok := d.duration(f.get("interval"), join(e.path, "interval"), MinInterval); ok {
				p.Interval = v
			}
		} else if f.written("interval") {
			d.errorf(f.keyLine("interval"), join(e.path, "interval"),
				"interval applies only to metrics pipelines, not %s", signal)
		}
		out = append(out, p)
	}
	return out
}

// refs decodes the list f[set.key] of component IDs and checks that each is
// defined, handles signal, and is listed once.
func (d *decoder) refs(f fields, signal Signal, set refSet) []ID {
	path := join(f.path, set.key)
	before := len(d.errs)
	elems, ok := d.list(f.get(set.key), path)
	if len(d.errs) != before {
		return nil
	}
	if set.required && !ok {
		d.errorf(f.keyLine(set.key), path, "missing: a pipeline needs at least one %s", set.noun)
		return nil
	}
	if set.required && len(elems) == 0 {
		d.errorf(f.keyLine(set.key), path, "empty: a pipeline needs at least one %s", set.noun)
		return nil
	}
	var out []ID
	first := map[ID]int{}
	for i, e := range elems {
		before := len(d.errs)
		s, ok := d.str(e, fmt.Sprintf("%s[%d]", path, i))
		if !ok {
			if len(d.errs) == before {
				d.errorf(e.Line, fmt.Sprintf("%s[%d]", path, i), "empty value")
			}
			continue
		}
		id, err := parseID(s)
		switch {
		case set.broken || set.declared[s] && !set.defined[id]:
			// The section or the component's own definition has an error,
			// reported there.
		case err != nil:
			d.errorf(e.Line, path, "%v", err)
		case !set.defined[id]:
			d.errorf(e.Line, path, "%s %q is not defined (%s)", set.noun, s, definedList(set.defined))
		case first[id] != 0:
			d.errorf(e.Line, path, "%s %q is listed twice (first at line %d)", set.noun, s, first[id])
		case !slices.Contains(set.signals(id.Type), signal):
			d.errorf(e.Line, path, "%s %q %s %s, not %s", set.noun, s, set.verb, signalNames(set.signals(id.Type)), signal)
		default:
			first[id] = e.Line
			out = append(out, id)
		}
	}
	return out
}

func definedList(defined map[ID]bool) string {
	if len(defined) == 0 {
		return "none are defined"
	}
	names := make([]string, 0, len(defined))
	for id := range defined {
		names = append(names, id.String())
	}
	slices.Sort(names)
	return "defined: " + strings.Join(names, ", ")
}

func idSet[T any](m map[ID]*T) map[ID]bool {
	out := make(map[ID]bool, len(m))
	for id := range maps.Keys(m) {
		out[id] = true
	}
	return out
}
