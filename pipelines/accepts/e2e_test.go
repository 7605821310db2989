//go:build linux

package accepts

import (
	"fmt"
	"os"
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
// config driven by OTEL_* variables), and finds the child's accepts among
// the log records the collector wrote.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds the agent and a collector")
	}
	if label := os.Getenv("SOCKEYE_KERNEL_LABEL"); label != "" {
		// Guests have no Go toolchain to build the agent and collector;
		// `make test` runs this on the host.
		t.Skipf("end to end is not part of the kernel matrix (%s)", label)
	}
	testenv.RequireRoot(t)
	t.Run("grpc config file", func(t *testing.T) {
		col := otelcol.Start(t)
		cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  accepts:
exporters:
  console:
  otlp:
    endpoint: %s
    protocol: grpc
    insecure: true
    export_interval: 1s
pipelines:
  logs/accepts:
    sources: [accepts]
    exporters: [console, otlp]
`, col.GRPCEndpoint)), 0o644)
		a := agentbin.Start(t, nil, "run", "--config", cfg)
		checkAgent(t, a, col, "sockeye")
	})
	t.Run("http default config from OTEL env", func(t *testing.T) {
		col := otelcol.Start(t)
		a := agentbin.Start(t, []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.HTTPEndpoint,
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			"OTEL_METRIC_EXPORT_INTERVAL=1000",
			"OTEL_SERVICE_NAME=sockeye-e2e",
		}, "run")
		checkAgent(t, a, col, "sockeye-e2e")
	})
}

func checkAgent(t *testing.T, a *agentbin.Agent, col *otelcol.Collector, service string) {
	t.Helper()
	a.WaitLog(t, "source=accepts rung=", 30*time.Second)
	const n = 2
	s := startServer(t, serverOpts{network: "tcp4", addr: "127.0.0.1:0", count: n, comm: "sk-acc-e2e"})
	ports := dial(t, "tcp4", fmt.Sprintf("127.0.0.1:%d", s.port), n)
	s.wait(t)
	start := time.Now()
	pid := strconv.Itoa(s.pid)
	mine := func(r otelcol.LogRecord) bool { return r.EventName == EventAccept && r.Attrs["process.pid"] == pid }
	rec := col.WaitLog(t, 20*time.Second, mine)
	want := map[string]string{
		"process.pid": pid, "thread.id": strconv.Itoa(s.tid), "process.executable.name": "sk-acc-e2e", "process.user.id": "0",
		"network.transport": "tcp", "network.type": "ipv4",
		"server.address": "127.0.0.1", "server.port": strconv.Itoa(s.port), "client.address": "127.0.0.1",
	}
	for k, v := range want {
		if rec.Attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q (record %v)", k, rec.Attrs[k], v, rec)
		}
	}
	if rec.SeverityText != "INFO" || rec.SeverityNumber != 9 || rec.ScopeName != "github.com/sockeye/sockeye" {
		t.Errorf("severity %s(%d) scope %q", rec.SeverityText, rec.SeverityNumber, rec.ScopeName)
	}
	if !strings.HasPrefix(rec.Body, "sk-acc-e2e["+pid+"] accepted 127.0.0.1:") || !strings.HasSuffix(rec.Body, " on :"+strconv.Itoa(s.port)) {
		t.Errorf("body %q", rec.Body)
	}
	if d := start.Sub(rec.Time); d < 0 || d > 10*time.Second || rec.ObservedTime.Before(rec.Time) {
		t.Errorf("time %s observed %s, accepted just before %s", rec.Time, rec.ObservedTime, start)
	}
	if rec.Resource["service.name"] != service || rec.Resource["host.name"] == "" {
		t.Errorf("resource %v", rec.Resource)
	}
	// Every accept exactly once.
	logs, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range logs {
		if mine(r) {
			seen[r.Attrs["client.port"]]++
		}
	}
	for _, p := range ports {
		if seen[strconv.Itoa(p)] != 1 {
			t.Errorf("client port %d: %d records, want 1 (%v)", p, seen[strconv.Itoa(p)], seen)
		}
	}
	// The pipeline's own counters ride on the metrics side.
	col.WaitMetric(t, 20*time.Second, func(p otelcol.MetricPoint) bool {
		return p.Name == "sockeye.agent.events.read" && p.Attrs["sockeye.source"] == "accepts" && p.Int >= n
	})
	col.WaitMetric(t, 10*time.Second, func(p otelcol.MetricPoint) bool {
		return p.Name == "sockeye.agent.events.lost" && p.Attrs["sockeye.reason"] == "queue_full" && p.Attrs["sockeye.exporter"] == "otlp"
	})
	if code := a.Stop(t, syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGINT", code)
	}
	row := fmt.Sprintf("%6d %16s %6d %6d %16s\n", 0, "sk-acc-e2e", s.pid, s.port, "127.0.0.1")
	if !strings.Contains(a.Stdout(), Header) || strings.Count(a.Stdout(), row) != n {
		t.Errorf("console lacks the header or %d rows %q:\n%s", n, row, a.Stdout())
	}
	if !strings.Contains(a.Stderr(), "sockeye stopped") {
		t.Errorf("no clean stop in the log:\n%s", a.Stderr())
	}
}
