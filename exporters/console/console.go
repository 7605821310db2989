// Package console writes pipelines to a terminal the way the seed scripts
// printed them; each source brings its own format.
package console

import (
	"bufio"
	"context"
	"io"
	"sync"

	"github.com/sockeye/sockeye/pipelines"
)

// Exporter prints batches with their source's console formatter.
type Exporter struct {
	name string
	mu   sync.Mutex // pipelines share the writer; keep their samples whole
	w    io.Writer
	// logs holds log rows until their queue runs dry, so a burst costs one
	// write; it is flushed before anything else is written, keeping order.
	logs *bufio.Writer
	// traces are the trace formatters by pipeline and source (traces.go).
	traces map[traceKey]pipelines.TraceConsole
}

// New returns a console exporter writing to w (normally os.Stdout).
func New(name string, w io.Writer) *Exporter {
	return &Exporter{name: name, w: w, logs: bufio.NewWriterSize(w, 32<<10)}
}

func (e *Exporter) Name() string { return e.name }

func (e *Exporter) Begin(_ string, f pipelines.ConsoleFormatter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs.Flush()
	return f.Begin(e.w)
}

func (e *Exporter) ExportMetrics(_ context.Context, b *pipelines.Batch) error {
	if b.Console == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs.Flush()
	return b.Console.Write(e.w, b)
}

func (e *Exporter) Finish(_ string, f pipelines.ConsoleFormatter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs.Flush()
	return f.End(e.w)
}

// BeginLogs writes the source's header.
func (e *Exporter) BeginLogs(_ string, f pipelines.LogConsoleFormatter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := f.Begin(e.logs); err != nil {
		return err
	}
	return e.logs.Flush()
}

// ExportLog buffers one row; the pipeline calls FlushLogs when its queue
// runs dry.
func (e *Exporter) ExportLog(_ context.Context, r *pipelines.LogRecord) error {
	if r.Console == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return r.Console.WriteLog(e.logs, r)
}

func (e *Exporter) FlushLogs() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs.Flush()
}

func (e *Exporter) FinishLogs(_ string, f pipelines.LogConsoleFormatter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := f.End(e.logs); err != nil {
		return err
	}
	return e.logs.Flush()
}

func (e *Exporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs.Flush()
}
