package otlp

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc/credentials"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// Logs exports log records as OTLP through the SDK's LoggerProvider and
// batch processor.
//
// The batch processor drops the oldest record when its queue is full, and
// only says so to the global error handler. Logs never lets that happen:
// it counts the records it emitted and those the processor handed to the
// exporter, and while the difference (an upper bound of the queue's length)
// has reached the queue's size, ExportLog waits. The pipeline's own queue
// then fills and counts what it cannot hold, so every loss is counted in
// one place. Records of a failed export are counted here.
type Logs struct {
	name      string
	log       *slog.Logger
	provider  *sdklog.LoggerProvider
	logger    otellog.Logger
	queueSize int64

	emitted atomic.Int64 // records given to the SDK
	handed  atomic.Int64 // records the batch processor took out of its queue
	failed  atomic.Int64 // records of exports that failed
	// room is signalled whenever records leave the SDK's queue.
	room chan struct{}
}

var _ pipelines.LogExporter = (*Logs)(nil)

// NewLogs connects nothing yet (the SDK dials lazily); it fails only on
// settings that cannot work, such as unreadable TLS files.
func NewLogs(name string, cfg *config.OTLPExporter, res *resource.Resource, log *slog.Logger) (*Logs, error) {
	exp, err := newLogExporter(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", name, err)
	}
	q := cfg.LogQueueSize
	if q <= 0 {
		q = config.DefaultLogQueueSize
	}
	return newLogs(name, exp, q, res, log), nil
}

func newLogs(name string, exp sdklog.Exporter, queueSize int, res *resource.Resource, log *slog.Logger) *Logs {
	l := &Logs{name: name, log: log.With("exporter", name), queueSize: int64(queueSize), room: make(chan struct{}, 1)}
	bp := sdklog.NewBatchProcessor(&countingLogExporter{Exporter: exp, l: l},
		sdklog.WithMaxQueueSize(queueSize), sdklog.WithExportMaxBatchSize(min(512, queueSize)))
	// Sources give each attribute once: the SDK's per-record check for
	// duplicate keys (a map per record) is pure cost here.
	l.provider = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(bp), sdklog.WithAllowKeyDuplication())
	l.logger = l.provider.Logger(ScopeName)
	return l
}

func newLogExporter(ctx context.Context, cfg *config.OTLPExporter) (sdklog.Exporter, error) {
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
			path = "/v1/logs"
		}
		opts := []otlploghttp.Option{
			otlploghttp.WithEndpoint(ep.hostPort),
			otlploghttp.WithURLPath(path),
			otlploghttp.WithTimeout(cfg.Timeout),
		}
		if plain {
			opts = append(opts, otlploghttp.WithInsecure())
		} else {
			opts = append(opts, otlploghttp.WithTLSClientConfig(tlsCfg))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlploghttp.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == config.CompressionGzip {
			opts = append(opts, otlploghttp.WithCompression(otlploghttp.GzipCompression))
		} else {
			opts = append(opts, otlploghttp.WithCompression(otlploghttp.NoCompression))
		}
		return otlploghttp.New(ctx, opts...)
	case config.ProtocolGRPC, "":
		opts := []otlploggrpc.Option{
			otlploggrpc.WithEndpoint(ep.hostPort),
			otlploggrpc.WithTimeout(cfg.Timeout),
			otlploggrpc.WithDialOption(grpcDialOptions()...),
		}
		if plain {
			opts = append(opts, otlploggrpc.WithInsecure())
		} else {
			opts = append(opts, otlploggrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlploggrpc.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == config.CompressionGzip {
			opts = append(opts, otlploggrpc.WithCompressor("gzip"))
		}
		return otlploggrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("protocol %q is not one of grpc, http/protobuf", cfg.Protocol)
	}
}

func (l *Logs) Name() string { return l.name }

func (l *Logs) BeginLogs(string, pipelines.LogConsoleFormatter) error  { return nil }
func (l *Logs) FinishLogs(string, pipelines.LogConsoleFormatter) error { return nil }

// ExportLog hands the record to the SDK, first waiting while the SDK's
// queue may be full; it returns ctx's error if ctx ends the wait.
func (l *Logs) ExportLog(ctx context.Context, r *pipelines.LogRecord) error {
	for l.emitted.Load()-l.handed.Load() >= l.queueSize {
		select {
		case <-l.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var rec otellog.Record
	rec.SetEventName(r.EventName)
	rec.SetTimestamp(r.Time)
	rec.SetObservedTimestamp(r.ObservedTime)
	rec.SetSeverity(otellog.Severity(r.Severity))
	rec.SetSeverityText(r.Severity.String())
	rec.SetBody(attribute.StringValue(r.Body))
	rec.AddAttributes(r.Attrs...)
	l.emitted.Add(1)
	l.logger.Emit(ctx, rec)
	return nil
}

// Self reports records lost in failed exports.
func (l *Logs) Self() []pipelines.SelfPoint {
	return []pipelines.SelfPoint{{
		Name: "sockeye.agent.events.lost", Unit: "{event}", Description: "Events or packets lost anywhere on the way, by reason.",
		Kind:  pipelines.SelfCounter,
		Attrs: []attribute.KeyValue{attribute.String("sockeye.exporter", l.name), attribute.String("sockeye.reason", "export_failed")},
		Value: l.failed.Load(),
	}}
}

// Failed is how many records were in exports that failed.
func (l *Logs) Failed() int64 { return l.failed.Load() }

// Shutdown exports what is queued and closes the connection.
func (l *Logs) Shutdown(ctx context.Context) error {
	return l.provider.Shutdown(ctx)
}

// countingLogExporter counts the records the batch processor takes out of
// its queue, and those of failed exports.
type countingLogExporter struct {
	sdklog.Exporter
	l    *Logs
	last atomic.Int64 // unix seconds of the last warning, to warn at most every 30 s
}

func (c *countingLogExporter) Export(ctx context.Context, recs []sdklog.Record) error {
	c.l.handed.Add(int64(len(recs)))
	select {
	case c.l.room <- struct{}{}:
	default:
	}
	err := retryUnreachable(ctx, func() error { return c.Exporter.Export(ctx, recs) })
	if err != nil {
		c.l.failed.Add(int64(len(recs)))
		now := time.Now().Unix()
		if last := c.last.Load(); now-last >= 30 && c.last.CompareAndSwap(last, now) {
			c.l.log.Warn("logs export failed", "error", err, "records", len(recs), "failed_total", c.l.failed.Load())
		}
	}
	return err
}
