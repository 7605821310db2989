package console

import (
	"context"
	"fmt"

	"github.com/sockeye/sockeye/pipelines"
)

var _ pipelines.TraceExporter = (*Exporter)(nil)

type traceKey struct{ pipeline, source string }

// BeginTraces makes the source's formatter for this pipeline: trace
// formatters keep state (call trees waiting for their root).
func (e *Exporter) BeginTraces(pipeline, source string, newConsole func() pipelines.TraceConsole) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.traces == nil {
		e.traces = map[traceKey]pipelines.TraceConsole{}
	}
	f := newConsole()
	e.traces[traceKey{pipeline, source}] = f
	e.logs.Flush()
	return f.Begin(e.w)
}

func (e *Exporter) ExportSpans(_ context.Context, b *pipelines.SpanBatch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.traces[traceKey{b.Pipeline, b.Source}]
	if !ok {
		return fmt.Errorf("console: no BeginTraces for pipeline %s source %s", b.Pipeline, b.Source)
	}
	e.logs.Flush()
	return f.WriteSpans(e.w, b.Spans)
}

func (e *Exporter) FinishTraces(pipeline, source string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := traceKey{pipeline, source}
	f, ok := e.traces[k]
	if !ok {
		return nil
	}
	delete(e.traces, k)
	e.logs.Flush()
	return f.End(e.w)
}
