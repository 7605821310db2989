package otlp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/pipelines"
)

func marshalRequest(rs []*tracepb.ResourceSpans) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(&collectortrace.ExportTraceServiceRequest{ResourceSpans: rs})
}

func unmarshalRequest(b []byte) *collectortrace.ExportTraceServiceRequest {
	req := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		panic(err)
	}
	return req
}

// exportAll sends spans through a Traces on a capturing client and returns
// what the client got, all in one request when they fit in one batch.
func exportAll(t testing.TB, base *resource.Resource, spans []pipelines.Span) (*captureClient, *Traces) {
	c := &captureClient{}
	tr := newTraces("otlp", c, base, quietLog())
	if err := tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans}); err != nil {
		t.Fatal(err)
	}
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, tr
}

// compareSpans are spans of every shape the exporter handles: socket-call
// spans as the source makes them (child before parent, per-process
// resources interleaved, errors, events), agent-side spans with ids, every
// attribute type, and spans the SDK changes (duplicate and empty keys,
// map values).
func compareSpans() []pipelines.Span {
	spans := benchSpans(30)
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	t0 := time.Unix(1767323045, 987654321)
	curl := []attribute.KeyValue{attribute.String("service.name", "curl"), attribute.Int("process.pid", 42)}
	spans[3].Error, spans[3].StatusMessage = true, "ECONNREFUSED"
	spans[3].Events = []pipelines.SpanEvent{
		{Name: "sock:inet_sock_set_state", Time: t0, Attrs: []attribute.KeyValue{attribute.String("sockeye.tcp.old_state", "SYN_SENT"), attribute.Int64("sockeye.io.bytes", 5)}},
		{Name: "net:netif_receive_skb", Time: t0.Add(time.Microsecond)},
	}
	spans[7].Kind = trace.SpanKindClient
	spans[8].Kind = trace.SpanKind(42) // not a kind: INTERNAL
	spans[9].Error = true              // no message
	spans[10].Resource = nil           // the agent's own
	spans = append(spans,
		pipelines.Span{TraceID: tid, SpanID: trace.SpanID{2}, ParentID: trace.SpanID{1}, Name: "__sys_connect",
			Start: t0.Add(time.Microsecond), End: t0.Add(3 * time.Microsecond), Resource: curl,
			Attrs: []attribute.KeyValue{
				attribute.Bool("b", true), attribute.Float64("f", 1.5), attribute.StringSlice("ss", []string{"x", "y"}),
				attribute.Int64Slice("is", []int64{1, -2}), attribute.BoolSlice("bs", []bool{true}), attribute.Float64Slice("fs", []float64{0.5}),
				attribute.Int("neg", -7), attribute.String("empty", ""),
			}},
		pipelines.Span{TraceID: tid, SpanID: trace.SpanID{1}, Name: "connect", Start: t0, End: t0.Add(4 * time.Microsecond), Resource: curl,
			Attrs: []attribute.KeyValue{attribute.Int("thread.id", 43), attribute.Int("thread.id", 44), attribute.String("", "no key"), attribute.Int("after", 1)}},
		pipelines.Span{TraceID: tid, SpanID: trace.SpanID{3}, ParentID: trace.SpanID{1}, Name: "map", Start: t0, End: t0, Resource: curl,
			Attrs:  []attribute.KeyValue{attribute.Map("m", attribute.String("k", "v"), attribute.String("k", "w"))},
			Events: []pipelines.SpanEvent{{Name: "e", Time: t0, Attrs: []attribute.KeyValue{attribute.Int("a", 1), attribute.Int("a", 2)}}}},
		pipelines.Span{TraceID: tid, SpanID: trace.SpanID{4}, ParentID: trace.SpanID{1}, Name: "agent-side", Start: t0, End: t0.Add(time.Millisecond)},
	)
	return spans
}

func testBase() *resource.Resource {
	return resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("service.name", "sockeye"), attribute.String("host.name", "h"), attribute.String("os.type", "linux"))
}

// checkSame fails unless the direct path's request is, byte for byte, what
// the SDK path sent for the same spans; and, but for the order of the
// ResourceSpans (the SDK's exporter takes it from a map) and for map-valued
// attributes (sent as their JSON string, as before), what the SDK's own
// OTLP exporter sends.
func checkSame(t *testing.T, spans []pipelines.Span) {
	t.Helper()
	base := testBase()
	c, tr := exportAll(t, base, spans)
	defer tr.Shutdown(context.Background())
	if len(c.requests) != 1 {
		t.Fatalf("%d requests", len(c.requests))
	}
	direct := c.requests[0]
	sdk := sdkSpans(base, spans)
	want, err := marshalRequest(sdkWire(sdk))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(direct, want) {
		t.Errorf("direct path differs from the SDK path:\n got %v\nwant %v", unmarshalRequest(direct), unmarshalRequest(want))
	}

	var noMaps []pipelines.Span
	for _, s := range spans {
		if !slices.ContainsFunc(s.Attrs, func(kv attribute.KeyValue) bool { return kv.Value.Type() == attribute.MAP }) {
			noMaps = append(noMaps, s)
		}
	}
	c2, tr2 := exportAll(t, base, noMaps)
	defer tr2.Shutdown(context.Background())
	got := c2.all()
	up := upstreamWire(t, sdkSpans(base, noMaps))
	first := func(rs *tracepb.ResourceSpans) int {
		for i, g := range got {
			if bytes.Equal(g.ScopeSpans[0].Spans[0].SpanId, rs.ScopeSpans[0].Spans[0].SpanId) {
				return i
			}
		}
		return -1
	}
	slices.SortFunc(up, func(a, b *tracepb.ResourceSpans) int { return first(a) - first(b) })
	gb, _ := marshalRequest(got)
	ub, _ := marshalRequest(up)
	if !bytes.Equal(gb, ub) {
		t.Errorf("direct path differs from the SDK's OTLP exporter:\n got %v\nwant %v", unmarshalRequest(gb), unmarshalRequest(ub))
	}
}

// TestDirectMatchesSDK: the OTLP the direct path sends is what the trace
// SDK path sent, byte for byte: resource (agent's merged with the
// process's, schema URL), scope, ids, parent, flags, times, kind,
// attributes and their types, events, status.
func TestDirectMatchesSDK(t *testing.T) {
	spans := compareSpans()
	checkSame(t, spans)
	// The spans are the source's: left as they were.
	if curl := spans[len(spans)-2].Resource; curl[0].Key != "service.name" || curl[1].Key != "process.pid" {
		t.Errorf("span resource reordered: %v", curl)
	}
}

// TestDirectMatchesSDKLimits: spans over the SDK's limits (OTEL_SPAN_*)
// come out cut as the SDK cuts them.
func TestDirectMatchesSDKLimits(t *testing.T) {
	t.Setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5")
	t.Setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "1")
	t.Setenv("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "1")
	t.Setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
	spans := compareSpans()
	checkSame(t, spans)
	c, tr := exportAll(t, testBase(), spans)
	defer tr.Shutdown(context.Background())
	var attrs, events, evAttrs uint32
	for _, rs := range c.all() {
		for _, sp := range rs.ScopeSpans[0].Spans {
			attrs += sp.DroppedAttributesCount
			events += sp.DroppedEventsCount
			for _, e := range sp.Events {
				evAttrs += e.DroppedAttributesCount
			}
			for _, kv := range sp.Attributes {
				if s := kv.Value.GetStringValue(); len(s) > 3 && kv.Key != "m" { // a map, sent as JSON
					t.Errorf("%s: %q over the length limit", sp.Name, s)
				}
			}
		}
	}
	if attrs == 0 || events == 0 || evAttrs == 0 {
		t.Errorf("dropped: %d attributes, %d events, %d event attributes: the limits were not reached", attrs, events, evAttrs)
	}
}

// TestDirectLongValues: attributes, events and statuses whose messages
// take lengths of two and three bytes are written as protobuf writes them.
func TestDirectLongValues(t *testing.T) {
	spans := benchSpans(4)
	long, longer := strings.Repeat("x", 200), strings.Repeat("y", 20000)
	spans[0].Attrs = append(slices.Clip(spans[0].Attrs), attribute.String("long", long), attribute.String(long, "key"))
	spans[1].Attrs = append(slices.Clip(spans[1].Attrs), attribute.String("longer", longer))
	spans[2].Events = []pipelines.SpanEvent{{Name: long, Time: spans[2].Start, Attrs: []attribute.KeyValue{attribute.String("e", longer)}}}
	spans[3].Error, spans[3].StatusMessage = true, long
	checkSame(t, spans)
}

// TestDirectInvalidUTF8: a span with a string that is not UTF-8, which
// protobuf refuses to encode, is left out and counted; the others of its
// batch go out.
func TestDirectInvalidUTF8(t *testing.T) {
	spans := benchSpans(3)
	spans[1].Attrs = append(slices.Clip(spans[1].Attrs), attribute.String("thread.name", "bad\xff"))
	c, tr := exportAll(t, testBase(), spans)
	defer tr.Shutdown(context.Background())
	if c.received() != 2 || tr.failed.Load() != 1 || tr.spans.Load() != 2 {
		t.Errorf("%d received, %d failed, %d taken; want 2, 1, 2", c.received(), tr.failed.Load(), tr.spans.Load())
	}
}

// TestDirectSplitsBatches: spans over several batches arrive in order,
// each batch grouped by resource as the SDK path grouped it.
func TestDirectSplitsBatches(t *testing.T) {
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "7")
	spans := compareSpans()
	base := testBase()
	c, tr := exportAll(t, base, spans)
	defer tr.Shutdown(context.Background())
	if want := (len(spans) + 6) / 7; len(c.requests) != want {
		t.Fatalf("%d requests, want %d", len(c.requests), want)
	}
	for i, req := range c.requests {
		want, _ := marshalRequest(sdkWire(sdkSpans(base, spans[7*i:min(len(spans), 7*i+7)])))
		if !bytes.Equal(req, want) {
			t.Errorf("request %d differs:\n got %v\nwant %v", i, unmarshalRequest(req), unmarshalRequest(want))
		}
	}
}

// Spans without ids get random ones and no parent; spans without times
// get the current time, as the SDK gives them.
func TestDirectMakesIDsAndTimes(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	before := time.Now()
	c, tr := exportAll(t, resource.Empty(), []pipelines.Span{
		{Name: "a", Start: t0, End: t0.Add(time.Second), ParentID: trace.SpanID{9}},
		{Name: "b", Start: t0, End: t0.Add(time.Second)},
		{Name: "zero"},
	})
	defer tr.Shutdown(context.Background())
	after := time.Now()
	spans := c.all()[0].ScopeSpans[0].Spans
	a, b, z := spans[0], spans[1], spans[2]
	for _, s := range spans {
		if len(s.TraceId) != 16 || !trace.TraceID(s.TraceId).IsValid() || len(s.SpanId) != 8 || !trace.SpanID(s.SpanId).IsValid() || s.ParentSpanId != nil {
			t.Errorf("%s: ids %x %x parent %x", s.Name, s.TraceId, s.SpanId, s.ParentSpanId)
		}
	}
	if bytes.Equal(a.TraceId, b.TraceId) || bytes.Equal(a.SpanId, b.SpanId) {
		t.Error("spans without ids share ids")
	}
	if a.StartTimeUnixNano != uint64(t0.UnixNano()) {
		t.Errorf("start %d", a.StartTimeUnixNano)
	}
	if z.StartTimeUnixNano < uint64(before.UnixNano()) || z.EndTimeUnixNano > uint64(after.UnixNano()) || z.EndTimeUnixNano < z.StartTimeUnixNano {
		t.Errorf("zero times became %d..%d, not within %d..%d", z.StartTimeUnixNano, z.EndTimeUnixNano, before.UnixNano(), after.UnixNano())
	}
}

func TestTracesKeepIDsTimesAndParents(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("service.name", "sockeye"), attribute.String("host.name", "h"))
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	root, child := trace.SpanID{1, 1, 1, 1, 1, 1, 1, 1}, trace.SpanID{2, 2, 2, 2, 2, 2, 2, 2}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	proc := []attribute.KeyValue{attribute.String("service.name", "curl"), attribute.Int("process.pid", 42)}
	c, tr := exportAll(t, res, []pipelines.Span{
		// The child comes first, as the kernel sends it.
		{TraceID: tid, SpanID: child, ParentID: root, Name: "__sys_connect", Start: t0.Add(time.Microsecond), End: t0.Add(3 * time.Microsecond),
			Resource: proc, Error: true, StatusMessage: "ECONNREFUSED",
			Events: []pipelines.SpanEvent{{Name: "sock:inet_sock_set_state", Time: t0.Add(2 * time.Microsecond)}}},
		{TraceID: tid, SpanID: root, Name: "connect", Start: t0, End: t0.Add(4 * time.Microsecond), Resource: proc,
			Attrs: []attribute.KeyValue{attribute.Int("thread.id", 43)}},
		{Name: "agent-side", Start: t0, End: t0.Add(time.Millisecond)},
	})
	defer tr.Shutdown(context.Background())
	got := c.all()
	if len(got) != 2 || len(got[0].ScopeSpans[0].Spans) != 2 || len(got[1].ScopeSpans[0].Spans) != 1 {
		t.Fatalf("got %v", got)
	}
	cs, r, a := got[0].ScopeSpans[0].Spans[0], got[0].ScopeSpans[0].Spans[1], got[1].ScopeSpans[0].Spans[0]
	if !bytes.Equal(cs.TraceId, tid[:]) || !bytes.Equal(cs.SpanId, child[:]) || !bytes.Equal(cs.ParentSpanId, root[:]) {
		t.Errorf("child ids: %x %x parent %x", cs.TraceId, cs.SpanId, cs.ParentSpanId)
	}
	if !bytes.Equal(r.SpanId, root[:]) || r.ParentSpanId != nil {
		t.Errorf("root ids: %x parent %x", r.SpanId, r.ParentSpanId)
	}
	if cs.StartTimeUnixNano != uint64(t0.Add(time.Microsecond).UnixNano()) || cs.EndTimeUnixNano != uint64(t0.Add(3*time.Microsecond).UnixNano()) {
		t.Errorf("child times %d..%d", cs.StartTimeUnixNano, cs.EndTimeUnixNano)
	}
	if cs.Kind != tracepb.Span_SPAN_KIND_INTERNAL || cs.Status.Code != tracepb.Status_STATUS_CODE_ERROR || cs.Status.Message != "ECONNREFUSED" {
		t.Errorf("child kind %v status %v", cs.Kind, cs.Status)
	}
	if len(cs.Events) != 1 || cs.Events[0].TimeUnixNano != uint64(t0.Add(2*time.Microsecond).UnixNano()) {
		t.Errorf("events %v", cs.Events)
	}
	resAttr := func(rs *tracepb.ResourceSpans, k string) string {
		for _, kv := range rs.Resource.Attributes {
			if kv.Key == k {
				return fmt.Sprint(kv.Value.GetValue())
			}
		}
		return ""
	}
	if resAttr(got[0], "service.name") != "&{curl}" || resAttr(got[0], "host.name") != "&{h}" || got[0].Resource.Attributes[1].Value.GetIntValue() != 42 {
		t.Errorf("process resource: %v", got[0].Resource)
	}
	if resAttr(got[1], "service.name") != "&{sockeye}" || !trace.TraceID(a.TraceId).IsValid() || bytes.Equal(a.TraceId, tid[:]) {
		t.Errorf("agent span: %v %x", got[1].Resource, a.TraceId)
	}
	if self := tr.Self(); len(self) == 0 {
		t.Error("no self telemetry")
	}
}

func TestTracesResourcesBounded(t *testing.T) {
	c := newConverter(resource.Empty())
	for i := range maxResources + 50 {
		c.resource([]attribute.KeyValue{attribute.Int("process.pid", i)})
	}
	if len(c.bySlice) > maxResources || len(c.byContent) > maxResources {
		t.Errorf("%d slices, %d resources kept, want at most %d", len(c.bySlice), len(c.byContent), maxResources)
	}
	// Slices with the same content share one resource.
	a := c.resource([]attribute.KeyValue{attribute.String("service.name", "x")})
	b := c.resource([]attribute.KeyValue{attribute.String("service.name", "x")})
	if a != b {
		t.Error("same resource converted twice")
	}
	// An int and a string that print alike are different resources.
	if c.resource([]attribute.KeyValue{attribute.Int("n", 1)}) == c.resource([]attribute.KeyValue{attribute.String("n", "1")}) {
		t.Error("int and string resource attributes confused")
	}
}

// TestTracesExportFailures: a failed export counts one failure and its
// spans as lost (sockeye.agent.spans.dropped, reason export_failed); a
// refused connection is tried again within the export timeout.
func TestTracesExportFailures(t *testing.T) {
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
	spans := benchSpans(25)
	self := func(tr *Traces) map[string]int64 {
		m := map[string]int64{}
		for _, p := range tr.Self() {
			m[p.Name] = p.Value
		}
		return m
	}

	t.Run("rejected", func(t *testing.T) {
		c := &captureClient{fail: func(n int) error {
			if n == 2 {
				return errors.New("rpc error: code = InvalidArgument")
			}
			return nil
		}}
		tr := newTraces("otlp", c, resource.Empty(), quietLog())
		tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans})
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := self(tr)
		if got["sockeye.agent.export.count"] != 3 || got["sockeye.agent.export.failures"] != 1 || got["sockeye.agent.spans.dropped"] != 10 || c.received() != 15 {
			t.Errorf("self %v, %d spans received; want 3 exports, 1 failure, 10 spans lost, 15 received", got, c.received())
		}
	})

	t.Run("refused then accepted", func(t *testing.T) {
		c := &captureClient{fail: func(n int) error {
			if n <= 2 {
				return fmt.Errorf("post: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
			}
			return nil
		}}
		tr := newTraces("otlp", c, resource.Empty(), quietLog())
		tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans[:5]})
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := self(tr)
		if got["sockeye.agent.export.count"] != 1 || got["sockeye.agent.export.failures"] != 0 || got["sockeye.agent.spans.dropped"] != 0 || c.received() != 5 || c.uploads != 3 {
			t.Errorf("self %v, %d spans received in %d attempts; want all 5 delivered on the third", got, c.received(), c.uploads)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		t.Setenv("OTEL_BSP_EXPORT_TIMEOUT", "100")
		c := &captureClient{block: make(chan struct{})}
		tr := newTraces("otlp", c, resource.Empty(), quietLog())
		tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans})
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := self(tr)
		if got["sockeye.agent.export.failures"] != 3 || got["sockeye.agent.spans.dropped"] != 25 {
			t.Errorf("self %v; want 3 failures, 25 spans lost", got)
		}
	})
}

// TestTracesBackPressure: while the collector does not answer, ExportSpans
// waits once maxInFlight batches are queued (the pipeline's queue then
// takes the overload) and loses nothing; ForceFlush and Shutdown return
// when their context ends.
func TestTracesBackPressure(t *testing.T) {
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
	c := &captureClient{block: make(chan struct{})}
	tr := newTraces("otlp", c, resource.Empty(), quietLog())
	spans := benchSpans(10 * (maxInFlight + 3))
	var returned atomic.Bool
	go func() {
		tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans})
		returned.Store(true)
	}()
	time.Sleep(200 * time.Millisecond)
	if returned.Load() {
		t.Fatal("ExportSpans returned with the exporter stuck and more than maxInFlight batches")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	if err := tr.ForceFlush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ForceFlush: %v", err)
	}
	cancel()
	if d := time.Since(start); d > time.Second {
		t.Errorf("ForceFlush took %v past its deadline", d)
	}
	close(c.block)
	for !returned.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.received() != len(spans) || tr.failed.Load() != 0 {
		t.Errorf("%d of %d spans received, %d lost", c.received(), len(spans), tr.failed.Load())
	}

	// Shutdown gives up when its context ends, and counts what it abandons.
	c2 := &captureClient{block: make(chan struct{})}
	tr2 := newTraces("otlp", c2, resource.Empty(), quietLog())
	go tr2.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: spans})
	time.Sleep(100 * time.Millisecond)
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := tr2.Shutdown(ctx); err == nil {
		t.Error("Shutdown reported success with spans stuck")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr2.failed.Load()+int64(c2.received()) != int64(len(spans)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := tr2.failed.Load(); n+int64(c2.received()) != int64(len(spans)) {
		t.Errorf("%d spans received, %d counted lost, of %d: want every span counted", c2.received(), n, len(spans))
	}
}

// TestDirectAllocations: once a batch's messages exist, converting spans
// into it allocates nothing.
func TestDirectAllocations(t *testing.T) {
	c := newConverter(testBase())
	spans := benchSpans(2048)
	w := newWireBatch()
	fill := func() {
		for i := range spans {
			w.add(c, &spans[i])
		}
		w.request(c)
		w.reset()
	}
	fill()
	if a := testing.AllocsPerRun(10, fill); a > 0 {
		t.Errorf("%v allocations per batch of %d spans", a, len(spans))
	}
}

// The OTLP messages sockeye builds carry what the spans hold: checked
// on the wire, decoded by a gRPC receiver.
func TestTracesWire(t *testing.T) {
	s, addr := startSink(t)
	var got []*tracepb.ResourceSpans
	s.onExport = func(req *collectortrace.ExportTraceServiceRequest) { got = append(got, req.ResourceSpans...) }
	cfg := &config.OTLPExporter{Enabled: true, Endpoint: addr, Protocol: config.ProtocolGRPC, Insecure: true, Timeout: 5 * time.Second}
	tr, err := NewTraces("wire", cfg, resource.NewSchemaless(attribute.String("host.name", "h")), quietLog())
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

// TestHTTPTracesWaitForCollector: over HTTP, spans exported while the
// collector refuses connections are delivered once it listens.
func TestHTTPTracesWaitForCollector(t *testing.T) {
	addr := testenv.FreeAddr(t) // until the server below starts

	tr, err := NewTraces("otlp", &config.OTLPExporter{Endpoint: "http://" + addr, Protocol: config.ProtocolHTTPProtobuf,
		Insecure: true, Timeout: 10 * time.Second}, resource.Empty(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	tr.ExportSpans(context.Background(), &pipelines.SpanBatch{Spans: benchSpans(3)})
	var spans atomic.Int64
	go func() {
		time.Sleep(1500 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body bytes.Buffer
			body.ReadFrom(r.Body)
			for _, rs := range unmarshalRequest(body.Bytes()).ResourceSpans {
				spans.Add(int64(len(rs.ScopeSpans[0].Spans)))
			}
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
		}))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if spans.Load() != 3 || tr.failed.Load() != 0 {
		t.Errorf("%d spans received, %d failed: want the spans delivered once the collector listens", spans.Load(), tr.failed.Load())
	}
}

// Shutdown while spans are still being exported must neither panic nor hang.
func TestTracesShutdownUnderLoad(t *testing.T) {
	c := &captureClient{}
	tr := newTraces("otlp", c, resource.Empty(), quietLog())
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
	if got := int64(c.received()) + tr.failed.Load(); got != 50*512 {
		t.Errorf("%d spans received or counted lost, of %d", got, 50*512)
	}
}
