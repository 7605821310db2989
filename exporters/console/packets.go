package console

import (
	"context"

	"github.com/sockeye/sockeye/pipelines"
)

var _ pipelines.PacketExporter = (*Exporter)(nil)

// ExportPackets prints a packet batch with its source's console format.
func (e *Exporter) ExportPackets(_ context.Context, b *pipelines.PacketBatch) error {
	if b.Console == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs.Flush() // rows of other pipelines first, in order
	return b.Console.WritePackets(e.w, b)
}
