package otelcol

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
)

const waitTimeout = 20 * time.Second

func testResource(t *testing.T) *resource.Resource {
	return resource.NewSchemaless(
		attribute.String("service.name", "sockeye-testpeer"),
		attribute.String("test.name", t.Name()),
	)
}

// exportCounter records one counter and one histogram through exp and
// flushes them synchronously.
func exportCounter(t *testing.T, exp sdkmetric.Exporter) {
	t.Helper()
	ctx := context.Background()
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(testResource(t)),
		// A long interval: the explicit ForceFlush is the only export.
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
	)
	defer func() {
		if err := mp.Shutdown(ctx); err != nil {
			t.Errorf("meter provider shutdown: %v", err)
		}
	}()
	m := mp.Meter("testpeer.scope")
	c, err := m.Int64Counter("sockeye.test.requests", metric.WithUnit("{request}"), metric.WithDescription("test requests"))
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 5, metric.WithAttributes(attribute.String("route", "/a"), attribute.Int("code", 200)))
	c.Add(ctx, 2, metric.WithAttributes(attribute.String("route", "/a"), attribute.Int("code", 200)))
	h, err := m.Float64Histogram("sockeye.test.latency", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.1, 1))
	if err != nil {
		t.Fatal(err)
	}
	h.Record(ctx, 0.05)
	h.Record(ctx, 0.5)
	h.Record(ctx, 3)
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("export metrics: %v", err)
	}
}

func checkCounter(t *testing.T, col *Collector, temporality string) {
	t.Helper()
	p := col.WaitMetric(t, waitTimeout, func(p MetricPoint) bool { return p.Name == "sockeye.test.requests" })
	if p.Kind != "sum" || !p.Monotonic || p.Temporality != temporality {
		t.Errorf("kind=%s monotonic=%v temporality=%s, want sum/true/%s", p.Kind, p.Monotonic, p.Temporality, temporality)
	}
	if !p.IsInt || p.Int != 7 {
		t.Errorf("value = %v (int=%v), want int 7", p.Int, p.IsInt)
	}
	if p.Attrs["route"] != "/a" || p.Attrs["code"] != "200" || len(p.Attrs) != 2 {
		t.Errorf("attrs = %v", p.Attrs)
	}
	if p.Unit != "{request}" || p.Description != "test requests" || p.ScopeName != "testpeer.scope" {
		t.Errorf("unit=%q description=%q scope=%q", p.Unit, p.Description, p.ScopeName)
	}
	if p.Resource["service.name"] != "sockeye-testpeer" || p.Resource["test.name"] != t.Name() {
		t.Errorf("resource = %v", p.Resource)
	}
	if p.Time.IsZero() || p.Start.IsZero() || p.Time.Before(p.Start) || time.Since(p.Time) > time.Minute {
		t.Errorf("start=%v time=%v", p.Start, p.Time)
	}

	h := col.WaitMetric(t, waitTimeout, func(p MetricPoint) bool { return p.Name == "sockeye.test.latency" })
	if h.Kind != "histogram" || h.Temporality != temporality || h.Count != 3 || h.Sum != 3.55 {
		t.Errorf("histogram = %s, want count 3 sum 3.55 %s", h, temporality)
	}
	if len(h.ExplicitBounds) != 2 || len(h.BucketCounts) != 3 || h.BucketCounts[0] != 1 || h.BucketCounts[1] != 1 || h.BucketCounts[2] != 1 {
		t.Errorf("bounds=%v buckets=%v", h.ExplicitBounds, h.BucketCounts)
	}
	if !h.HasMin || h.Min != 0.05 || !h.HasMax || h.Max != 3 {
		t.Errorf("min=%v/%v max=%v/%v", h.Min, h.HasMin, h.Max, h.HasMax)
	}
}

func TestMetricsGRPC(t *testing.T) {
	t.Parallel()
	col := Start(t)
	exp, err := otlpmetricgrpc.New(context.Background(),
		otlpmetricgrpc.WithEndpoint(col.GRPCEndpoint), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	exportCounter(t, exp)
	checkCounter(t, col, "cumulative")
}

func TestMetricsHTTP(t *testing.T) {
	t.Parallel()
	col := Start(t)
	exp, err := otlpmetrichttp.New(context.Background(),
		otlpmetrichttp.WithEndpointURL(col.HTTPEndpoint+"/v1/metrics"),
		otlpmetrichttp.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality {
			return metricdata.DeltaTemporality
		}))
	if err != nil {
		t.Fatal(err)
	}
	exportCounter(t, exp)
	checkCounter(t, col, "delta")
}

func TestLogsGRPC(t *testing.T) {
	t.Parallel()
	col := Start(t)
	ctx := context.Background()
	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(col.GRPCEndpoint), otlploggrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(
		sdklog.WithResource(testResource(t)),
		sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)),
	)
	defer lp.Shutdown(ctx)

	now := time.Now()
	var rec otellog.Record
	rec.SetEventName("sockeye.test.event")
	rec.SetTimestamp(now)
	rec.SetSeverity(otellog.SeverityWarn)
	rec.SetSeverityText("WARN")
	rec.SetBody(attribute.StringValue("disk almost full"))
	rec.AddAttributes(attribute.String("mount", "/var"), attribute.Int64("free.bytes", 1<<40))
	lp.Logger("testpeer.logs").Emit(ctx, rec)
	if err := lp.ForceFlush(ctx); err != nil {
		t.Fatalf("export logs: %v", err)
	}

	r := col.WaitLog(t, waitTimeout, func(r LogRecord) bool { return r.EventName == "sockeye.test.event" })
	if r.Body != "disk almost full" || r.SeverityText != "WARN" || r.SeverityNumber != int32(otellog.SeverityWarn) {
		t.Errorf("record = %s", r)
	}
	if r.Attrs["mount"] != "/var" || r.Attrs["free.bytes"] != "1099511627776" {
		t.Errorf("attrs = %v", r.Attrs)
	}
	if !r.Time.Equal(now.Truncate(0)) || r.ObservedTime.IsZero() {
		t.Errorf("time=%v (want %v) observed=%v", r.Time, now, r.ObservedTime)
	}
	if r.ScopeName != "testpeer.logs" || r.Resource["service.name"] != "sockeye-testpeer" {
		t.Errorf("scope=%q resource=%v", r.ScopeName, r.Resource)
	}
}

func TestTracesGRPC(t *testing.T) {
	t.Parallel()
	col := Start(t)
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(col.GRPCEndpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(testResource(t)), sdktrace.WithSyncer(exp))
	defer tp.Shutdown(ctx)

	tr := tp.Tracer("testpeer.traces")
	ctx, parent := tr.Start(ctx, "parent", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Start(ctx, "child", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("peer", "db"), attribute.Int64("rows", 42)))
	child.AddEvent("retry", trace.WithAttributes(attribute.Int("attempt", 2)))
	child.SetStatus(codes.Error, "timeout")
	child.End()
	parent.End()

	got := col.WaitSpan(t, waitTimeout, func(s Span) bool { return s.Name == "child" })
	want := child.SpanContext()
	if got.TraceID != want.TraceID().String() || got.SpanID != want.SpanID().String() ||
		got.ParentSpanID != parent.SpanContext().SpanID().String() {
		t.Errorf("ids trace=%s span=%s parent=%s, want %s %s %s", got.TraceID, got.SpanID, got.ParentSpanID,
			want.TraceID(), want.SpanID(), parent.SpanContext().SpanID())
	}
	if got.Kind != "client" || got.StatusCode != "error" || got.StatusMessage != "timeout" {
		t.Errorf("span = %s message=%q", got, got.StatusMessage)
	}
	if got.Attrs["peer"] != "db" || got.Attrs["rows"] != "42" {
		t.Errorf("attrs = %v", got.Attrs)
	}
	if len(got.Events) != 1 || got.Events[0].Name != "retry" || got.Events[0].Attrs["attempt"] != "2" {
		t.Errorf("events = %+v", got.Events)
	}
	if got.Start.IsZero() || got.End.Before(got.Start) {
		t.Errorf("start=%v end=%v", got.Start, got.End)
	}
	root := col.WaitSpan(t, waitTimeout, func(s Span) bool { return s.Name == "parent" })
	if root.ParentSpanID != "" || root.Kind != "server" || root.StatusCode != "unset" {
		t.Errorf("parent = %s", root)
	}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	col := Start(t, WithTLS(pki.serverCert, pki.serverKey, pki.caFile))
	if col.HTTPEndpoint[:8] != "https://" {
		t.Fatalf("HTTPEndpoint = %q, want https", col.HTTPEndpoint)
	}

	exp, err := otlpmetricgrpc.New(context.Background(),
		otlpmetricgrpc.WithEndpoint(col.GRPCEndpoint),
		otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(pki.clientTLS(true))))
	if err != nil {
		t.Fatal(err)
	}
	exportCounter(t, exp)
	checkCounter(t, col, "cumulative")

	// Without a client certificate the receiver must refuse the request.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.clientTLS(false)}}
	resp, err := client.Post(col.HTTPEndpoint+"/v1/metrics", "application/json", bytes.NewReader([]byte(`{}`)))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("request without client certificate got %s, want a TLS error", resp.Status)
	}
	t.Logf("without client certificate: %v", err)
}

// TestKillAndRestart checks that a restarted collector listens on the same
// ports and keeps what the killed one wrote.
func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	col := Start(t)
	export := func() {
		exp, err := otlpmetricgrpc.New(context.Background(),
			otlpmetricgrpc.WithEndpoint(col.GRPCEndpoint), otlpmetricgrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		exportCounter(t, exp)
	}
	export()
	checkCounter(t, col, "cumulative")
	grpcEndpoint, httpEndpoint := col.GRPCEndpoint, col.HTTPEndpoint
	if err := col.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if exited, _ := col.Exited(); !exited {
		t.Fatal("collector still running after Kill")
	}
	if conn, err := net.DialTimeout("tcp", grpcEndpoint, time.Second); err == nil {
		conn.Close()
		t.Fatal("gRPC port still accepts connections after Kill")
	}
	col.Restart(t)
	if col.GRPCEndpoint != grpcEndpoint || col.HTTPEndpoint != httpEndpoint {
		t.Errorf("endpoints moved: %s %s, want %s %s", col.GRPCEndpoint, col.HTTPEndpoint, grpcEndpoint, httpEndpoint)
	}
	export()
	deadline := time.Now().Add(waitTimeout)
	for {
		points, err := col.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range points {
			if p.Name == "sockeye.test.requests" {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sockeye.test.requests points, want one from each run", n)
		}
		time.Sleep(pollInterval)
	}
}

func TestStartFailureShowsCollectorOutput(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		Start(ft, WithExtraConfig("receivers:\n  otlp:\n    protocols:\n      grpc:\n        bogus_option: 1\n"))
	}()
	if !ft.failed || !strings.Contains(ft.msg, "bogus_option") {
		t.Errorf("Start failure does not include the collector's complaint:\n%s", ft.msg)
	}
}

func TestWaitReportsWhatWasSeen(t *testing.T) {
	t.Parallel()
	col := Start(t)
	exp, err := otlpmetricgrpc.New(context.Background(),
		otlpmetricgrpc.WithEndpoint(col.GRPCEndpoint), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	exportCounter(t, exp)
	col.WaitMetric(t, waitTimeout, func(p MetricPoint) bool { return p.Name == "sockeye.test.requests" })

	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		col.WaitMetric(ft, 300*time.Millisecond, func(MetricPoint) bool { return false })
	}()
	if !ft.failed || !strings.Contains(ft.msg, "sockeye.test.requests") {
		t.Errorf("failure message does not name the metrics seen:\n%s", ft.msg)
	}
}

// fakeTB captures Fatalf so the failure path of Wait* can be checked.
type fakeTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}

func TestBuildIsCached(t *testing.T) {
	ctx := context.Background()
	a, err := Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	buildMu.Lock()
	builtPath = "" // force the on-disk cache lookup
	buildMu.Unlock()
	start := time.Now()
	b, err := Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("paths differ: %s vs %s", a, b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cached Build took %v", d)
	}
}

type testPKI struct {
	caFile, serverCert, serverKey string
	caPool                        *x509.CertPool
	client                        tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	sign := func(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	caKey := newKey()
	ca := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, caKey, nil, nil)
	srvKey := newKey()
	srv := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, srvKey, ca, caKey)
	cliKey := newKey()
	cli := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, cliKey, ca, caKey)

	p := &testPKI{caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.caFile = write("ca.pem", "CERTIFICATE", ca.Raw)
	p.serverCert = write("server.pem", "CERTIFICATE", srv.Raw)
	srvDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p.serverKey = write("server-key.pem", "EC PRIVATE KEY", srvDER)
	p.client = tls.Certificate{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey, Leaf: cli}
	return p
}

func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: p.caPool, MinVersion: tls.VersionTLS12}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.client}
	}
	return cfg
}
