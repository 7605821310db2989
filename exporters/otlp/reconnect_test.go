package otlp

import (
	"context"
	"net"
	"testing"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/sockeye/sockeye/config"
)

type okLogs struct {
	collogspb.UnimplementedLogsServiceServer
}

func (okLogs) Export(context.Context, *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	return &collogspb.ExportLogsServiceResponse{}, nil
}

type okMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
}

func (okMetrics) Export(context.Context, *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// TestGRPCReconnectAfterOutage: once the collector is back, the gRPC
// exporters (logs, metrics, traces) reach it within the capped reconnection
// delay. With gRPC's default backoff, 12 s of refused connections put the
// next attempt 1.4 s or more after the collector's return (later the
// longer the outage: up to two minutes), and every export until then fails.
func TestGRPCReconnectAfterOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a 12 s outage")
	}
	saved := reconnectBackoff
	reconnectBackoff = backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond}
	t.Cleanup(func() { reconnectBackoff = saved })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the collector is down

	cfg := &config.OTLPExporter{Endpoint: addr, Protocol: config.ProtocolGRPC, Insecure: true, Timeout: 200 * time.Millisecond}
	ctx := context.Background()
	logs, err := newLogExporter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Shutdown(ctx)
	metrics, err := newMetricExporter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Shutdown(ctx)
	traces, err := newTraceClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := traces.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer traces.Stop(ctx)
	exports := map[string]func() error{
		"traces": func() error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return traces.UploadTraces(ctx, []*tracepb.ResourceSpans{{}})
		},
		"logs": func() error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return logs.Export(ctx, []sdklog.Record{{}})
		},
		"metrics": func() error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return metrics.Export(ctx, &metricdata.ResourceMetrics{})
		},
	}

	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); {
		for name, export := range exports {
			if export() == nil {
				t.Fatalf("%s: export succeeded with nothing listening", name)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the collector's port was taken meanwhile: %v", err)
	}
	srv := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(srv, okLogs{})
	colmetricspb.RegisterMetricsServiceServer(srv, okMetrics{})
	coltracepb.RegisterTraceServiceServer(srv, &sink{})
	go srv.Serve(ln)
	defer srv.Stop()
	back := time.Now()

	for name, export := range exports {
		for {
			err := export()
			if err == nil {
				t.Logf("%s: delivered %v after the collector came back", name, time.Since(back).Round(time.Millisecond))
				break
			}
			if time.Since(back) > time.Second {
				t.Fatalf("%s: still failing %v after the collector came back: %v", name, time.Since(back).Round(time.Millisecond), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
