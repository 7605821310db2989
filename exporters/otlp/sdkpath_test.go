package otlp

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sockeye/sockeye/pipelines"
)

// The reference for the direct path: the spans as the trace SDK records
// them and as its OTLP exporter, and sockeye's conversion of the SDK's
// finished spans, sent them. Each span is started with trace.WithTimestamp
// under an explicit parent context, with its own ids through an
// IDGenerator, under a TracerProvider whose resource is the agent's merged
// with Span.Resource, and ended with its end time.

// presetIDs carries a span's own ids to the IDGenerator through the context.
type presetIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// presetIDGenerator uses the ids a span brings, or random ones.
type presetIDGenerator struct{}

func (presetIDGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if p, ok := ctx.Value(presetIDs{}).(presetIDs); ok {
		return p.trace, p.span
	}
	tid, sid, _ := randomIDs()
	return tid, sid
}

func (presetIDGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if p, ok := ctx.Value(presetIDs{}).(presetIDs); ok {
		return p.span
	}
	_, sid, _ := randomIDs()
	return sid
}

// sdkSpans records spans through the trace SDK and returns its finished spans.
func sdkSpans(base *resource.Resource, spans []pipelines.Span) []sdktrace.ReadOnlySpan {
	rec := tracetest.NewSpanRecorder()
	providers := map[string]*sdktrace.TracerProvider{}
	provider := func(attrs []attribute.KeyValue) *sdktrace.TracerProvider {
		var b strings.Builder
		for _, kv := range attrs {
			b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + "\x00")
		}
		if p, ok := providers[b.String()]; ok {
			return p
		}
		res := base
		if len(attrs) > 0 {
			res, _ = resource.Merge(base, resource.NewSchemaless(slices.Clone(attrs)...))
		}
		p := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(rec),
			sdktrace.WithIDGenerator(presetIDGenerator{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		providers[b.String()] = p
		return p
	}
	for i := range spans {
		s := &spans[i]
		ctx := context.Background()
		if s.TraceID.IsValid() && s.SpanID.IsValid() {
			ctx = context.WithValue(ctx, presetIDs{}, presetIDs{trace: s.TraceID, span: s.SpanID})
			if s.ParentID.IsValid() {
				ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: s.TraceID, SpanID: s.ParentID, TraceFlags: trace.FlagsSampled,
				}))
			}
		}
		kind := s.Kind
		if kind == trace.SpanKindUnspecified {
			kind = trace.SpanKindInternal
		}
		_, span := provider(s.Resource).Tracer(ScopeName).Start(ctx, s.Name,
			trace.WithTimestamp(s.Start), trace.WithSpanKind(kind), trace.WithAttributes(s.Attrs...))
		for _, ev := range s.Events {
			span.AddEvent(ev.Name, trace.WithTimestamp(ev.Time), trace.WithAttributes(ev.Attrs...))
		}
		if s.Error {
			span.SetStatus(codes.Error, s.StatusMessage)
		}
		span.End(trace.WithTimestamp(s.End))
	}
	return rec.Ended()
}

// sdkWire converts the SDK's finished spans to OTLP as sockeye's exporter
// of SDK spans did.
func sdkWire(spans []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	type scopeKey struct {
		res   *resource.Resource
		scope instrumentation.Scope
	}
	var order []scopeKey
	groups := map[scopeKey][]*tracepb.Span{}
	for _, sd := range spans {
		var v values
		sc := sd.SpanContext()
		tid, sid := sc.TraceID(), sc.SpanID()
		pb := &tracepb.Span{TraceId: append([]byte(nil), tid[:]...), SpanId: append([]byte(nil), sid[:]...)}
		parent := sd.Parent()
		if psid := parent.SpanID(); psid.IsValid() {
			pb.ParentSpanId = append([]byte(nil), psid[:]...)
		}
		flags := uint32(sc.TraceFlags()) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
		if parent.IsRemote() {
			flags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
		}
		pb.Flags = flags
		if ts := sc.TraceState(); ts.Len() > 0 {
			pb.TraceState = ts.String()
		}
		pb.Name = sd.Name()
		pb.Kind = spanKind(sd.SpanKind())
		pb.StartTimeUnixNano = uint64(max(0, sd.StartTime().UnixNano()))
		pb.EndTimeUnixNano = uint64(max(0, sd.EndTime().UnixNano()))
		pb.Attributes = v.keyValues(sd.Attributes())
		pb.DroppedAttributesCount = uint32(max(0, sd.DroppedAttributes()))
		pb.DroppedEventsCount = uint32(max(0, sd.DroppedEvents()))
		pb.DroppedLinksCount = uint32(max(0, sd.DroppedLinks()))
		if evs := sd.Events(); len(evs) > 0 {
			pb.Events = make([]*tracepb.Span_Event, len(evs))
			for j, e := range evs {
				pb.Events[j] = &tracepb.Span_Event{
					TimeUnixNano:           uint64(max(0, e.Time.UnixNano())),
					Name:                   e.Name,
					Attributes:             v.keyValues(e.Attributes),
					DroppedAttributesCount: uint32(max(0, e.DroppedAttributeCount)),
				}
			}
		}
		st := sd.Status()
		pb.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_UNSET, Message: st.Description}
		switch st.Code {
		case codes.Error:
			pb.Status.Code = tracepb.Status_STATUS_CODE_ERROR
		case codes.Ok:
			pb.Status.Code = tracepb.Status_STATUS_CODE_OK
		}
		key := scopeKey{res: sd.Resource(), scope: sd.InstrumentationScope()}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], pb)
	}
	byRes := map[*resource.Resource]*tracepb.ResourceSpans{}
	var out []*tracepb.ResourceSpans
	for _, key := range order {
		rs, ok := byRes[key.res]
		if !ok {
			var v values
			rs = &tracepb.ResourceSpans{Resource: &resourcepb.Resource{Attributes: v.keyValues(key.res.Attributes())}, SchemaUrl: key.res.SchemaURL()}
			byRes[key.res] = rs
			out = append(out, rs)
		}
		rs.ScopeSpans = append(rs.ScopeSpans, &tracepb.ScopeSpans{
			Scope:     &commonpb.InstrumentationScope{Name: key.scope.Name, Version: key.scope.Version},
			SchemaUrl: key.scope.SchemaURL,
			Spans:     groups[key],
		})
	}
	return out
}

// upstreamWire is what the SDK's own OTLP exporter sends for the SDK's
// finished spans.
func upstreamWire(t testing.TB, spans []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	c := &captureClient{}
	exp, err := otlptrace.New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	return c.all()
}

// captureClient is an otlptrace.Client that keeps what it is sent, as
// marshaled requests (the exporter reuses its messages), and can fail or
// block.
type captureClient struct {
	mu       sync.Mutex
	requests [][]byte
	spans    int
	uploads  int
	// fail, if set, is the outcome of each upload (attempt n from 1).
	fail func(n int) error
	// block, if set, holds every upload until it is closed or ctx ends.
	block   chan struct{}
	stopped bool
}

func (c *captureClient) Start(context.Context) error { return nil }
func (c *captureClient) Stop(context.Context) error {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	return nil
}

func (c *captureClient) UploadTraces(ctx context.Context, rs []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	c.uploads++
	n := c.uploads
	fail, block := c.fail, c.block
	c.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(n); err != nil {
			return err
		}
	}
	b, err := marshalRequest(rs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, b)
	// Decoded: the exporter's messages carry their fields encoded.
	for _, r := range unmarshalRequest(b).ResourceSpans {
		for _, ss := range r.ScopeSpans {
			c.spans += len(ss.Spans)
		}
	}
	return nil
}

// all is every ResourceSpans received, decoded.
func (c *captureClient) all() []*tracepb.ResourceSpans {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.ResourceSpans
	for _, b := range c.requests {
		out = append(out, unmarshalRequest(b).ResourceSpans...)
	}
	return out
}

func (c *captureClient) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spans
}
