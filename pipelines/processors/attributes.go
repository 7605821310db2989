package processors

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Attributes drops attributes to cut cardinality; rows that become equal
// are merged by summing their values.
type Attributes struct {
	name string
	drop map[attribute.Key]bool
	keep map[attribute.Key]bool
}

// NewAttributes builds an attribute selector from its config.
func NewAttributes(name string, cfg *config.AttributesProcessor) *Attributes {
	a := &Attributes{name: name}
	set := func(keys []string) map[attribute.Key]bool {
		m := make(map[attribute.Key]bool, len(keys))
		for _, k := range keys {
			m[attribute.Key(k)] = true
		}
		return m
	}
	if len(cfg.Drop) > 0 {
		a.drop = set(cfg.Drop)
	}
	if len(cfg.Keep) > 0 {
		a.keep = set(cfg.Keep)
	}
	return a
}

func (a *Attributes) Name() string { return a.name }

func (a *Attributes) selected(k attribute.Key) bool {
	if a.keep != nil {
		return a.keep[k]
	}
	return !a.drop[k]
}

// Process rewrites the rows' attributes and merges equal rows.
func (a *Attributes) Process(b *pipelines.Batch) *pipelines.Batch {
	index := make(map[attribute.Distinct]int, len(b.Rows))
	out := b.Rows[:0]
	for _, r := range b.Rows {
		attrs := make([]attribute.KeyValue, 0, len(r.Attrs))
		for _, kv := range r.Attrs {
			if a.selected(kv.Key) {
				attrs = append(attrs, kv)
			}
		}
		set := attribute.NewSet(attrs...)
		if i, ok := index[set.Equivalent()]; ok {
			for c, v := range r.Values {
				out[i].Values[c] += v
			}
			// A merged series is over only when every part of it is.
			out[i].Final = out[i].Final && r.Final
			continue
		}
		index[set.Equivalent()] = len(out)
		vals := append([]int64(nil), r.Values...)
		out = append(out, pipelines.Row{Attrs: attrs, Values: vals, Final: r.Final})
	}
	b.Rows = out
	return b
}
