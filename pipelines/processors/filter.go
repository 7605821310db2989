// Package processors holds the stages that sit between a pipeline's sources
// and its exporters.
package processors

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Attribute keys the filter matches on, by the names users write in config.
const (
	KeyPID     = attribute.Key("process.pid")
	KeyCommand = attribute.Key("process.executable.name")
	KeyUID     = attribute.Key("process.user.id")
	KeyDevice  = attribute.Key("network.interface.name")
)

// Filter keeps rows that match Include (when given) and do not match Exclude.
type Filter struct {
	name             string
	include, exclude *matcher
}

type matcher struct {
	sets map[attribute.Key]map[string]bool
}

func newMatcher(m *config.Match) *matcher {
	if m == nil {
		return nil
	}
	mt := &matcher{sets: map[attribute.Key]map[string]bool{}}
	add := func(k attribute.Key, v string) {
		if mt.sets[k] == nil {
			mt.sets[k] = map[string]bool{}
		}
		mt.sets[k][v] = true
	}
	for _, v := range m.PIDs {
		add(KeyPID, strconv.Itoa(v))
	}
	for _, v := range m.UIDs {
		add(KeyUID, strconv.Itoa(v))
	}
	for _, v := range m.Commands {
		add(KeyCommand, v)
	}
	for _, v := range m.Devices {
		add(KeyDevice, v)
	}
	return mt
}

// match is true when any attribute of the row has one of the listed values.
func (m *matcher) match(attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		set, ok := m.sets[kv.Key]
		if !ok {
			continue
		}
		if set[kv.Value.Emit()] {
			return true
		}
	}
	return false
}

// NewFilter builds a filter processor from its config.
func NewFilter(name string, cfg *config.FilterProcessor) *Filter {
	return &Filter{name: name, include: newMatcher(cfg.Include), exclude: newMatcher(cfg.Exclude)}
}

func (f *Filter) Name() string { return f.name }

// Process filters rows in place.
func (f *Filter) Process(b *pipelines.Batch) *pipelines.Batch {
	kept := b.Rows[:0]
	for _, r := range b.Rows {
		if f.include != nil && !f.include.match(r.Attrs) {
			continue
		}
		if f.exclude != nil && f.exclude.match(r.Attrs) {
			continue
		}
		kept = append(kept, r)
	}
	b.Rows = kept
	return b
}

// ProcessLog keeps a log record that matches Include (when given) and not
// Exclude, on the same attributes as rows.
func (f *Filter) ProcessLog(r *pipelines.LogRecord) bool {
	if f.include != nil && !f.include.match(r.Attrs) {
		return false
	}
	return f.exclude == nil || !f.exclude.match(r.Attrs)
}
