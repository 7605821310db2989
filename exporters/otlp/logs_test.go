package otlp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// gateExporter holds every export until the gate opens, then keeps what
// it gets; it fails while fail is set.
type gateExporter struct {
	gate chan struct{}
	mu   sync.Mutex
	got  []sdklog.Record
	fail bool
}

func (g *gateExporter) Export(ctx context.Context, recs []sdklog.Record) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail {
		return errors.New("collector unavailable")
	}
	for _, r := range recs {
		g.got = append(g.got, r.Clone())
	}
	return nil
}
func (g *gateExporter) Shutdown(context.Context) error   { return nil }
func (g *gateExporter) ForceFlush(context.Context) error { return nil }

func (g *gateExporter) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.got)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testRecord(i int) *pipelines.LogRecord {
	return &pipelines.LogRecord{
		Time: time.Unix(100, 0), ObservedTime: time.Unix(101, 0), EventName: "sockeye.tcp.accept",
		Severity: pipelines.SeverityInfo, Body: "x[1] accepted", Attrs: []attribute.KeyValue{attribute.Int("process.pid", i)},
	}
}

// TestLogsBackPressure checks that a full SDK queue makes ExportLog wait
// instead of letting the batch processor drop records, and that every
// record is delivered, as given, once the exporter catches up.
func TestLogsBackPressure(t *testing.T) {
	g := &gateExporter{gate: make(chan struct{})}
	const q = 8
	l := newLogs("otlp", g, q, resource.Empty(), quietLog())
	// The batch processor takes up to q records out of its queue for an
	// export that then blocks on the gate, so 2q fit before ExportLog waits.
	sent := 0
	for ; sent < 4*q; sent++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := l.ExportLog(ctx, testRecord(sent))
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
	}
	if sent < q || sent > 2*q {
		t.Fatalf("ExportLog accepted %d records before waiting, want between %d and %d", sent, q, 2*q)
	}
	close(g.gate)
	for i := sent; i < 4*q; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := l.ExportLog(ctx, testRecord(i)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		cancel()
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := g.count(); n != 4*q {
		t.Errorf("exported %d records, want %d (none dropped)", n, 4*q)
	}
	r := g.got[0]
	if r.EventName() != "sockeye.tcp.accept" || r.SeverityText() != "INFO" || r.Severity() != 9 ||
		r.Body().AsString() != "x[1] accepted" || !r.Timestamp().Equal(time.Unix(100, 0)) || !r.ObservedTimestamp().Equal(time.Unix(101, 0)) {
		t.Errorf("record as exported: %+v", r)
	}
	if l.Failed() != 0 {
		t.Errorf("%d failed", l.Failed())
	}
}

func TestLogsExportFailuresCounted(t *testing.T) {
	g := &gateExporter{gate: make(chan struct{}), fail: true}
	close(g.gate)
	l := newLogs("otlp", g, 16, resource.Empty(), quietLog())
	for i := 0; i < 5; i++ {
		if err := l.ExportLog(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Shutdown(context.Background())
	if l.Failed() != 5 {
		t.Errorf("failed = %d, want 5", l.Failed())
	}
	self := l.Self()
	if len(self) != 1 || self[0].Name != "sockeye.agent.events.lost" || self[0].Value != 5 {
		t.Errorf("self %+v", self)
	}
}

func TestLogsBadTLSFileFailsEarly(t *testing.T) {
	_, err := NewLogs("otlp", &config.OTLPExporter{Endpoint: "col:4317", Protocol: "grpc",
		TLS: config.TLS{CAFile: "/nonexistent/ca.pem"}}, resource.Empty(), quietLog())
	if err == nil {
		t.Fatal("no error for a missing CA file")
	}
}

// BenchmarkExportLog is the agent's cost per record up to the OTLP
// exporter (SDK record, batch processor), the network left out.
func BenchmarkExportLog(b *testing.B) {
	l := newLogs("otlp", discardExporter{}, 2048, resource.Empty(), quietLog())
	r := testRecord(1)
	for i := 0; i < 9; i++ {
		r.Attrs = append(r.Attrs, attribute.String("k"+string(rune('a'+i)), "some value"))
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.ExportLog(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	l.Shutdown(context.Background())
}

type discardExporter struct{}

func (discardExporter) Export(context.Context, []sdklog.Record) error { return nil }
func (discardExporter) Shutdown(context.Context) error                { return nil }
func (discardExporter) ForceFlush(context.Context) error              { return nil }
