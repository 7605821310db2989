// Package pipelines holds what every pipeline is made of: the data that flows
// between stages and the small interfaces of those stages (source, processor,
// exporter), and the loop that drives a metrics pipeline.
//
// A metrics pipeline drains its sources once per interval into a Batch of
// rows (attributes plus counter deltas over the interval), passes the batch
// through its processors in order, and hands it to each exporter.
package pipelines

import (
	"context"
	"io"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// MetricDef maps one value column of a batch to an OpenTelemetry metric.
type MetricDef struct {
	Name        string
	Unit        string
	Description string
	// Column is the index in Row.Values.
	Column int
	// Attrs are added to every point of this metric, e.g.
	// network.io.direction=transmit for the transmit column.
	Attrs []attribute.KeyValue
}

// Row is one key of a source over one interval.
type Row struct {
	Attrs []attribute.KeyValue
	// Values are deltas over the interval, one per column.
	Values []int64
	// Final marks the last row of a key whose process has exited: exporters
	// may forget the series after exporting it.
	Final bool
}

// SelfKind tells an exporter how to report a self-telemetry point.
type SelfKind int

const (
	// SelfCounter is a cumulative, monotonic total.
	SelfCounter SelfKind = iota
	// SelfGauge is a current value.
	SelfGauge
)

// SelfPoint is one of the agent's own measurements (sockeye.agent.*).
type SelfPoint struct {
	Name        string
	Unit        string
	Description string
	Kind        SelfKind
	Attrs       []attribute.KeyValue
	Value       int64
}

// ConsoleFormatter writes a batch the way the source's seed script printed it.
type ConsoleFormatter interface {
	// Begin is written once when the pipeline starts (may write nothing).
	Begin(w io.Writer) error
	// Write writes one interval.
	Write(w io.Writer, b *Batch) error
	// End is written once at shutdown.
	End(w io.Writer) error
}

// Batch is one interval of one source, as it moves down a pipeline.
type Batch struct {
	Pipeline string
	Source   string
	Start    time.Time
	End      time.Time
	Metrics  []MetricDef
	Rows     []Row
	// Self is the source's own telemetry; processors leave it alone.
	Self    []SelfPoint
	Console ConsoleFormatter
}

// MetricSource is a kernel-backed source of metric rows.
type MetricSource interface {
	// Name is the source's component ID, e.g. "traffic" or "traffic/lo".
	Name() string
	// Start loads and attaches the source's kernel programs.
	Start(ctx context.Context) error
	// Rung is the hook rung in use after Start.
	Rung() string
	// Collect drains the counters accumulated since the previous call.
	Collect(ctx context.Context) (*Batch, error)
	// Console is how the console exporter prints this source.
	Console() ConsoleFormatter
	// Close detaches everything Start attached.
	Close() error
}

// MetricProcessor transforms a batch; it may return the same batch.
type MetricProcessor interface {
	Name() string
	Process(b *Batch) *Batch
}

// MetricExporter receives every batch of the pipelines it is part of.
type MetricExporter interface {
	Name() string
	// Begin is called once per pipeline and source before the first batch.
	Begin(pipeline string, console ConsoleFormatter) error
	ExportMetrics(ctx context.Context, b *Batch) error
	// Finish is called once per pipeline and source after the last batch.
	Finish(pipeline string, console ConsoleFormatter) error
	// Shutdown flushes and releases the exporter; called once, after all pipelines stopped.
	Shutdown(ctx context.Context) error
}
