package otlp

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/credentials"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Traces exports spans as OTLP. The spans come with their own times, and
// with their ids and parent (sources send a child before its parent), so
// no SDK span is made for them: they are encoded straight into OTLP
// protobuf (tracewire.go), batched (batcher.go) and uploaded with the
// SDK's OTLP client (gRPC or HTTP). The wire output is the trace SDK's for
// the same spans; spans without ids get random ones, as the SDK gives.
//
// Spans that describe another process (Span.Resource) are sent under the
// agent's resource merged with theirs, so that Jaeger lists each traced
// program as a service.
//
// The batcher waits when the exporter falls behind instead of dropping
// silently: the pipeline's queue then fills and counts what it cannot
// hold, so every loss is counted in one place.
type Traces struct {
	name   string
	log    *slog.Logger
	client otlptrace.Client
	b      *batcher

	spans    atomic.Int64 // spans taken
	exports  atomic.Int64
	failures atomic.Int64
	failed   atomic.Int64 // spans of failed exports
	lastWarn atomic.Int64
}

var _ pipelines.TraceExporter = (*Traces)(nil)

// NewTraces connects nothing yet (the client dials lazily); it fails only
// on settings that cannot work, such as unreadable TLS files. The batching
// honours OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_EXPORT_BATCH_SIZE and
// OTEL_BSP_EXPORT_TIMEOUT, and the span limits OTEL_SPAN_*.
func NewTraces(name string, cfg *config.OTLPExporter, res *resource.Resource, log *slog.Logger) (*Traces, error) {
	client, err := newTraceClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", name, err)
	}
	if err := client.Start(context.Background()); err != nil {
		return nil, fmt.Errorf("exporter %s: %w", name, err)
	}
	return newTraces(name, client, res, log), nil
}

// newTraces exports through a started client.
func newTraces(name string, client otlptrace.Client, res *resource.Resource, log *slog.Logger) *Traces {
	t := &Traces{name: name, log: log.With("exporter", name), client: client}
	t.b = newBatcher(newConverter(res), envInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048),
		time.Duration(envInt("OTEL_BSP_SCHEDULE_DELAY", 5000))*time.Millisecond,
		time.Duration(envInt("OTEL_BSP_EXPORT_TIMEOUT", 30000))*time.Millisecond,
		t.upload, func(n int) { t.failed.Add(int64(n)) })
	return t
}

// newTraceClient makes the SDK's OTLP trace client (gRPC or HTTP) for the
// exporter's settings; it connects nothing yet.
func newTraceClient(cfg *config.OTLPExporter) (otlptrace.Client, error) {
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
		return otlptracehttp.NewClient(opts...), nil
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
		return otlptracegrpc.NewClient(opts...), nil
	default:
		return nil, fmt.Errorf("protocol %q is not one of grpc, http/protobuf", cfg.Protocol)
	}
}

func (t *Traces) Name() string { return t.name }

func (t *Traces) BeginTraces(string, string, func() pipelines.TraceConsole) error { return nil }
func (t *Traces) FinishTraces(string, string) error                               { return nil }

// ExportSpans converts the spans into the batch being filled; it waits
// while maxInFlight full batches are queued for export.
// Spans that come after Shutdown, and spans protobuf cannot encode (a
// string that is not UTF-8), are counted as lost.
func (t *Traces) ExportSpans(_ context.Context, b *pipelines.SpanBatch) error {
	n := t.b.add(b.Spans)
	t.spans.Add(int64(n))
	if lost := len(b.Spans) - n; lost > 0 {
		t.failed.Add(int64(lost))
	}
	return nil
}

// upload sends one batch, trying again while the collector refuses the
// connection, and counts exports, failures and the spans they lose (the
// SDK would only hand failures to the global error handler).
func (t *Traces) upload(ctx context.Context, rs []*tracepb.ResourceSpans, n int) {
	t.exports.Add(1)
	err := retryUnreachable(ctx, func() error { return t.client.UploadTraces(ctx, rs) })
	if err != nil {
		t.failures.Add(1)
		t.failed.Add(int64(n))
		now := time.Now().Unix()
		if last := t.lastWarn.Load(); now-last >= 30 && t.lastWarn.CompareAndSwap(last, now) {
			t.log.Warn("traces export failed", "error", err, "failures", t.failures.Load(), "spans_lost", t.failed.Load())
		}
	}
}

// ForceFlush exports now what is batched, waiting at most until ctx ends.
func (t *Traces) ForceFlush(ctx context.Context) error { return t.b.ForceFlush(ctx) }

// Shutdown exports what is left and closes the connection, waiting at most
// until ctx ends.
func (t *Traces) Shutdown(ctx context.Context) error {
	return t.b.Shutdown(ctx, t.client.Stop)
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
