package pipelines

import (
	"context"
	"io"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// A logs pipeline streams one record per kernel event: each source reads
// its ring buffer and emits records as they come; processors may drop
// them; every exporter gets them through a bounded queue of its own, so a
// slow exporter never stalls the source, and what does not fit is counted.

// Severity is an OpenTelemetry severity number.
type Severity int

// SeverityInfo is the OpenTelemetry number of INFO.
const SeverityInfo Severity = 9

// String is the severity text exporters send.
func (s Severity) String() string {
	switch {
	case s >= 21:
		return "FATAL"
	case s >= 17:
		return "ERROR"
	case s >= 13:
		return "WARN"
	case s >= 9:
		return "INFO"
	case s >= 5:
		return "DEBUG"
	case s >= 1:
		return "TRACE"
	}
	return ""
}

// LogRecord is one event as it moves down a logs pipeline. Exporters share
// it: after the source emits it, nothing writes to it but processors, which
// run before any exporter sees it.
type LogRecord struct {
	Pipeline string
	Source   string
	// Time is when the event happened (the kernel's clock, in wall time);
	// ObservedTime is when the agent read it.
	Time         time.Time
	ObservedTime time.Time
	EventName    string
	Severity     Severity
	Body         string
	Attrs        []attribute.KeyValue
	// Payload is the source's own typed event, for its console formatter.
	Payload any
	// Console is how the console exporter prints this record.
	Console LogConsoleFormatter
}

// LogConsoleFormatter writes records the way the source's seed script did.
type LogConsoleFormatter interface {
	// Begin is written once when the pipeline starts (may write nothing).
	Begin(w io.Writer) error
	// WriteLog writes one record.
	WriteLog(w io.Writer, r *LogRecord) error
	// End is written once at shutdown.
	End(w io.Writer) error
}

// LogSource is a kernel-backed source of log records.
type LogSource interface {
	// Name is the source's component ID, e.g. "accepts".
	Name() string
	// Start loads and attaches the source's kernel programs.
	Start(ctx context.Context) error
	// Rung is the hook rung in use after Start.
	Rung() string
	// Notes are the chosen rung's limits on this kernel.
	Notes() []string
	// Run reads events and calls emit for each until ctx is done, then
	// emits what the kernel had already written and returns. emit may be
	// called from one goroutine at a time only.
	Run(ctx context.Context, emit func(*LogRecord)) error
	// Self is the source's own telemetry (loss counters), totals since
	// Start; safe to call while Run runs.
	Self() []SelfPoint
	// Console is how the console exporter prints this source.
	Console() LogConsoleFormatter
	// Close detaches everything Start attached.
	Close() error
}

// LogProcessor may drop a record or change its attributes.
type LogProcessor interface {
	Name() string
	// ProcessLog returns false to drop the record.
	ProcessLog(r *LogRecord) bool
}

// LogExporter receives the records of the logs pipelines it is part of,
// from one goroutine per pipeline.
type LogExporter interface {
	Name() string
	// BeginLogs is called once per pipeline and source before the first record.
	BeginLogs(pipeline string, console LogConsoleFormatter) error
	// ExportLog may block (back-pressure); the pipeline's queue absorbs it.
	ExportLog(ctx context.Context, r *LogRecord) error
	// FinishLogs is called once per pipeline and source after the last record.
	FinishLogs(pipeline string, console LogConsoleFormatter) error
	// Shutdown flushes and releases the exporter; called once, after all pipelines stopped.
	Shutdown(ctx context.Context) error
}

// LogFlusher is an exporter that buffers: FlushLogs is called whenever
// its queue runs empty.
type LogFlusher interface {
	FlushLogs() error
}

// SelfReporter is an exporter with loss counters of its own.
type SelfReporter interface {
	Self() []SelfPoint
}
