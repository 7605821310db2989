package otlp

import (
	"container/list"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Traces exports spans as OTLP through the trace SDK: each span is started
// and ended with the kernel's timestamps (trace.WithTimestamp) under an
// explicit parent context, and the SDK's batch processor ships them.
//
// Spans that name their own ids (sources that send a child before its
// parent) keep them through an IDGenerator that reads them from the
// context. Spans that describe another process (Span.Resource) go through
// a TracerProvider whose resource is the agent's merged with theirs, so
// that Jaeger lists each traced program as a service; those providers share
// one batch processor and are kept in a small LRU.
//
// Ended spans go through sockeye's batcher (batcher.go), which waits when
// the exporter falls behind instead of dropping silently: the pipeline's
// queue then fills and counts what it cannot hold, so every loss is
// counted in one place.
type Traces struct {
	name string
	log  *slog.Logger
	base *resource.Resource
	bsp  sdktrace.SpanProcessor
	ids  idGenerator

	agent *sdktrace.TracerProvider
	// tracers are per-resource providers' tracers, most recently used first.
	mu      sync.Mutex
	tracers map[string]*list.Element
	lru     *list.List
	// last is the tracer of the previous span's resource slice: sources
	// reuse one slice per process, so runs of spans skip the lookup.
	lastAttrs  *attribute.KeyValue
	lastTracer trace.Tracer

	spans    atomic.Int64 // spans ended
	exports  atomic.Int64
	failures atomic.Int64
	failed   atomic.Int64 // spans of failed exports
	lastWarn atomic.Int64
}

var _ pipelines.TraceExporter = (*Traces)(nil)

// maxProviders bounds the per-process TracerProviders kept.
const maxProviders = 256

type tracerEntry struct {
	key    string
	tracer trace.Tracer
}

// NewTraces connects nothing yet (the SDK dials lazily); it fails only on
// settings that cannot work, such as unreadable TLS files. The batching
// honours OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_EXPORT_BATCH_SIZE and
// OTEL_BSP_EXPORT_TIMEOUT.
func NewTraces(name string, cfg *config.OTLPExporter, res *resource.Resource, log *slog.Logger) (*Traces, error) {
	exp, err := newTraceExporter(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", name, err)
	}
	return newTraces(name, exp, res, log), nil
}

func newTraces(name string, exp sdktrace.SpanExporter, res *resource.Resource, log *slog.Logger) *Traces {
	t := &Traces{name: name, log: log.With("exporter", name), base: res, tracers: map[string]*list.Element{}, lru: list.New()}
	t.bsp = newBatcher(&countingSpanExporter{SpanExporter: exp, t: t}, envInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048),
		time.Duration(envInt("OTEL_BSP_SCHEDULE_DELAY", 5000))*time.Millisecond,
		time.Duration(envInt("OTEL_BSP_EXPORT_TIMEOUT", 30000))*time.Millisecond)
	t.agent = t.provider(res)
	return t
}

func (t *Traces) provider(res *resource.Resource) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(t.bsp),
		sdktrace.WithIDGenerator(t.ids),
		// Sampling happened at the source (in the kernel): keep every span.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
	)
}

func newTraceExporter(ctx context.Context, cfg *config.OTLPExporter) (sdktrace.SpanExporter, error) {
	ep, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	plain := insecure(cfg, ep)
	var tlsCfg *tls.Config
	if !plain {
		if tlsCfg, err = tlsConfig(cfg.TLS); err != nil {
			return nil, err
		}
	}
	switch cfg.Protocol {
	case config.ProtocolHTTPProtobuf:
		path := ep.path
		if path == "" || path == "/" {
			path = "/v1/traces"
		}
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(ep.hostPort),
			otlptracehttp.WithURLPath(path),
			otlptracehttp.WithTimeout(cfg.Timeout),
		}
		if plain {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsCfg))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == config.CompressionGzip {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		} else {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
		}
		return newWireExporter(ctx, otlptracehttp.NewClient(opts...))
	case config.ProtocolGRPC, "":
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(ep.hostPort),
			otlptracegrpc.WithTimeout(cfg.Timeout),
			otlptracegrpc.WithDialOption(grpcDialOptions()...),
			// The size check marshals every request twice; batches of
			// socket-call spans stay far below any receiver's limit.
			otlptracegrpc.WithMaxRequestSize(0),
		}
		if plain {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == config.CompressionGzip {
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		return newWireExporter(ctx, otlptracegrpc.NewClient(opts...))
	default:
		return nil, fmt.Errorf("protocol %q is not one of grpc, http/protobuf", cfg.Protocol)
	}
}

func (t *Traces) Name() string { return t.name }

func (t *Traces) BeginTraces(string, string, func() pipelines.TraceConsole) error { return nil }
func (t *Traces) FinishTraces(string, string) error                               { return nil }

// tracer returns the tracer for spans about the given resource attributes.
func (t *Traces) tracer(attrs []attribute.KeyValue) trace.Tracer {
	if len(attrs) == 0 {
		return t.agent.Tracer(ScopeName)
	}
	t.mu.Lock()
	if t.lastAttrs == &attrs[0] {
		tr := t.lastTracer
		t.mu.Unlock()
		return tr
	}
	t.mu.Unlock()
	var b strings.Builder
	for _, kv := range attrs {
		b.WriteString(string(kv.Key))
		b.WriteByte('=')
		b.WriteString(kv.Value.Emit())
		b.WriteByte(0)
	}
	key := b.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.tracers[key]; ok {
		t.lru.MoveToFront(e)
		t.lastAttrs, t.lastTracer = &attrs[0], e.Value.(*tracerEntry).tracer
		return t.lastTracer
	}
	res, err := resource.Merge(t.base, resource.NewSchemaless(attrs...))
	if err != nil {
		res = t.base
	}
	// Providers that fall out of the LRU are not shut down: they share the
	// batch processor, which Shutdown closes once.
	tr := t.provider(res).Tracer(ScopeName)
	t.tracers[key] = t.lru.PushFront(&tracerEntry{key: key, tracer: tr})
	if t.lru.Len() > maxProviders {
		old := t.lru.Back()
		t.lru.Remove(old)
		delete(t.tracers, old.Value.(*tracerEntry).key)
	}
	t.lastAttrs, t.lastTracer = &attrs[0], tr
	return tr
}

// ExportSpans hands every span to the SDK with its own times, ids and parent.
func (t *Traces) ExportSpans(_ context.Context, b *pipelines.SpanBatch) error {
	for i := range b.Spans {
		t.export(&b.Spans[i])
	}
	return nil
}

func (t *Traces) export(s *pipelines.Span) {
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
	_, span := t.tracer(s.Resource).Start(ctx, s.Name,
		trace.WithTimestamp(s.Start), trace.WithSpanKind(kind), trace.WithAttributes(s.Attrs...))
	for _, ev := range s.Events {
		span.AddEvent(ev.Name, trace.WithTimestamp(ev.Time), trace.WithAttributes(ev.Attrs...))
	}
	if s.Error {
		span.SetStatus(codes.Error, s.StatusMessage)
	}
	span.End(trace.WithTimestamp(s.End))
	t.spans.Add(1)
}

// ForceFlush exports now what the batch processor holds.
func (t *Traces) ForceFlush(ctx context.Context) error { return t.bsp.ForceFlush(ctx) }

// Shutdown exports what is left and closes the connection.
func (t *Traces) Shutdown(ctx context.Context) error {
	return t.bsp.Shutdown(ctx)
}

// Self reports the exporter's own health.
func (t *Traces) Self() []pipelines.SelfPoint {
	exp := attribute.String("sockeye.exporter", t.name)
	return []pipelines.SelfPoint{
		{Name: "sockeye.agent.export.failures", Unit: "{export}", Description: "Exports that failed (data not delivered).",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{exp}, Value: t.failures.Load()},
		{Name: "sockeye.agent.export.count", Unit: "{export}", Description: "Exports attempted.",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{exp}, Value: t.exports.Load()},
		{Name: "sockeye.agent.spans.dropped", Unit: "{span}", Description: "Spans dropped on the way, by reason.",
			Kind: pipelines.SelfCounter, Attrs: []attribute.KeyValue{exp, attribute.String("sockeye.reason", "export_failed")}, Value: t.failed.Load()},
	}
}

// envInt reads a positive integer variable of the batch span processor's
// (OTEL_BSP_*), or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(strings.TrimSpace(os.Getenv(name))); err == nil && v > 0 {
		return v
	}
	return def
}

// presetIDs carries a span's own ids to the IDGenerator through the context.
type presetIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// idGenerator uses the ids a span brings, or random ones.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if p, ok := ctx.Value(presetIDs{}).(presetIDs); ok {
		return p.trace, p.span
	}
	var tid trace.TraceID
	var sid trace.SpanID
	for !tid.IsValid() {
		putUint64(tid[:8], rand.Uint64())
		putUint64(tid[8:], rand.Uint64())
	}
	for !sid.IsValid() {
		putUint64(sid[:], rand.Uint64())
	}
	return tid, sid
}

func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if p, ok := ctx.Value(presetIDs{}).(presetIDs); ok {
		return p.span
	}
	var sid trace.SpanID
	for !sid.IsValid() {
		putUint64(sid[:], rand.Uint64())
	}
	return sid
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// countingSpanExporter counts exports and their failures: the SDK would
// only hand them to the global error handler.
type countingSpanExporter struct {
	sdktrace.SpanExporter
	t *Traces
}

func (c *countingSpanExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	c.t.exports.Add(1)
	err := retryUnreachable(ctx, func() error { return c.SpanExporter.ExportSpans(ctx, spans) })
	if err != nil {
		c.t.failures.Add(1)
		c.t.failed.Add(int64(len(spans)))
		now := time.Now().Unix()
		if last := c.t.lastWarn.Load(); now-last >= 30 && c.t.lastWarn.CompareAndSwap(last, now) {
			c.t.log.Warn("traces export failed", "error", err, "failures", c.t.failures.Load(), "spans_lost", c.t.failed.Load())
		}
	}
	return err
}
