package otlp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// recorder keeps what the SDK exports, or fails when told to.
type recorder struct {
	mu    sync.Mutex
	last  *metricdata.ResourceMetrics
	fail  bool
	temps sdkmetric.TemporalitySelector
}

func (r *recorder) Temporality(k sdkmetric.InstrumentKind) metricdata.Temporality {
	if r.temps != nil {
		return r.temps(k)
	}
	return metricdata.CumulativeTemporality
}
func (r *recorder) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}
func (r *recorder) Export(_ context.Context, rm *metricdata.ResourceMetrics) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("collector unreachable")
	}
	cp := *rm
	r.last = &cp
	return nil
}
func (r *recorder) ForceFlush(context.Context) error { return nil }
func (r *recorder) Shutdown(context.Context) error   { return nil }

// value finds the point of metric name whose attributes include want.
func (r *recorder) value(t *testing.T, name string, want ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return 0, false
	}
	for _, sm := range r.last.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
		next:
			for _, p := range points {
				for _, kv := range want {
					if v, ok := p.Attributes.Value(kv.Key); !ok || v != kv.Value {
						continue next
					}
				}
				return p.Value, true
			}
		}
	}
	return 0, false
}

func batch(delta int64, final bool) *pipelines.Batch {
	return &pipelines.Batch{
		Metrics: []pipelines.MetricDef{{Name: "bytes", Unit: "By", Column: 0, Attrs: []attribute.KeyValue{attribute.String("dir", "tx")}}},
		Rows:    []pipelines.Row{{Attrs: []attribute.KeyValue{attribute.Int("process.pid", 7)}, Values: []int64{delta}, Final: final}},
		Self:    []pipelines.SelfPoint{{Name: "sockeye.agent.map.entries", Kind: pipelines.SelfGauge, Value: 3}},
	}
}

func newTest(t *testing.T, rec *recorder) *Metrics {
	t.Helper()
	m, err := newMetrics("otlp", rec, resource.Empty(), time.Hour, time.Second, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

func TestDeltasBecomeRunningTotals(t *testing.T) {
	rec := &recorder{}
	m := newTest(t, rec)
	ctx := context.Background()
	pid := attribute.Int("process.pid", 7)
	for i, d := range []int64{100, 50, 0} {
		if err := m.ExportMetrics(ctx, batch(d, false)); err != nil {
			t.Fatal(err)
		}
		m.ForceFlush(ctx)
		want := []int64{100, 150, 150}[i]
		if got, ok := rec.value(t, "bytes", pid, attribute.String("dir", "tx")); !ok || got != want {
			t.Fatalf("after batch %d: total %d (found %v), want %d", i, got, ok, want)
		}
	}
	if got, ok := rec.value(t, "sockeye.agent.map.entries"); !ok || got != 3 {
		t.Errorf("self gauge: %d %v", got, ok)
	}
	// A final row is exported once more, then the series is forgotten.
	m.ExportMetrics(ctx, batch(10, true))
	m.ForceFlush(ctx)
	if got, _ := rec.value(t, "bytes", pid); got != 160 {
		t.Errorf("final export: %d, want 160", got)
	}
	m.ForceFlush(ctx)
	if _, ok := rec.value(t, "bytes", pid); ok {
		t.Error("series of an exited process still exported after its final export")
	}
}

func TestDeltaTemporality(t *testing.T) {
	rec := &recorder{temps: temporality(config.TemporalityDelta)}
	m := newTest(t, rec)
	ctx := context.Background()
	m.ExportMetrics(ctx, batch(100, false))
	m.ForceFlush(ctx)
	m.ExportMetrics(ctx, batch(30, false))
	m.ForceFlush(ctx)
	if got, _ := rec.value(t, "bytes"); got != 30 {
		t.Errorf("delta export %d, want 30", got)
	}
}

func TestExportFailuresCounted(t *testing.T) {
	rec := &recorder{fail: true}
	m := newTest(t, rec)
	ctx := context.Background()
	m.ExportMetrics(ctx, batch(1, false))
	m.ForceFlush(ctx)
	m.ForceFlush(ctx)
	if m.Failures() != 2 {
		t.Fatalf("failures %d, want 2", m.Failures())
	}
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	m.ForceFlush(ctx)
	if got, ok := rec.value(t, "sockeye.agent.export.failures"); !ok || got != 2 {
		t.Errorf("sockeye.agent.export.failures = %d (%v), want 2", got, ok)
	}
}

func TestBadTLSFileFailsEarly(t *testing.T) {
	cfg := &config.OTLPExporter{Endpoint: "collector:4317", Protocol: "grpc", Timeout: time.Second,
		TLS: config.TLS{CAFile: "/nonexistent/ca.pem"}}
	_, err := NewMetrics("otlp", cfg, resource.Empty(), time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("want an error naming the CA file, got %v", err)
	}
}

// TestFinalSeriesKeptUntilExported: the last total of an exited process
// must not be forgotten when the export that carried it failed (a
// collector outage), or its traffic since the previous export is lost.
func TestFinalSeriesKeptUntilExported(t *testing.T) {
	rec := &recorder{}
	m := newTest(t, rec)
	ctx := context.Background()
	pid := attribute.Int("process.pid", 7)
	m.ExportMetrics(ctx, batch(100, false))
	m.ForceFlush(ctx)

	rec.mu.Lock()
	rec.fail = true
	rec.mu.Unlock()
	m.ExportMetrics(ctx, batch(10, true))
	m.ForceFlush(ctx)
	m.ForceFlush(ctx)

	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	m.ForceFlush(ctx)
	if got, ok := rec.value(t, "bytes", pid); !ok || got != 110 {
		t.Fatalf("after the outage: %d (found %v), want the final total 110", got, ok)
	}
	m.ForceFlush(ctx)
	if _, ok := rec.value(t, "bytes", pid); ok {
		t.Error("series of an exited process still exported after its final total was delivered")
	}
}

// TestFinalSeriesReusedKey: a key that comes back (a reused pid) after its
// final row is a live series again and must not be forgotten.
func TestFinalSeriesReusedKey(t *testing.T) {
	rec := &recorder{}
	m := newTest(t, rec)
	ctx := context.Background()
	pid := attribute.Int("process.pid", 7)
	m.ExportMetrics(ctx, batch(100, true))
	m.ExportMetrics(ctx, batch(5, false))
	m.ForceFlush(ctx)
	m.ForceFlush(ctx)
	if got, ok := rec.value(t, "bytes", pid); !ok || got != 105 {
		t.Fatalf("reused key: %d (found %v), want 105", got, ok)
	}
}
