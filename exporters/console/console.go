// Package console writes pipelines to a terminal the way the seed scripts
// printed them; each source brings its own format.
package console

import (
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
}

// New returns a console exporter writing to w (normally os.Stdout).
func New(name string, w io.Writer) *Exporter {
	return &Exporter{name: name, w: w}
}

func (e *Exporter) Name() string { return e.name }

func (e *Exporter) Begin(_ string, f pipelines.ConsoleFormatter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return f.Begin(e.w)
}

func (e *Exporter) ExportMetrics(_ context.Context, b *pipelines.Batch) error {
	if b.Console == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return b.Console.Write(e.w, b)
}

func (e *Exporter) Finish(_ string, f pipelines.ConsoleFormatter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return f.End(e.w)
}

func (e *Exporter) Shutdown(context.Context) error { return nil }
