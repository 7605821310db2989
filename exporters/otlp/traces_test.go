package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

func TestTracesKeepIDsTimesAndParents(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	res := resource.NewSchemaless(attribute.String("service.name", "sockeye"), attribute.String("host.name", "h"))
	tr := newTraces("otlp", mem, res, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	root, child := trace.SpanID{1, 1, 1, 1, 1, 1, 1, 1}, trace.SpanID{2, 2, 2, 2, 2, 2, 2, 2}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	proc := []attribute.KeyValue{attribute.String("service.name", "curl"), attribute.Int("process.pid", 42)}
	batch := &pipelines.SpanBatch{Spans: []pipelines.Span{
		// The child comes first, as the kernel sends it.
		{TraceID: tid, SpanID: child, ParentID: root, Name: "__sys_connect", Start: t0.Add(time.Microsecond), End: t0.Add(3 * time.Microsecond),
			Resource: proc, Error: true, StatusMessage: "ECONNREFUSED",
			Events: []pipelines.SpanEvent{{Name: "sock:inet_sock_set_state", Time: t0.Add(2 * time.Microsecond)}}},
		{TraceID: tid, SpanID: root, Name: "connect", Start: t0, End: t0.Add(4 * time.Microsecond), Resource: proc,
			Attrs: []attribute.KeyValue{attribute.Int("thread.id", 43)}},
		{Name: "agent-side", Start: t0, End: t0.Add(time.Millisecond)},
	}}
	if err := tr.ExportSpans(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// The in-memory exporter forgets its spans at shutdown: flush instead.
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := mem.GetSpans()
	defer tr.Shutdown(context.Background())
	if len(got) != 3 {
		t.Fatalf("%d spans", len(got))
	}
	c, r, a := got[0], got[1], got[2]
	if c.SpanContext.TraceID() != tid || c.SpanContext.SpanID() != child || c.Parent.SpanID() != root || c.Parent.TraceID() != tid {
		t.Errorf("child ids: %v parent %v", c.SpanContext, c.Parent)
	}
	if r.SpanContext.SpanID() != root || r.Parent.IsValid() {
		t.Errorf("root ids: %v parent %v", r.SpanContext, r.Parent)
	}
	if !c.StartTime.Equal(t0.Add(time.Microsecond)) || !c.EndTime.Equal(t0.Add(3*time.Microsecond)) {
		t.Errorf("child times %v..%v", c.StartTime, c.EndTime)
	}
	if c.SpanKind != trace.SpanKindInternal || c.Status.Code != codes.Error || c.Status.Description != "ECONNREFUSED" {
		t.Errorf("child kind %v status %v", c.SpanKind, c.Status)
	}
	if len(c.Events) != 1 || !c.Events[0].Time.Equal(t0.Add(2*time.Microsecond)) {
		t.Errorf("events %v", c.Events)
	}
	resAttr := func(s tracetest.SpanStub, k string) string {
		v, _ := s.Resource.Set().Value(attribute.Key(k))
		return v.Emit()
	}
	if resAttr(r, "service.name") != "curl" || resAttr(r, "host.name") != "h" || resAttr(r, "process.pid") != "42" {
		t.Errorf("process resource: %v", r.Resource)
	}
	if resAttr(a, "service.name") != "sockeye" || !a.SpanContext.TraceID().IsValid() || a.SpanContext.TraceID() == tid {
		t.Errorf("agent span: %v %v", a.Resource, a.SpanContext)
	}
	if self := tr.Self(); len(self) == 0 {
		t.Error("no self telemetry")
	}
}

func TestTracesProviderLRU(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	tr := newTraces("otlp", mem, resource.Empty(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := range maxProviders + 50 {
		tr.tracer([]attribute.KeyValue{attribute.Int("process.pid", i)})
	}
	if tr.lru.Len() != maxProviders || len(tr.tracers) != maxProviders {
		t.Errorf("%d providers kept, want %d", tr.lru.Len(), maxProviders)
	}
	tr.Shutdown(context.Background())
}

// The OTLP messages sockeye builds carry what the SDK recorded: checked
// on the wire, decoded by a gRPC receiver.
func TestTracesWire(t *testing.T) {
	s, addr := startSink(t)
	var got []*tracepb.ResourceSpans
	s.onExport = func(req *collectortrace.ExportTraceServiceRequest) { got = append(got, req.ResourceSpans...) }
	cfg := &config.OTLPExporter{Enabled: true, Endpoint: addr, Protocol: config.ProtocolGRPC, Insecure: true, Timeout: 5 * time.Second}
	tr, err := NewTraces("wire", cfg, resource.NewSchemaless(attribute.String("host.name", "h")), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	t0 := time.Unix(1700000000, 123)
	proc := []attribute.KeyValue{attribute.String("service.name", "curl")}
	tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: []pipelines.Span{{
		TraceID: tid, SpanID: trace.SpanID{2}, ParentID: trace.SpanID{1}, Name: "sendto", Start: t0, End: t0.Add(time.Microsecond),
		Attrs:  []attribute.KeyValue{attribute.Int("thread.id", 7), attribute.String("thread.name", "curl"), attribute.Bool("b", true), attribute.Float64("f", 1.5), attribute.StringSlice("s", []string{"x"})},
		Events: []pipelines.SpanEvent{{Name: "sock:sock_send_length", Time: t0, Attrs: []attribute.KeyValue{attribute.Int("sockeye.io.bytes", 5)}}},
		Error:  true, StatusMessage: "EPIPE", Resource: proc,
	}}})
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(got) != 1 || len(got[0].ScopeSpans) != 1 || len(got[0].ScopeSpans[0].Spans) != 1 {
		t.Fatalf("got %v", got)
	}
	res := map[string]string{}
	for _, kv := range got[0].Resource.Attributes {
		res[kv.Key] = kv.Value.GetStringValue()
	}
	if res["service.name"] != "curl" || res["host.name"] != "h" {
		t.Errorf("resource %v", res)
	}
	if got[0].ScopeSpans[0].Scope.Name != ScopeName {
		t.Errorf("scope %v", got[0].ScopeSpans[0].Scope)
	}
	sp := got[0].ScopeSpans[0].Spans[0]
	if !bytes.Equal(sp.TraceId, tid[:]) || sp.SpanId[0] != 2 || sp.ParentSpanId[0] != 1 || sp.Name != "sendto" ||
		sp.Kind != tracepb.Span_SPAN_KIND_INTERNAL || sp.StartTimeUnixNano != uint64(t0.UnixNano()) || sp.EndTimeUnixNano != uint64(t0.UnixNano())+1000 {
		t.Errorf("span %v", sp)
	}
	if sp.Status.Code != tracepb.Status_STATUS_CODE_ERROR || sp.Status.Message != "EPIPE" || sp.Flags&0x1 == 0 {
		t.Errorf("status %v flags %x", sp.Status, sp.Flags)
	}
	attrs := map[string]string{}
	for _, kv := range sp.Attributes {
		attrs[kv.Key] = fmt.Sprint(kv.Value.GetValue())
	}
	if len(attrs) != 5 || sp.Attributes[0].Value.GetIntValue() != 7 || sp.Attributes[1].Value.GetStringValue() != "curl" ||
		!sp.Attributes[2].Value.GetBoolValue() || sp.Attributes[3].Value.GetDoubleValue() != 1.5 ||
		sp.Attributes[4].Value.GetArrayValue().Values[0].GetStringValue() != "x" {
		t.Errorf("attributes %v", attrs)
	}
	if len(sp.Events) != 1 || sp.Events[0].Name != "sock:sock_send_length" || sp.Events[0].Attributes[0].Value.GetIntValue() != 5 {
		t.Errorf("events %v", sp.Events)
	}
}

// Shutdown while spans are still being ended must neither panic nor hang.
func TestTracesShutdownUnderLoad(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	tr := newTraces("otlp", mem, resource.Empty(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		spans := make([]pipelines.Span, 512)
		for i := range spans {
			spans[i] = pipelines.Span{Name: "x", Start: time.Now(), End: time.Now()}
		}
		for range 50 {
			tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans})
		}
	}()
	time.Sleep(5 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	<-done
}
