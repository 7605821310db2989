package otlp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc/credentials"

	"github.com/sockeye/sockeye/config"
	"github.com/sockeye/sockeye/pipelines"
)

// ScopeName is the instrumentation scope of every metric sockeye exports.
const ScopeName = "github.com/sockeye/sockeye"

// Metrics exports metric batches as OTLP. Rows carry deltas; the exporter
// keeps each series' running total and reports it through observable
// counters, so a counter survives the exit of the process it was first
// seen with, and the SDK turns totals into deltas when delta is asked for.
type Metrics struct {
	name     string
	log      *slog.Logger
	provider *sdkmetric.MeterProvider
	meter    metric.Meter

	mu          sync.Mutex
	instruments map[string]*instrument
	// finals counts the series marked final, so exports skip the search
	// for delivered ones when there are none.
	finals int

	failures atomic.Int64
	exports  atomic.Int64
}

type instrument struct {
	gauge  bool
	series map[attribute.Distinct]*series
}

type series struct {
	attrs attribute.Set
	value int64
	// final series are forgotten once an export that observed them
	// succeeded: forgetting them at the first observation would lose their
	// last total when that export fails (a collector outage).
	final bool
	// observed: a collection saw the series as it is now.
	observed bool
}

// NewMetrics connects nothing yet (the SDK dials lazily); it fails only on
// settings that cannot work, such as unreadable TLS files.
func NewMetrics(name string, cfg *config.OTLPExporter, res *resource.Resource, interval time.Duration, log *slog.Logger) (*Metrics, error) {
	exp, err := newMetricExporter(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("exporter %s: %w", name, err)
	}
	if cfg.ExportInterval > 0 {
		interval = cfg.ExportInterval
	}
	return newMetrics(name, exp, res, interval, cfg.Timeout, cfg.CardinalityLimit, log)
}

func newMetrics(name string, exp sdkmetric.Exporter, res *resource.Resource, interval, timeout time.Duration, limit int, log *slog.Logger) (*Metrics, error) {
	m := &Metrics{name: name, log: log.With("exporter", name), instruments: map[string]*instrument{}}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	opts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(&countingExporter{Exporter: exp, m: m},
			sdkmetric.WithInterval(interval), sdkmetric.WithTimeout(timeout))),
	}
	if limit > 0 {
		opts = append(opts, sdkmetric.WithCardinalityLimit(limit))
	}
	m.provider = sdkmetric.NewMeterProvider(opts...)
	m.meter = m.provider.Meter(ScopeName)
	if err := m.selfInstruments(); err != nil {
		return nil, err
	}
	return m, nil
}

// ForceFlush exports now what has been accumulated.
func (m *Metrics) ForceFlush(ctx context.Context) error { return m.provider.ForceFlush(ctx) }

func temporality(pref string) sdkmetric.TemporalitySelector {
	if pref != "delta" {
		return sdkmetric.DefaultTemporalitySelector
	}
	return func(k sdkmetric.InstrumentKind) metricdata.Temporality {
		switch k {
		case sdkmetric.InstrumentKindCounter, sdkmetric.InstrumentKindObservableCounter, sdkmetric.InstrumentKindHistogram:
			return metricdata.DeltaTemporality
		}
		return metricdata.CumulativeTemporality
	}
}

func newMetricExporter(ctx context.Context, cfg *config.OTLPExporter) (sdkmetric.Exporter, error) {
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
	case "http/protobuf":
		opts := []otlpmetrichttp.Option{
			otlpmetrichttp.WithEndpoint(ep.hostPort),
			otlpmetrichttp.WithTimeout(cfg.Timeout),
			otlpmetrichttp.WithTemporalitySelector(temporality(cfg.Temporality)),
		}
		path := ep.path
		if path == "" || path == "/" {
			path = "/v1/metrics"
		}
		opts = append(opts, otlpmetrichttp.WithURLPath(path))
		if plain {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		} else {
			opts = append(opts, otlpmetrichttp.WithTLSClientConfig(tlsCfg))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlpmetrichttp.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == "gzip" {
			opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
		} else {
			opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.NoCompression))
		}
		return otlpmetrichttp.New(ctx, opts...)
	case "grpc", "":
		opts := []otlpmetricgrpc.Option{
			otlpmetricgrpc.WithEndpoint(ep.hostPort),
			otlpmetricgrpc.WithTimeout(cfg.Timeout),
			otlpmetricgrpc.WithDialOption(grpcDialOptions()...),
			otlpmetricgrpc.WithTemporalitySelector(temporality(cfg.Temporality)),
		}
		if plain {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		} else {
			opts = append(opts, otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlpmetricgrpc.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == "gzip" {
			opts = append(opts, otlpmetricgrpc.WithCompressor("gzip"))
		}
		return otlpmetricgrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("protocol %q is not one of grpc, http/protobuf", cfg.Protocol)
	}
}

func (m *Metrics) Name() string { return m.name }

func (m *Metrics) Begin(string, pipelines.ConsoleFormatter) error  { return nil }
func (m *Metrics) Finish(string, pipelines.ConsoleFormatter) error { return nil }

// ExportMetrics adds the batch's deltas to the running totals; the SDK's
// periodic reader ships them.
func (m *Metrics) ExportMetrics(_ context.Context, b *pipelines.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, def := range b.Metrics {
		inst, err := m.instrument(def.Name, def.Unit, def.Description, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range b.Rows {
			if def.Column >= len(r.Values) {
				continue
			}
			s := inst.get(append(append([]attribute.KeyValue(nil), r.Attrs...), def.Attrs...))
			s.value += r.Values[def.Column]
			switch {
			case r.Final && !s.final:
				m.finals++
			case !r.Final && s.final:
				m.finals--
			}
			s.final, s.observed = r.Final, false
		}
	}
	for _, p := range b.Self {
		inst, err := m.instrument(p.Name, p.Unit, p.Description, p.Kind == pipelines.SelfGauge)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Self points are already totals (or current values).
		inst.get(p.Attrs).value = p.Value
	}
	return errors.Join(errs...)
}

func (inst *instrument) get(attrs []attribute.KeyValue) *series {
	set := attribute.NewSet(attrs...)
	s, ok := inst.series[set.Equivalent()]
	if !ok {
		s = &series{attrs: set}
		inst.series[set.Equivalent()] = s
	}
	return s
}

// instrument returns the observable instrument for name, creating it on
// first use. Called with m.mu held.
func (m *Metrics) instrument(name, unit, desc string, gauge bool) (*instrument, error) {
	if inst, ok := m.instruments[name]; ok {
		return inst, nil
	}
	inst := &instrument{gauge: gauge, series: map[attribute.Distinct]*series{}}
	cb := func(_ context.Context, o metric.Int64Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range inst.series {
			o.Observe(s.value, metric.WithAttributeSet(s.attrs))
			s.observed = true
		}
		return nil
	}
	var err error
	if gauge {
		_, err = m.meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc), metric.WithInt64Callback(cb))
	} else {
		_, err = m.meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc), metric.WithInt64Callback(cb))
	}
	if err != nil {
		return nil, fmt.Errorf("instrument %s: %w", name, err)
	}
	m.instruments[name] = inst
	return inst, nil
}

// selfInstruments reports the exporter's own health.
func (m *Metrics) selfInstruments() error {
	exporter := attribute.String("sockeye.exporter", m.name)
	_, err := m.meter.Int64ObservableCounter("sockeye.agent.export.failures",
		metric.WithUnit("{export}"), metric.WithDescription("Exports that failed (data not delivered)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(m.failures.Load(), metric.WithAttributes(exporter))
			return nil
		}))
	if err != nil {
		return err
	}
	_, err = m.meter.Int64ObservableCounter("sockeye.agent.export.count",
		metric.WithUnit("{export}"), metric.WithDescription("Exports attempted."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(m.exports.Load(), metric.WithAttributes(exporter))
			return nil
		}))
	return err
}

// forgetDelivered drops the final series the export that just succeeded
// carried. Collections run one at a time (the periodic reader's loop, then
// its last one at shutdown), so a series observed and unchanged since was
// in that export.
func (m *Metrics) forgetDelivered() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finals == 0 {
		return
	}
	for _, inst := range m.instruments {
		for k, s := range inst.series {
			if s.final && s.observed {
				delete(inst.series, k)
				m.finals--
			}
		}
	}
}

// Failures is how many exports failed so far.
func (m *Metrics) Failures() int64 { return m.failures.Load() }

// Shutdown exports what is left and closes the connection.
func (m *Metrics) Shutdown(ctx context.Context) error {
	return m.provider.Shutdown(ctx)
}

// countingExporter counts failed exports: the SDK would only hand them to
// the global error handler.
type countingExporter struct {
	sdkmetric.Exporter
	m    *Metrics
	last atomic.Int64 // unix seconds of the last warning, to warn at most every 30 s
}

func (c *countingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	c.m.exports.Add(1)
	err := c.Exporter.Export(ctx, rm)
	if err == nil {
		c.m.forgetDelivered()
	} else {
		c.m.failures.Add(1)
		now := time.Now().Unix()
		if last := c.last.Load(); now-last >= 30 && c.last.CompareAndSwap(last, now) {
			c.m.log.Warn("metrics export failed", "error", err, "failures", c.m.failures.Load())
		}
	}
	return err
}
