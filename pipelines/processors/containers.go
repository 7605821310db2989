package processors

import (
	"slices"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
	"github.com/sockeye/sockeye/pipelines/containers"
)

// Containers adds container.id and the Kubernetes pod (k8s.pod.uid,
// k8s.pod.name, k8s.namespace.name) of each row's, record's or span's
// process.pid, as the collector's k8sattributes processor does for pods.
// Rows and records without a pid (drops happen in softirq) are left alone.
type Containers struct {
	name string
	r    *containers.Resolver
	// spanRes caches, per pid, the span resource extended with the
	// container: exporters key their per-process providers on the slice.
	spanRes map[int64]extended
}

type extended struct {
	orig  *attribute.KeyValue
	attrs []attribute.KeyValue
}

// NewContainers shares r between the pipelines that name the processor.
func NewContainers(name string, r *containers.Resolver) *Containers {
	return &Containers{name: name, r: r, spanRes: map[int64]extended{}}
}

// NewResolver builds the resolver the config asks for.
func NewResolver(cfg *config.ContainersProcessor) *containers.Resolver {
	return containers.New(containers.Options{ProcRoot: cfg.ProcRoot, PodLogsRoot: cfg.PodLogsRoot})
}

func (c *Containers) Name() string { return c.name }

func pidOf(attrs []attribute.KeyValue) (int64, bool) {
	for _, kv := range attrs {
		if kv.Key == semconv.ProcessPIDKey {
			return kv.Value.AsInt64(), true
		}
	}
	return 0, false
}

// lookup finds the container of the process.pid in attrs, if any.
func (c *Containers) lookup(attrs []attribute.KeyValue) (containers.Info, bool) {
	pid, ok := pidOf(attrs)
	if !ok {
		return containers.Info{}, false
	}
	return c.lookupPID(pid)
}

func (c *Containers) lookupPID(pid int64) (containers.Info, bool) {
	if pid <= 0 || pid > 1<<32-1 {
		return containers.Info{}, false
	}
	info := c.r.Lookup(uint32(pid))
	return info, info != (containers.Info{})
}

// Process extends the rows of a metrics batch.
func (c *Containers) Process(b *pipelines.Batch) *pipelines.Batch {
	for i := range b.Rows {
		if info, ok := c.lookup(b.Rows[i].Attrs); ok {
			b.Rows[i].Attrs = info.AppendAttrs(slices.Clip(b.Rows[i].Attrs))
		}
	}
	return b
}

// ProcessLog extends a log record; it never drops one.
func (c *Containers) ProcessLog(r *pipelines.LogRecord) bool {
	if info, ok := c.lookup(r.Attrs); ok {
		r.Attrs = info.AppendAttrs(slices.Clip(r.Attrs))
	}
	return true
}

// ProcessSpans puts the container on the span's resource (the traced
// process), or on the span when it has none.
func (c *Containers) ProcessSpans(b *pipelines.SpanBatch) {
	for i := range b.Spans {
		s := &b.Spans[i]
		if len(s.Resource) == 0 {
			if info, ok := c.lookup(s.Attrs); ok {
				s.Attrs = info.AppendAttrs(s.Attrs)
			}
			continue
		}
		pid, ok := pidOf(s.Resource)
		if !ok {
			pid, ok = pidOf(s.Attrs)
		}
		if !ok {
			continue
		}
		if e, hit := c.spanRes[pid]; hit && e.orig == &s.Resource[0] {
			s.Resource = e.attrs
			continue
		}
		info, found := c.lookupPID(pid)
		if !found {
			continue
		}
		if len(c.spanRes) >= 4096 {
			clear(c.spanRes)
		}
		ext := info.AppendAttrs(slices.Clone(s.Resource))
		c.spanRes[pid] = extended{orig: &s.Resource[0], attrs: ext}
		s.Resource = ext
	}
}
