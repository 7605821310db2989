package otlp

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sockeye/sockeye/pipelines"
)

// The OTLP of a batch is written straight from pipelines.Span: the
// sources already know every span's times, ids and parent, so no SDK span
// is made for them. Each span is encoded as protobuf into buffers a batch
// keeps from one export to the next (a few spans go through messages from
// slabs kept the same way), so a span costs no allocation once they have
// grown to the batch's size. The ResourceSpans handed to the OTLP client
// carry those bytes as unknown fields: they look empty to code that reads
// them (the client's experimental self-observability counts no spans),
// but are sent as the messages they encode.
//
// The output is what the trace SDK records for the same span, started
// with trace.WithTimestamp under its parent and ended at its end time,
// converted as the SDK's OTLP exporter converts it: flags sampled (parent
// not remote), kind INTERNAL unless set, status ERROR with the message or
// UNSET, resource the agent's merged with Span.Resource, scope ScopeName.
// Two differences from that exporter, kept from sockeye's earlier
// conversion: ResourceSpans come in the order of their first span (it
// takes them from a map), and map-valued attributes go as their JSON
// string. Spans the SDK would change (attributes with duplicate or empty
// keys, slice or map values, over the span limits of OTEL_SPAN_*; zero
// timestamps) are first recorded as an SDK span, which applies its rules.
// TestDirectMatchesSDK compares the two byte for byte.

// slabChunk is the number of messages of a slab chunk.
const slabChunk = 1024

// slab hands out messages of one type from chunks it keeps across batches.
// Pointers it returns stay valid until reset.
type slab[T any] struct {
	chunks [][]T
	c, i   int // current chunk, next free index in it
	size   int // chunk size, slabChunk if 0
}

func (s *slab[T]) next() *T { return &s.take(1)[0] }

// take returns n consecutive zero elements.
func (s *slab[T]) take(n int) []T {
	for {
		if s.c == len(s.chunks) {
			size := s.size
			if size == 0 {
				size = slabChunk
			}
			s.chunks = append(s.chunks, make([]T, max(size, n)))
		}
		if ch := s.chunks[s.c]; len(ch)-s.i >= n {
			out := ch[s.i : s.i+n : s.i+n]
			s.i += n
			return out
		}
		s.c, s.i = s.c+1, 0
	}
}

// reset zeroes what was handed out, for the next batch.
func (s *slab[T]) reset() {
	for c := 0; c <= s.c && c < len(s.chunks); c++ {
		if c < s.c {
			clear(s.chunks[c])
		} else {
			clear(s.chunks[c][:s.i])
		}
	}
	s.c, s.i = 0, 0
}

// values is the storage of converted attributes.
type values struct {
	kvs     slab[commonpb.KeyValue]
	anys    slab[commonpb.AnyValue]
	ptrs    slab[*commonpb.KeyValue]
	strs    slab[commonpb.AnyValue_StringValue]
	ints    slab[commonpb.AnyValue_IntValue]
	bools   slab[commonpb.AnyValue_BoolValue]
	doubles slab[commonpb.AnyValue_DoubleValue]
}

func (v *values) reset() {
	v.kvs.reset()
	v.anys.reset()
	v.ptrs.reset()
	v.strs.reset()
	v.ints.reset()
	v.bools.reset()
	v.doubles.reset()
}

// keyValues converts attributes; ints stay ints, slices become arrays.
func (v *values) keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := v.ptrs.take(len(attrs))
	for i, kv := range attrs {
		pb := v.kvs.next()
		av := v.anys.next()
		pb.Key = string(kv.Key)
		pb.Value = av
		switch kv.Value.Type() {
		case attribute.STRING:
			s := v.strs.next()
			s.StringValue = kv.Value.AsString()
			av.Value = s
		case attribute.INT64:
			n := v.ints.next()
			n.IntValue = kv.Value.AsInt64()
			av.Value = n
		case attribute.BOOL:
			b := v.bools.next()
			b.BoolValue = kv.Value.AsBool()
			av.Value = b
		case attribute.FLOAT64:
			f := v.doubles.next()
			f.DoubleValue = kv.Value.AsFloat64()
			av.Value = f
		default:
			setSliceValue(av, kv.Value)
		}
		out[i] = pb
	}
	return out
}

// setSliceValue converts the rare slice-valued attributes, one by one;
// other types (byte slices, nested slices and maps) as their Emit string.
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

// resEntry is one resource as sent: the agent's merged with a span's.
type resEntry struct {
	pb     *resourcepb.Resource
	raw    []byte // pb, encoded
	schema string
}

// resSlice identifies a Span.Resource slice: sources share one per process
// and never change it once spans carry it.
type resSlice struct {
	first *attribute.KeyValue
	n     int
}

// maxResources bounds the resources kept converted.
const maxResources = 4096

// spanFlags: sampled, and the parent (if any) known not to be remote.
const spanFlags = uint32(trace.FlagsSampled) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)

// converter turns pipelines.Span into OTLP messages. Not safe for
// concurrent use: the batcher calls it under its lock.
type converter struct {
	base  *resource.Resource
	agent *resEntry
	// Resources by slice (a map lookup per span at most; the last one
	// without) and by content (once per slice).
	bySlice   map[resSlice]*resEntry
	byContent map[string]*resEntry
	last      resSlice
	lastEntry *resEntry
	scope     *commonpb.InstrumentationScope
	scopeRaw  []byte // scope, encoded

	limits sdktrace.SpanLimits
	// norm makes the SDK spans that apply its rules to the spans that
	// need them (see plain); they go nowhere.
	norm trace.Tracer
}

func newConverter(base *resource.Resource) *converter {
	if base == nil {
		base = resource.Empty()
	}
	c := &converter{
		base:      base,
		bySlice:   map[resSlice]*resEntry{},
		byContent: map[string]*resEntry{},
		scope:     &commonpb.InstrumentationScope{Name: ScopeName},
		limits:    sdktrace.NewSpanLimits(),
		norm: sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithRawSpanLimits(sdktrace.NewSpanLimits()),
		).Tracer(ScopeName),
	}
	c.scopeRaw, _ = proto.Marshal(c.scope)
	c.agent = newResEntry(base)
	return c
}

// newResEntry converts a resource, merged under the variables
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME as the trace SDK merges
// a provider's resource (the agent's resource holds them already).
func newResEntry(r *resource.Resource) *resEntry {
	if m, err := resource.Merge(resource.Environment(), r); err == nil {
		r = m
	}
	var v values
	e := &resEntry{pb: &resourcepb.Resource{Attributes: v.keyValues(r.Attributes())}, schema: r.SchemaURL()}
	e.raw, _ = proto.Marshal(e.pb)
	return e
}

// resource returns the resource of spans about the given attributes.
func (c *converter) resource(attrs []attribute.KeyValue) *resEntry {
	if len(attrs) == 0 {
		return c.agent
	}
	k := resSlice{&attrs[0], len(attrs)}
	if k == c.last {
		return c.lastEntry
	}
	e, ok := c.bySlice[k]
	if !ok {
		var b strings.Builder
		for _, kv := range attrs {
			b.WriteString(string(kv.Key))
			b.WriteByte(0)
			b.WriteString(kv.Value.Type().String())
			b.WriteByte(0)
			b.WriteString(kv.Value.Emit())
			b.WriteByte(0)
		}
		key := b.String()
		if e, ok = c.byContent[key]; !ok {
			// NewSchemaless sorts what it is given: not the source's slice.
			res, err := resource.Merge(c.base, resource.NewSchemaless(slices.Clone(attrs)...))
			if err != nil {
				res = c.base
			}
			e = newResEntry(res)
			if len(c.byContent) >= maxResources {
				clear(c.byContent)
			}
			c.byContent[key] = e
		}
		if len(c.bySlice) >= maxResources {
			clear(c.bySlice)
		}
		c.bySlice[k] = e
	}
	c.last, c.lastEntry = k, e
	return e
}

// plain reports a span the SDK would record as it is.
func (c *converter) plain(s *pipelines.Span) bool {
	if s.Start.IsZero() || s.End.IsZero() {
		return false
	}
	if lim := c.limits.AttributeCountLimit; lim >= 0 && len(s.Attrs) > lim {
		return false
	}
	vlim := c.limits.AttributeValueLengthLimit
	var seen uint64
	for i, kv := range s.Attrs {
		if kv.Key == "" {
			return false
		}
		switch kv.Value.Type() {
		case attribute.SLICE, attribute.MAP:
			return false
		case attribute.STRING:
			if vlim >= 0 && len(kv.Value.AsString()) > vlim {
				return false
			}
		case attribute.STRINGSLICE, attribute.BYTESLICE:
			if vlim >= 0 {
				return false
			}
		}
		// Keys are compared only when a cheap digest of them (length and
		// last byte) was seen before: most spans' keys all differ in it.
		d := uint64(1) << ((uint(len(kv.Key))*7 + uint(kv.Key[len(kv.Key)-1])) & 63)
		if seen&d != 0 {
			for _, prev := range s.Attrs[:i] {
				if prev.Key == kv.Key {
					return false
				}
			}
		}
		seen |= d
	}
	if lim := c.limits.EventCountLimit; lim >= 0 && len(s.Events) > lim {
		return false
	}
	for _, ev := range s.Events {
		if ev.Time.IsZero() {
			return false
		}
		if lim := c.limits.AttributePerEventCountLimit; lim >= 0 && len(ev.Attrs) > lim {
			return false
		}
		for _, kv := range ev.Attrs {
			if t := kv.Value.Type(); t == attribute.SLICE || t == attribute.MAP {
				return false
			}
		}
	}
	return true
}

// normalize records s as an SDK span, which applies the SDK's limits and
// attribute rules.
func (c *converter) normalize(s *pipelines.Span) sdktrace.ReadOnlySpan {
	_, span := c.norm.Start(context.Background(), s.Name,
		trace.WithTimestamp(s.Start), trace.WithAttributes(s.Attrs...))
	for _, ev := range s.Events {
		span.AddEvent(ev.Name, trace.WithTimestamp(ev.Time), trace.WithAttributes(ev.Attrs...))
	}
	span.End(trace.WithTimestamp(s.End))
	return span.(sdktrace.ReadOnlySpan)
}

// wireBatch is one export's worth of spans, already encoded: each span is
// written as protobuf into the buffer of its resource's group, in the
// order of the resource's first span. Generic marshalling (sizing, then
// writing, every message through reflection tables) cost more than
// everything else on the way from kernel to collector; the bytes written
// here are the same. A span that needs the SDK's rules or holds an
// attribute type other than string, int, bool or float is built as
// messages and marshalled by protobuf instead.
type wireBatch struct {
	n int // spans

	// Messages of the spans marshalled by protobuf.
	spans    slab[tracepb.Span]
	statuses slab[tracepb.Status]
	events   slab[tracepb.Span_Event]
	evPtrs   slab[*tracepb.Span_Event]
	ids      slab[byte]
	vals     values

	groups []group
	index  map[*resEntry]int
	last   *resEntry
	lastG  int

	scratch []byte
	// raw holds each group's ResourceSpans, encoded, for request.
	raw  []byte
	ends []int
	rss  slab[tracepb.ResourceSpans]
	out  []*tracepb.ResourceSpans
}

type group struct {
	res *resEntry
	// spans are ScopeSpans.spans fields (tag, length, span), one a span.
	spans []byte
}

func newWireBatch() *wireBatch {
	w := &wireBatch{index: map[*resEntry]int{}}
	w.ids.size = 64 << 10
	return w
}

func (w *wireBatch) reset() {
	w.n = 0
	w.spans.reset()
	w.statuses.reset()
	w.events.reset()
	w.evPtrs.reset()
	w.ids.reset()
	w.vals.reset()
	for i := range w.groups {
		w.groups[i].spans = w.groups[i].spans[:0]
		w.groups[i].res = nil
	}
	w.groups = w.groups[:0]
	clear(w.index)
	w.last = nil
	w.rss.reset()
	clear(w.out)
	w.out = w.out[:0]
}

// add converts one span into the batch; false if it cannot be encoded
// (a string that is not UTF-8, which protobuf refuses to send): the span
// is then left out, where before it failed its whole batch.
func (w *wireBatch) add(c *converter, s *pipelines.Span) bool {
	tid, sid, parent := s.TraceID, s.SpanID, s.ParentID
	if !tid.IsValid() || !sid.IsValid() {
		// The exporter makes the ids of spans that bring none.
		tid, sid, parent = randomIDs()
	}
	var body []byte
	if c.plain(s) && encodable(s) {
		body = appendSpan(w.scratch[:0], s, &tid, &sid, &parent)
	} else {
		var err error
		body, err = proto.MarshalOptions{}.MarshalAppend(w.scratch[:0], w.message(c, s, tid, sid, parent))
		if err != nil {
			return false
		}
	}
	w.scratch = body

	res := c.resource(s.Resource)
	if res != w.last {
		g, ok := w.index[res]
		if !ok {
			g = len(w.groups)
			if g < cap(w.groups) {
				w.groups = w.groups[:g+1]
			} else {
				w.groups = append(w.groups, group{})
			}
			w.groups[g].res = res
			w.index[res] = g
		}
		w.last, w.lastG = res, g
	}
	g := &w.groups[w.lastG]
	g.spans = protowire.AppendTag(g.spans, 2, protowire.BytesType)
	g.spans = protowire.AppendBytes(g.spans, body)
	w.n++
	return true
}

// message builds the OTLP message of a span that protobuf marshals.
func (w *wireBatch) message(c *converter, s *pipelines.Span, tid trace.TraceID, sid, parent trace.SpanID) *tracepb.Span {
	pb := w.spans.next()
	if parent.IsValid() {
		ids := w.ids.take(32)
		copy(ids[24:], parent[:])
		pb.ParentSpanId = ids[24:32:32]
		pb.TraceId, pb.SpanId = ids[:16:16], ids[16:24:24]
	} else {
		ids := w.ids.take(24)
		pb.TraceId, pb.SpanId = ids[:16:16], ids[16:24:24]
	}
	copy(pb.TraceId, tid[:])
	copy(pb.SpanId, sid[:])
	pb.Flags = spanFlags
	pb.Name = s.Name
	pb.Kind = spanKind(trace.ValidateSpanKind(s.Kind))
	st := w.statuses.next()
	if s.Error {
		st.Code = tracepb.Status_STATUS_CODE_ERROR
		st.Message = s.StatusMessage
	}
	pb.Status = st

	if c.plain(s) {
		pb.StartTimeUnixNano = unixNano(s.Start.UnixNano())
		pb.EndTimeUnixNano = unixNano(s.End.UnixNano())
		pb.Attributes = w.vals.keyValues(s.Attrs)
		if len(s.Events) > 0 {
			pb.Events = w.evPtrs.take(len(s.Events))
			for j := range s.Events {
				ev := &s.Events[j]
				e := w.events.next()
				e.TimeUnixNano = unixNano(ev.Time.UnixNano())
				e.Name = ev.Name
				e.Attributes = w.vals.keyValues(ev.Attrs)
				pb.Events[j] = e
			}
		}
		return pb
	}
	sd := c.normalize(s)
	pb.StartTimeUnixNano = unixNano(sd.StartTime().UnixNano())
	pb.EndTimeUnixNano = unixNano(sd.EndTime().UnixNano())
	pb.Attributes = w.vals.keyValues(sd.Attributes())
	pb.DroppedAttributesCount = uint32(max(0, sd.DroppedAttributes()))
	pb.DroppedEventsCount = uint32(max(0, sd.DroppedEvents()))
	if evs := sd.Events(); len(evs) > 0 {
		pb.Events = w.evPtrs.take(len(evs))
		for j, ev := range evs {
			e := w.events.next()
			e.TimeUnixNano = unixNano(ev.Time.UnixNano())
			e.Name = ev.Name
			e.Attributes = w.vals.keyValues(ev.Attributes)
			e.DroppedAttributesCount = uint32(max(0, ev.DroppedAttributeCount))
			pb.Events[j] = e
		}
	}
	return pb
}

// request is the batch as ResourceSpans, one ScopeSpans each. Each
// message carries its encoded fields as unknown fields, which protobuf
// writes out as they are: the request's bytes are those of the messages
// the fields describe, and a receiver decodes them as such.
func (w *wireBatch) request(c *converter) []*tracepb.ResourceSpans {
	w.raw, w.ends = w.raw[:0], w.ends[:0]
	for i := range w.groups {
		g := &w.groups[i]
		w.raw = protowire.AppendTag(w.raw, 1, protowire.BytesType)
		w.raw = protowire.AppendBytes(w.raw, g.res.raw)
		w.raw = protowire.AppendTag(w.raw, 2, protowire.BytesType)
		w.raw = protowire.AppendVarint(w.raw, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(c.scopeRaw))+len(g.spans)))
		w.raw = protowire.AppendTag(w.raw, 1, protowire.BytesType)
		w.raw = protowire.AppendBytes(w.raw, c.scopeRaw)
		w.raw = append(w.raw, g.spans...)
		if g.res.schema != "" {
			w.raw = protowire.AppendTag(w.raw, 3, protowire.BytesType)
			w.raw = protowire.AppendString(w.raw, g.res.schema)
		}
		w.ends = append(w.ends, len(w.raw))
	}
	w.out = w.out[:0]
	from := 0
	for _, end := range w.ends {
		rs := w.rss.next()
		rs.ProtoReflect().SetUnknown(w.raw[from:end:end])
		w.out = append(w.out, rs)
		from = end
	}
	return w.out
}

// encodable reports a span appendSpan writes as protobuf would: scalar
// attribute values, and UTF-8 strings (protobuf refuses others).
func encodable(s *pipelines.Span) bool {
	if !utf8.ValidString(s.Name) || !utf8.ValidString(s.StatusMessage) || !scalarAttrs(s.Attrs) {
		return false
	}
	for i := range s.Events {
		if !utf8.ValidString(s.Events[i].Name) || !scalarAttrs(s.Events[i].Attrs) {
			return false
		}
	}
	return true
}

func scalarAttrs(attrs []attribute.KeyValue) bool {
	for i := range attrs {
		if !utf8.ValidString(string(attrs[i].Key)) {
			return false
		}
		switch attrs[i].Value.Type() {
		case attribute.STRING:
			if !utf8.ValidString(attrs[i].Value.AsString()) {
				return false
			}
		case attribute.INT64, attribute.BOOL, attribute.FLOAT64:
		default:
			return false
		}
	}
	return true
}

// appendSpan writes a plain, encodable span as the tracepb.Span that
// message makes of it, field by field in protobuf's order (by number,
// zero scalars left out, oneof members and set messages always written).
func appendSpan(b []byte, s *pipelines.Span, tid *trace.TraceID, sid, parent *trace.SpanID) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, tid[:])
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, sid[:])
	if parent.IsValid() {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, parent[:])
	}
	if s.Name != "" {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendString(b, s.Name)
	}
	if k := spanKind(trace.ValidateSpanKind(s.Kind)); k != 0 {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(k))
	}
	if t := unixNano(s.Start.UnixNano()); t != 0 {
		b = protowire.AppendTag(b, 7, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, t)
	}
	if t := unixNano(s.End.UnixNano()); t != 0 {
		b = protowire.AppendTag(b, 8, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, t)
	}
	b = appendKeyValues(b, 9, s.Attrs)
	for i := range s.Events {
		ev := &s.Events[i]
		b = protowire.AppendTag(b, 11, protowire.BytesType)
		b = append(b, 0)
		at := len(b)
		if t := unixNano(ev.Time.UnixNano()); t != 0 {
			b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, t)
		}
		if ev.Name != "" {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendString(b, ev.Name)
		}
		b = appendKeyValues(b, 3, ev.Attrs)
		b = putLength(b, at)
	}
	// Status: always set; message (2) and code (3) when not zero.
	b = protowire.AppendTag(b, 15, protowire.BytesType)
	b = append(b, 0)
	at := len(b)
	if s.Error {
		if s.StatusMessage != "" {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendString(b, s.StatusMessage)
		}
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(tracepb.Status_STATUS_CODE_ERROR))
	}
	b = putLength(b, at)
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, spanFlags)
}

// appendKeyValues writes scalar attributes as repeated KeyValue field num.
// Lengths here and in appendSpan are written after their message, in the
// byte kept for them (messages under 128 bytes, nearly all) or moved up to
// make room.
func appendKeyValues(b []byte, num protowire.Number, attrs []attribute.KeyValue) []byte {
	for i := range attrs {
		kv := &attrs[i]
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = append(b, 0)
		kvAt := len(b)
		if kv.Key != "" {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, string(kv.Key))
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = append(b, 0)
		vAt := len(b)
		switch kv.Value.Type() {
		case attribute.STRING:
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, kv.Value.AsString())
		case attribute.BOOL:
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeBool(kv.Value.AsBool()))
		case attribute.INT64:
			b = protowire.AppendTag(b, 3, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(kv.Value.AsInt64()))
		default:
			b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(kv.Value.AsFloat64()))
		}
		b = putLength(b, vAt)
		b = putLength(b, kvAt)
	}
	return b
}

// putLength writes the length of b[at:] as the varint of the byte kept
// before it, moving b[at:] up if the varint needs more.
func putLength(b []byte, at int) []byte {
	n := len(b) - at
	if n < 0x80 {
		b[at-1] = byte(n)
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	b = append(b, make([]byte, extra)...)
	copy(b[at+extra:], b[at:at+n])
	protowire.AppendVarint(b[at-1:at-1], uint64(n))
	return b
}

func unixNano(ns int64) uint64 { return uint64(max(0, ns)) }

// randomIDs are the ids of a span that brings none: a root.
func randomIDs() (trace.TraceID, trace.SpanID, trace.SpanID) {
	var tid trace.TraceID
	var sid trace.SpanID
	for !tid.IsValid() {
		putUint64(tid[:8], rand.Uint64())
		putUint64(tid[8:], rand.Uint64())
	}
	for !sid.IsValid() {
		putUint64(sid[:], rand.Uint64())
	}
	return tid, sid, trace.SpanID{}
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
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
