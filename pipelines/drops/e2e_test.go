//go:build linux

package drops

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
	"github.com/sockeye/sockeye/internal/testpeer/otelcol"
)

// TestEndToEnd runs the built sockeye binary against a real OpenTelemetry
// Collector, over gRPC (a config file with every drops key) and over HTTP
// (the embedded default config, which runs drops beside traffic), and
// finds this test's UDP drops in what the collector wrote.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds the agent and a collector")
	}
	if label := os.Getenv("SOCKEYE_KERNEL_LABEL"); label != "" {
		// The kernel matrix runs test binaries without a Go toolchain to
		// build the agent and the collector; go test runs this.
		t.Skipf("end to end: not run by the kernel matrix (%s)", label)
	}
	testenv.RequireRoot(t)
	t.Run("grpc config file", func(t *testing.T) {
		col := otelcol.Start(t)
		cfg := filepath.Join(t.TempDir(), "sockeye.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  drops:
    interface: true
    console_reason: true
    max_entries: 2048
exporters:
  console:
  otlp:
    endpoint: %s
    protocol: grpc
    insecure: true
pipelines:
  metrics/drops:
    sources: [drops]
    exporters: [console, otlp]
    interval: 1s
`, col.GRPCEndpoint)), 0o644)
		a := agentbin.Start(t, nil, "run", "--config", cfg)
		a.WaitLog(t, "pipeline started", 30*time.Second)
		sendUDP(t, net.IPv4(127, 0, 0, 1), closedPort(t, "udp4"), nDrops, "")

		p := col.WaitMetric(t, 30*time.Second, func(p otelcol.MetricPoint) bool {
			return p.Name == MetricDropped && p.Attrs["sockeye.drop.location"] == "__udp4_lib_rcv" &&
				p.Attrs["network.interface.name"] == "lo" && p.Int >= nDrops
		})
		want := map[string]string{"sockeye.drop.reason": "NO_SOCKET", "network.transport": "udp", "network.type": "ipv4"}
		if !NewReasons(kernel(t).Types).Has() {
			want["sockeye.drop.reason"] = ReasonUnknown
		}
		for k, v := range want {
			if p.Attrs[k] != v {
				t.Errorf("%s = %q, want %q (point %v)", k, p.Attrs[k], v, p)
			}
		}
		if p.Unit != "{packet}" || !p.Monotonic || p.Temporality != "cumulative" || p.Kind != "sum" {
			t.Errorf("%s: %v (want a monotonic cumulative sum in {packet})", MetricDropped, p)
		}
		col.WaitMetric(t, 10*time.Second, func(p otelcol.MetricPoint) bool {
			return p.Name == "sockeye.agent.map.capacity" && p.Attrs["sockeye.source"] == "drops" &&
				p.Attrs["sockeye.map"] == "drops" && p.Int == 2048
		})
		if code := a.Stop(t, syscall.SIGINT, 15*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGINT", code)
		}
		out := a.Stdout()
		if !strings.HasPrefix(out, "Monitoring for dropped packets\n\n") ||
			!strings.HasSuffix(out, "\nStopping dropped packet monitor\n") ||
			!strings.Contains(out, " packets dropped at __udp4_lib_rcv ("+want["sockeye.drop.reason"]+")\n") {
			t.Errorf("console is not dropwatch's:\n%s", out)
		}
	})
	t.Run("http default config from OTEL env", func(t *testing.T) {
		col := otelcol.Start(t)
		a := agentbin.Start(t, []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.HTTPEndpoint,
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			"OTEL_METRIC_EXPORT_INTERVAL=1000",
			"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta",
		})
		a.WaitLog(t, "pipeline=metrics/drops source=drops", 30*time.Second)
		sendUDP(t, net.IPv4(127, 0, 0, 1), closedPort(t, "udp4"), nDrops, "")
		// Delta points: the drops may span exports; add them up.
		deadline := time.Now().Add(30 * time.Second)
		var total int64
		for time.Now().Before(deadline) {
			pts, _ := col.Metrics()
			total = 0
			for _, p := range pts {
				if p.Name == MetricDropped && p.Attrs["sockeye.drop.location"] == "__udp4_lib_rcv" && p.Attrs["network.transport"] == "udp" {
					if p.Temporality != "delta" {
						t.Fatalf("temporality %q, want delta", p.Temporality)
					}
					if _, ok := p.Attrs["network.interface.name"]; ok {
						t.Fatalf("interface is off by default, but the point has one: %v", p)
					}
					total += p.Int
				}
			}
			if total >= nDrops {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if total < nDrops {
			t.Errorf("%d drops at __udp4_lib_rcv exported, want at least %d", total, nDrops)
		}
		// The traffic pipeline runs beside it.
		col.WaitMetric(t, 20*time.Second, func(p otelcol.MetricPoint) bool { return p.Name == "process.network.io" })
		if code := a.Stop(t, syscall.SIGINT, 15*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGINT", code)
		}
		out := a.Stdout()
		for _, s := range []string{"Monitoring for dropped packets\n", " packets dropped at __udp4_lib_rcv\n",
			"  PID   UID DEV     XMIT_PK RECV_PK XMIT_KB RECV_KB COMMAND\n", "Stopping dropped packet monitor\n"} {
			if !strings.Contains(out, s) {
				t.Errorf("console lacks %q:\n%s", s, out)
			}
		}
	})
}
