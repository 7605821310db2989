//go:build linux

package traffic

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
	"github.com/sockeye/sockeye/internal/testpeer/otelcol"
)

// TestEndToEnd runs the built sockeye binary against a real OpenTelemetry
// Collector, over gRPC (config file) and over HTTP (the embedded default
// config driven by OTEL_* variables), and finds the child's traffic in what
// the collector wrote.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds the agent and a collector")
	}
	testenv.RequireRoot(t)
	t.Run("grpc config file", func(t *testing.T) {
		col := otelcol.Start(t)
		cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  traffic:
exporters:
  console:
  otlp:
    endpoint: %s
    protocol: grpc
    insecure: true
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [console, otlp]
    interval: 1s
`, col.GRPCEndpoint)), 0o644)
		a := agentbin.Start(t, nil, "run", "--config", cfg)
		checkAgent(t, a, col, "cumulative")
	})
	t.Run("http default config from OTEL env", func(t *testing.T) {
		col := otelcol.Start(t)
		a := agentbin.Start(t, []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.HTTPEndpoint,
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			"OTEL_METRIC_EXPORT_INTERVAL=1000",
			"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta",
			"OTEL_SERVICE_NAME=sockeye-e2e",
			"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=test",
		})
		checkAgent(t, a, col, "delta")
	})
}

func checkAgent(t *testing.T, a *agentbin.Agent, col *otelcol.Collector, temporality string) {
	t.Helper()
	a.WaitLog(t, "pipeline started", 30*time.Second)
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-")
	cmd.Env = append(os.Environ(), "SOCKEYE_TRAFFIC_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	match := func(name, dir string) func(otelcol.MetricPoint) bool {
		return func(p otelcol.MetricPoint) bool {
			return p.Name == name && p.Attrs["process.pid"] == pid &&
				p.Attrs["network.interface.name"] == "lo" && p.Attrs["network.io.direction"] == dir
		}
	}
	for _, dir := range []string{"transmit", "receive"} {
		io := col.WaitMetric(t, 20*time.Second, match(MetricIO, dir))
		if io.Int != nPackets*frameBytes || io.Unit != "By" || !io.Monotonic || io.Temporality != temporality {
			t.Errorf("%s %s: %v (want %d By, monotonic, %s)", MetricIO, dir, io, nPackets*frameBytes, temporality)
		}
		if io.Attrs["process.executable.name"] != childComm || io.Attrs["process.user.id"] != strconv.Itoa(os.Getuid()) {
			t.Errorf("%s attributes: %v", MetricIO, io.Attrs)
		}
		pk := col.WaitMetric(t, 10*time.Second, match(MetricPackets, dir))
		if pk.Int != nPackets || pk.Unit != "{packet}" {
			t.Errorf("%s %s: %v (want %d {packet})", MetricPackets, dir, pk, nPackets)
		}
		for _, k := range []string{"service.name", "service.version", "host.name", "os.type"} {
			if io.Resource[k] == "" {
				t.Errorf("resource attribute %s missing: %v", k, io.Resource)
			}
		}
		if temporality == "delta" && (io.Resource["service.name"] != "sockeye-e2e" || io.Resource["deployment.environment.name"] != "test") {
			t.Errorf("OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES not applied: %v", io.Resource)
		}
	}
	col.WaitMetric(t, 10*time.Second, func(p otelcol.MetricPoint) bool {
		return p.Name == "sockeye.agent.map.entries" && p.Attrs["sockeye.source"] == "traffic" && p.Int > 0
	})
	if code := a.Stop(t, syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGINT", code)
	}
	if !strings.Contains(a.Stdout(), "  PID   UID DEV     XMIT_PK RECV_PK XMIT_KB RECV_KB COMMAND") ||
		!strings.Contains(a.Stdout(), childComm) {
		t.Errorf("console table lacks the header or the child's row:\n%s", a.Stdout())
	}
	if !strings.Contains(a.Stderr(), "sockeye stopped") {
		t.Errorf("no clean stop in the log:\n%s", a.Stderr())
	}
}
