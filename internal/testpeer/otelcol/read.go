package otelcol

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// MetricPoint is one data point with its metric, scope and resource context.
type MetricPoint struct {
	Name, Unit, Description string
	// Kind is "sum", "gauge", "histogram", "exponential_histogram" or
	// "summary".
	Kind      string
	Monotonic bool
	// Temporality is "cumulative", "delta", or "" for gauges and summaries.
	Temporality  string
	Attrs        map[string]string
	Resource     map[string]string
	ScopeName    string
	ScopeVersion string
	Start, Time  time.Time

	// Value of a sum or gauge point: Int if IsInt, else Double.
	Int    int64
	Double float64
	IsInt  bool

	// Histogram, exponential histogram and summary points.
	Count          uint64
	Sum            float64
	HasSum         bool
	Min, Max       float64
	HasMin, HasMax bool
	// Explicit-bucket histograms only.
	BucketCounts   []uint64
	ExplicitBounds []float64
}

// Value returns the point's number as a float64 (Sum for histograms).
func (p MetricPoint) Value() float64 {
	switch {
	case p.Kind != "sum" && p.Kind != "gauge":
		return p.Sum
	case p.IsInt:
		return float64(p.Int)
	default:
		return p.Double
	}
}

func (p MetricPoint) String() string {
	var v string
	switch {
	case p.Kind != "sum" && p.Kind != "gauge":
		v = fmt.Sprintf("count=%d sum=%g", p.Count, p.Sum)
	case p.IsInt:
		v = strconv.FormatInt(p.Int, 10)
	default:
		v = strconv.FormatFloat(p.Double, 'g', -1, 64)
	}
	kind := p.Kind
	if p.Temporality != "" {
		kind += "/" + p.Temporality
	}
	if p.Monotonic {
		kind += "/monotonic"
	}
	return fmt.Sprintf("%s{%s} %s %s unit=%q scope=%q", p.Name, fmtAttrs(p.Attrs), kind, v, p.Unit, p.ScopeName)
}

// LogRecord is one log record with its scope and resource context.
type LogRecord struct {
	EventName      string
	SeverityText   string
	SeverityNumber int32
	// Body is the body stringified like attribute values.
	Body               string
	Attrs              map[string]string
	Resource           map[string]string
	ScopeName          string
	Time, ObservedTime time.Time
	TraceID, SpanID    string // hex, "" when unset
	Flags              uint32
}

func (r LogRecord) String() string {
	return fmt.Sprintf("event=%q severity=%s(%d) body=%q {%s} scope=%q", r.EventName, r.SeverityText, r.SeverityNumber, r.Body, fmtAttrs(r.Attrs), r.ScopeName)
}

// Span is one span with its scope and resource context.
type Span struct {
	TraceID, SpanID, ParentSpanID string // hex, "" when unset
	TraceState                    string
	Name                          string
	// Kind is "unspecified", "internal", "server", "client", "producer" or
	// "consumer".
	Kind       string
	Start, End time.Time
	// StatusCode is "unset", "ok" or "error".
	StatusCode, StatusMessage string
	Attrs                     map[string]string
	Resource                  map[string]string
	ScopeName                 string
	Events                    []SpanEvent
	Links                     []SpanLink
}

// SpanEvent is an event recorded on a span.
type SpanEvent struct {
	Name  string
	Time  time.Time
	Attrs map[string]string
}

// SpanLink is a link from a span to another span.
type SpanLink struct {
	TraceID, SpanID string
	Attrs           map[string]string
}

func (s Span) String() string {
	return fmt.Sprintf("%s kind=%s trace=%s span=%s parent=%s status=%s {%s} events=%d", s.Name, s.Kind, s.TraceID, s.SpanID, s.ParentSpanID, s.StatusCode, fmtAttrs(s.Attrs), len(s.Events))
}

// Metrics returns every metric data point the collector has written so far,
// in arrival order.
func (c *Collector) Metrics() ([]MetricPoint, error) { return ReadMetrics(c.MetricsPath) }

// Logs returns every log record the collector has written so far.
func (c *Collector) Logs() ([]LogRecord, error) { return ReadLogs(c.LogsPath) }

// Spans returns every span the collector has written so far.
func (c *Collector) Spans() ([]Span, error) { return ReadSpans(c.TracesPath) }

// ReadMetrics parses a file exporter JSON metrics file.
func ReadMetrics(path string) ([]MetricPoint, error) {
	var out []MetricPoint
	err := eachLine(path, func() proto.Message { return &metricspb.MetricsData{} }, func(m proto.Message) {
		for _, rm := range m.(*metricspb.MetricsData).GetResourceMetrics() {
			res := resourceAttrs(rm.GetResource())
			for _, sm := range rm.GetScopeMetrics() {
				for _, metric := range sm.GetMetrics() {
					base := MetricPoint{
						Name:         metric.GetName(),
						Unit:         metric.GetUnit(),
						Description:  metric.GetDescription(),
						Resource:     res,
						ScopeName:    sm.GetScope().GetName(),
						ScopeVersion: sm.GetScope().GetVersion(),
					}
					out = appendPoints(out, base, metric)
				}
			}
		}
	})
	return out, err
}

func appendPoints(out []MetricPoint, base MetricPoint, m *metricspb.Metric) []MetricPoint {
	number := func(p MetricPoint, dp *metricspb.NumberDataPoint) MetricPoint {
		p.Attrs = attrs(dp.GetAttributes())
		p.Start, p.Time = nanos(dp.GetStartTimeUnixNano()), nanos(dp.GetTimeUnixNano())
		switch v := dp.GetValue().(type) {
		case *metricspb.NumberDataPoint_AsInt:
			p.Int, p.IsInt = v.AsInt, true
		case *metricspb.NumberDataPoint_AsDouble:
			p.Double = v.AsDouble
		}
		return p
	}
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Sum:
		base.Kind = "sum"
		base.Monotonic = d.Sum.GetIsMonotonic()
		base.Temporality = temporality(d.Sum.GetAggregationTemporality())
		for _, dp := range d.Sum.GetDataPoints() {
			out = append(out, number(base, dp))
		}
	case *metricspb.Metric_Gauge:
		base.Kind = "gauge"
		for _, dp := range d.Gauge.GetDataPoints() {
			out = append(out, number(base, dp))
		}
	case *metricspb.Metric_Histogram:
		base.Kind = "histogram"
		base.Temporality = temporality(d.Histogram.GetAggregationTemporality())
		for _, dp := range d.Histogram.GetDataPoints() {
			p := base
			p.Attrs = attrs(dp.GetAttributes())
			p.Start, p.Time = nanos(dp.GetStartTimeUnixNano()), nanos(dp.GetTimeUnixNano())
			p.Count = dp.GetCount()
			p.Sum, p.HasSum = dp.GetSum(), dp.Sum != nil
			p.Min, p.HasMin = dp.GetMin(), dp.Min != nil
			p.Max, p.HasMax = dp.GetMax(), dp.Max != nil
			p.BucketCounts = dp.GetBucketCounts()
			p.ExplicitBounds = dp.GetExplicitBounds()
			out = append(out, p)
		}
	case *metricspb.Metric_ExponentialHistogram:
		base.Kind = "exponential_histogram"
		base.Temporality = temporality(d.ExponentialHistogram.GetAggregationTemporality())
		for _, dp := range d.ExponentialHistogram.GetDataPoints() {
			p := base
			p.Attrs = attrs(dp.GetAttributes())
			p.Start, p.Time = nanos(dp.GetStartTimeUnixNano()), nanos(dp.GetTimeUnixNano())
			p.Count = dp.GetCount()
			p.Sum, p.HasSum = dp.GetSum(), dp.Sum != nil
			p.Min, p.HasMin = dp.GetMin(), dp.Min != nil
			p.Max, p.HasMax = dp.GetMax(), dp.Max != nil
			out = append(out, p)
		}
	case *metricspb.Metric_Summary:
		base.Kind = "summary"
		for _, dp := range d.Summary.GetDataPoints() {
			p := base
			p.Attrs = attrs(dp.GetAttributes())
			p.Start, p.Time = nanos(dp.GetStartTimeUnixNano()), nanos(dp.GetTimeUnixNano())
			p.Count = dp.GetCount()
			p.Sum, p.HasSum = dp.GetSum(), true
			out = append(out, p)
		}
	}
	return out
}

// ReadLogs parses a file exporter JSON logs file.
func ReadLogs(path string) ([]LogRecord, error) {
	var out []LogRecord
	err := eachLine(path, func() proto.Message { return &logspb.LogsData{} }, func(m proto.Message) {
		for _, rl := range m.(*logspb.LogsData).GetResourceLogs() {
			res := resourceAttrs(rl.GetResource())
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					out = append(out, LogRecord{
						EventName:      lr.GetEventName(),
						SeverityText:   lr.GetSeverityText(),
						SeverityNumber: int32(lr.GetSeverityNumber()),
						Body:           anyString(lr.GetBody()),
						Attrs:          attrs(lr.GetAttributes()),
						Resource:       res,
						ScopeName:      sl.GetScope().GetName(),
						Time:           nanos(lr.GetTimeUnixNano()),
						ObservedTime:   nanos(lr.GetObservedTimeUnixNano()),
						TraceID:        idHex(lr.GetTraceId()),
						SpanID:         idHex(lr.GetSpanId()),
						Flags:          lr.GetFlags(),
					})
				}
			}
		}
	})
	return out, err
}

// ReadSpans parses a file exporter JSON traces file.
func ReadSpans(path string) ([]Span, error) {
	var out []Span
	err := eachLine(path, func() proto.Message { return &tracepb.TracesData{} }, func(m proto.Message) {
		for _, rs := range m.(*tracepb.TracesData).GetResourceSpans() {
			res := resourceAttrs(rs.GetResource())
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					s := Span{
						TraceID:       idHex(sp.GetTraceId()),
						SpanID:        idHex(sp.GetSpanId()),
						ParentSpanID:  idHex(sp.GetParentSpanId()),
						TraceState:    sp.GetTraceState(),
						Name:          sp.GetName(),
						Kind:          spanKind(sp.GetKind()),
						Start:         nanos(sp.GetStartTimeUnixNano()),
						End:           nanos(sp.GetEndTimeUnixNano()),
						StatusCode:    statusCode(sp.GetStatus().GetCode()),
						StatusMessage: sp.GetStatus().GetMessage(),
						Attrs:         attrs(sp.GetAttributes()),
						Resource:      res,
						ScopeName:     ss.GetScope().GetName(),
					}
					for _, ev := range sp.GetEvents() {
						s.Events = append(s.Events, SpanEvent{Name: ev.GetName(), Time: nanos(ev.GetTimeUnixNano()), Attrs: attrs(ev.GetAttributes())})
					}
					for _, l := range sp.GetLinks() {
						s.Links = append(s.Links, SpanLink{TraceID: idHex(l.GetTraceId()), SpanID: idHex(l.GetSpanId()), Attrs: attrs(l.GetAttributes())})
					}
					out = append(out, s)
				}
			}
		}
	})
	return out, err
}

// eachLine decodes every complete line of an OTLP/JSON file. A missing file
// means nothing was exported yet. A trailing line without its newline is
// still being written and is left for the next read.
func eachLine(path string, newMsg func() proto.Message, visit func(proto.Message)) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<30)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		fixed, err := hexIDsToBase64(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		m := newMsg()
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(fixed, m); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		visit(m)
	}
	return sc.Err()
}

// OTLP/JSON writes trace and span IDs as hex, but protojson reads bytes
// fields as base64 and would silently decode hex into garbage, so convert
// those fields first.
var idFields = map[string]bool{"traceId": true, "spanId": true, "parentSpanId": true}

func hexIDsToBase64(line []byte) ([]byte, error) {
	if !bytes.Contains(line, []byte(`Id"`)) {
		return line, nil
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber() // keep 64-bit integers exact
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if err := fixIDs(v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func fixIDs(v any) error {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if s, ok := val.(string); ok && idFields[k] {
				b, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %q is not hex: %w", k, s, err)
				}
				t[k] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			if err := fixIDs(val); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range t {
			if err := fixIDs(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func resourceAttrs(r *resourcepb.Resource) map[string]string { return attrs(r.GetAttributes()) }

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

// anyString renders an attribute value: strings as-is, ints in decimal,
// doubles in shortest form, bytes as base64, arrays and maps as JSON.
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case nil:
		return ""
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	default:
		b, _ := json.Marshal(anyNative(v))
		return string(b)
	}
}

func anyNative(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, anyNative(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = anyNative(kv.GetValue())
		}
		return out
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	default:
		return anyString(v)
	}
}

func nanos(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC()
}

func idHex(b []byte) string {
	if len(b) == 0 || bytes.Count(b, []byte{0}) == len(b) {
		return ""
	}
	return hex.EncodeToString(b)
}

func temporality(t metricspb.AggregationTemporality) string {
	switch t {
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE:
		return "cumulative"
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA:
		return "delta"
	default:
		return "unspecified"
	}
}

func spanKind(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	default:
		return "unspecified"
	}
}

func statusCode(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "ok"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "error"
	default:
		return "unset"
	}
}

func fmtAttrs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}
