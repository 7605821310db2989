package otlp

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// wireExporter turns the SDK's finished spans into OTLP messages and hands
// them to the SDK's OTLP client (gRPC or HTTP), as otlptrace.Exporter
// does, but allocates per batch instead of per attribute: socket-call
// traces are many small spans with ten attributes each, where the generic
// transform spends most of the exporter's time allocating.
type wireExporter struct {
	client otlptrace.Client

	mu sync.Mutex
	// resources are converted once per SDK resource (one per traced
	// process); bounded, cleared when full.
	resources map[*resource.Resource]*resourcepb.Resource
}

var _ sdktrace.SpanExporter = (*wireExporter)(nil)

func newWireExporter(ctx context.Context, client otlptrace.Client) (*wireExporter, error) {
	if err := client.Start(ctx); err != nil {
		return nil, err
	}
	return &wireExporter{client: client, resources: map[*resource.Resource]*resourcepb.Resource{}}, nil
}

func (w *wireExporter) Shutdown(ctx context.Context) error { return w.client.Stop(ctx) }

// arena hands out protobuf messages from slices sized for one batch.
type arena struct {
	kvs     []commonpb.KeyValue
	anys    []commonpb.AnyValue
	strs    []commonpb.AnyValue_StringValue
	ints    []commonpb.AnyValue_IntValue
	bools   []commonpb.AnyValue_BoolValue
	doubles []commonpb.AnyValue_DoubleValue
	ptrs    []*commonpb.KeyValue
}

func newArena(n int) *arena {
	return &arena{
		kvs:  make([]commonpb.KeyValue, n),
		anys: make([]commonpb.AnyValue, n),
		ptrs: make([]*commonpb.KeyValue, n),
	}
}

func (a *arena) keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := a.ptrs[:len(attrs):len(attrs)]
	a.ptrs = a.ptrs[len(attrs):]
	for i, kv := range attrs {
		pb := &a.kvs[0]
		av := &a.anys[0]
		a.kvs, a.anys = a.kvs[1:], a.anys[1:]
		pb.Key = string(kv.Key)
		pb.Value = av
		switch kv.Value.Type() {
		case attribute.STRING:
			if len(a.strs) == 0 {
				a.strs = make([]commonpb.AnyValue_StringValue, len(a.kvs)+1)
			}
			v := &a.strs[0]
			a.strs = a.strs[1:]
			v.StringValue = kv.Value.AsString()
			av.Value = v
		case attribute.INT64:
			if len(a.ints) == 0 {
				a.ints = make([]commonpb.AnyValue_IntValue, len(a.kvs)+1)
			}
			v := &a.ints[0]
			a.ints = a.ints[1:]
			v.IntValue = kv.Value.AsInt64()
			av.Value = v
		case attribute.BOOL:
			if len(a.bools) == 0 {
				a.bools = make([]commonpb.AnyValue_BoolValue, 8)
			}
			v := &a.bools[0]
			a.bools = a.bools[1:]
			v.BoolValue = kv.Value.AsBool()
			av.Value = v
		case attribute.FLOAT64:
			if len(a.doubles) == 0 {
				a.doubles = make([]commonpb.AnyValue_DoubleValue, 8)
			}
			v := &a.doubles[0]
			a.doubles = a.doubles[1:]
			v.DoubleValue = kv.Value.AsFloat64()
			av.Value = v
		default:
			setSliceValue(av, kv.Value)
		}
		out[i] = pb
	}
	return out
}

// setSliceValue converts the rare slice-valued attributes, one by one.
func setSliceValue(av *commonpb.AnyValue, v attribute.Value) {
	arr := &commonpb.ArrayValue{}
	add := func(x *commonpb.AnyValue) { arr.Values = append(arr.Values, x) }
	switch v.Type() {
	case attribute.STRINGSLICE:
		for _, s := range v.AsStringSlice() {
			add(&commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}})
		}
	case attribute.INT64SLICE:
		for _, n := range v.AsInt64Slice() {
			add(&commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}})
		}
	case attribute.BOOLSLICE:
		for _, b := range v.AsBoolSlice() {
			add(&commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: b}})
		}
	case attribute.FLOAT64SLICE:
		for _, f := range v.AsFloat64Slice() {
			add(&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}})
		}
	default:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: v.Emit()}
		return
	}
	av.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
}

func (w *wireExporter) resource(r *resource.Resource) *resourcepb.Resource {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pb, ok := w.resources[r]; ok {
		return pb
	}
	if len(w.resources) >= 1024 {
		clear(w.resources)
	}
	attrs := r.Attributes()
	pb := &resourcepb.Resource{Attributes: newArena(len(attrs)).keyValues(attrs)}
	w.resources[r] = pb
	return pb
}

type scopeKey struct {
	res   *resource.Resource
	scope instrumentation.Scope
}

// ExportSpans converts and uploads one batch.
func (w *wireExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	n := 0
	for _, s := range spans {
		n += len(s.Attributes())
		for _, e := range s.Events() {
			n += len(e.Attributes)
		}
	}
	a := newArena(n)
	pbs := make([]tracepb.Span, len(spans))
	statuses := make([]tracepb.Status, len(spans))
	ids := make([]byte, 0, len(spans)*32)
	var order []scopeKey
	groups := map[scopeKey][]*tracepb.Span{}
	for i, sd := range spans {
		sc := sd.SpanContext()
		tid, sid := sc.TraceID(), sc.SpanID()
		pb := &pbs[i]
		start := len(ids)
		ids = append(ids, tid[:]...)
		ids = append(ids, sid[:]...)
		pb.TraceId = ids[start : start+16 : start+16]
		pb.SpanId = ids[start+16 : start+24 : start+24]
		parent := sd.Parent()
		if psid := parent.SpanID(); psid.IsValid() {
			ids = append(ids, psid[:]...)
			pb.ParentSpanId = ids[start+24 : start+32 : start+32]
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
		pb.Attributes = a.keyValues(sd.Attributes())
		pb.DroppedAttributesCount = uint32(max(0, sd.DroppedAttributes()))
		pb.DroppedEventsCount = uint32(max(0, sd.DroppedEvents()))
		pb.DroppedLinksCount = uint32(max(0, sd.DroppedLinks()))
		if evs := sd.Events(); len(evs) > 0 {
			pb.Events = make([]*tracepb.Span_Event, len(evs))
			for j, e := range evs {
				pb.Events[j] = &tracepb.Span_Event{
					TimeUnixNano:           uint64(max(0, e.Time.UnixNano())),
					Name:                   e.Name,
					Attributes:             a.keyValues(e.Attributes),
					DroppedAttributesCount: uint32(max(0, e.DroppedAttributeCount)),
				}
			}
		}
		for _, l := range sd.Links() {
			ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
			pb.Links = append(pb.Links, &tracepb.Span_Link{
				TraceId: append([]byte(nil), ltid[:]...), SpanId: append([]byte(nil), lsid[:]...),
				TraceState: l.SpanContext.TraceState().String(), Attributes: newArena(len(l.Attributes)).keyValues(l.Attributes),
			})
		}
		st := sd.Status()
		statuses[i].Code = tracepb.Status_STATUS_CODE_UNSET
		switch st.Code {
		case 1: // codes.Error
			statuses[i].Code = tracepb.Status_STATUS_CODE_ERROR
		case 2: // codes.Ok
			statuses[i].Code = tracepb.Status_STATUS_CODE_OK
		}
		statuses[i].Message = st.Description
		pb.Status = &statuses[i]

		key := scopeKey{res: sd.Resource(), scope: sd.InstrumentationScope()}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], pb)
	}
	// One ResourceSpans per resource, one ScopeSpans per scope within it.
	byRes := map[*resource.Resource]*tracepb.ResourceSpans{}
	var out []*tracepb.ResourceSpans
	for _, key := range order {
		rs, ok := byRes[key.res]
		if !ok {
			rs = &tracepb.ResourceSpans{Resource: w.resource(key.res), SchemaUrl: key.res.SchemaURL()}
			byRes[key.res] = rs
			out = append(out, rs)
		}
		rs.ScopeSpans = append(rs.ScopeSpans, &tracepb.ScopeSpans{
			Scope:     &commonpb.InstrumentationScope{Name: key.scope.Name, Version: key.scope.Version},
			SchemaUrl: key.scope.SchemaURL,
			Spans:     groups[key],
		})
	}
	return w.client.UploadTraces(ctx, out)
}

func spanKind(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}
