//go:build linux

package reliability

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockeye/sockeye/internal/testenv"
	"github.com/sockeye/sockeye/internal/testpeer/agentbin"
	"github.com/sockeye/sockeye/internal/testpeer/otelcol"
)

// TestTLSToCollector runs the agent binary against a collector whose OTLP
// receivers serve TLS and require a client certificate signed by a
// throwaway CA: configured by the OTEL_* variables alone and by the file's
// tls keys, over gRPC and HTTP; then without a client certificate (the
// export fails, is logged and counted, the agent keeps running), and with
// a CA file that does not exist (the agent refuses to start).
func TestTLSToCollector(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds the agent and a collector")
	}
	testenv.RequireRoot(t)
	p := newPKI(t)
	col := otelcol.Start(t, otelcol.WithTLS(p.serverCert, p.serverKey, p.caFile))
	grpcPort := strings.TrimPrefix(col.GRPCEndpoint, "127.0.0.1:")
	child := startTrafficChild(t)
	srv := startAcceptServer(t)

	tlsEnv := []string{
		"OTEL_EXPORTER_OTLP_CERTIFICATE=" + p.caFile,
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=" + p.clientCert,
		"OTEL_EXPORTER_OTLP_CLIENT_KEY=" + p.clientKey,
		"OTEL_METRIC_EXPORT_INTERVAL=1000",
	}
	tlsKeys := fmt.Sprintf(`    tls:
      ca_file: %s
      cert_file: %s
      key_file: %s
`, p.caFile, p.clientCert, p.clientKey)
	pipelines := `pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [otlp]
    interval: 1s
  logs/accepts:
    sources: [accepts]
    exporters: [otlp]
`
	fileConfig := func(endpoint, protocol string) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			return []string{"run", "--config", writeConfig(t, "sockeye.yaml", fmt.Sprintf(`sources:
  traffic:
  accepts:
exporters:
  otlp:
    endpoint: %s
    protocol: %s
    export_interval: 1s
%s%s`, endpoint, protocol, tlsKeys, pipelines))}
		}
	}
	defaultConfig := func(*testing.T) []string { return []string{"run"} }
	cases := []struct {
		agent string
		env   []string
		args  func(t *testing.T) []string
	}{
		// The embedded default config: everything OTLP comes from OTEL_*.
		{"env-grpc", append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=https://" + col.GRPCEndpoint,
			"OTEL_EXPORTER_OTLP_PROTOCOL=grpc"}, tlsEnv...), defaultConfig},
		{"env-http", append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.HTTPEndpoint,
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}, tlsEnv...), defaultConfig},
		// A bare host:port is TLS by default; localhost checks the
		// certificate's DNS name.
		{"file-grpc", nil, fileConfig("localhost:"+grpcPort, "grpc")},
		{"file-http", nil, fileConfig(strings.Replace(col.HTTPEndpoint, "127.0.0.1", "localhost", 1), "http/protobuf")},
	}
	for _, tc := range cases {
		t.Run(tc.agent, func(t *testing.T) {
			agent := tc.agent
			env := append([]string{"OTEL_RESOURCE_ATTRIBUTES=sockeye.test.agent=" + agent}, tc.env...)
			a := agentbin.Start(t, env, tc.args(t)...)
			a.WaitLog(t, "source=accepts rung=", 30*time.Second)
			a.WaitLog(t, "source=traffic rung=", 30*time.Second)
			before := child.sent
			child.send(t, 20)
			want := int64(child.sent-before) * frameBytes
			ports, err := srv.connect(1)
			if err != nil {
				t.Fatal(err)
			}
			// The agent started after the child: it counts from zero (and
			// may charge the child a packet sent from softirq while it ran).
			col.WaitMetric(t, 30*time.Second, func(p otelcol.MetricPoint) bool {
				return child.txMatch(agent)(p) && p.Int >= want
			})
			col.WaitLog(t, 30*time.Second, func(r otelcol.LogRecord) bool {
				return srv.acceptMatch(agent)(r) && r.Attrs["client.port"] == fmt.Sprint(ports[0])
			})
			if code := a.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
				t.Errorf("exit code %d after SIGINT", code)
			}
			if s := a.Stderr(); strings.Contains(s, "export failed") {
				t.Errorf("an export failed:\n%s", s)
			}
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		testNoClientCertificate(t, col, p, child, srv)
	})

	t.Run("missing CA file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-ca.pem")
		cfg := writeConfig(t, "sockeye.yaml", fmt.Sprintf(`sources:
  traffic:
  accepts:
exporters:
  otlp:
    endpoint: %s
    tls:
      ca_file: %s
%s`, col.GRPCEndpoint, missing, pipelines))
		for _, run := range []struct {
			name string
			env  []string
			args []string
		}{
			{"config file", nil, []string{"run", "--config", cfg}},
			{"OTEL_EXPORTER_OTLP_CERTIFICATE", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=https://" + col.GRPCEndpoint,
				"OTEL_EXPORTER_OTLP_CERTIFICATE=" + missing}, []string{"run"}},
		} {
			t.Run(run.name, func(t *testing.T) {
				a := agentbin.Start(t, run.env, run.args...)
				// Signal 0 only waits: the agent must exit on its own.
				code := a.Stop(t, syscall.Signal(0), 20*time.Second)
				stderr := a.Stderr()
				if code == 0 {
					t.Errorf("exit code 0 with a missing CA file")
				}
				if !strings.Contains(stderr, missing) {
					t.Errorf("the error does not name %s:\n%s", missing, stderr)
				}
				// Exporters are built before the kernel is looked at:
				// nothing may have been loaded or attached.
				for _, s := range []string{"kernel types", "rung=", "pipeline started"} {
					if strings.Contains(stderr, s) {
						t.Errorf("the agent got as far as %q:\n%s", s, stderr)
					}
				}
				if a.Stdout() != "" {
					t.Errorf("console output from an agent that did not start:\n%s", a.Stdout())
				}
				t.Logf("exit code %d: %s", code, strings.TrimSpace(stderr))
			})
		}
	})
}

// testNoClientCertificate runs one agent with three exporters to the same
// mutual-TLS collector: one with the client certificate, and over gRPC and
// HTTP one with the CA only. The two without a certificate must fail every
// export, say so in the log, count what they lost, and hold up neither the
// good exporter nor the agent.
func testNoClientCertificate(t *testing.T, col *otelcol.Collector, p *pki, child *trafficChild, srv *acceptServer) {
	const agent = "nocert"
	exporters := []string{"otlp/good", "otlp/nocert-grpc", "otlp/nocert-http"}
	cfg := writeConfig(t, "sockeye.yaml", fmt.Sprintf(`sources:
  traffic:
  accepts:
exporters:
  otlp/good:
    endpoint: %[1]s
    export_interval: 1s
    tls:
      ca_file: %[3]s
      cert_file: %[4]s
      key_file: %[5]s
  otlp/nocert-grpc:
    endpoint: %[1]s
    export_interval: 1s
    timeout: 2s
    tls:
      ca_file: %[3]s
  otlp/nocert-http:
    endpoint: %[2]s
    protocol: http/protobuf
    export_interval: 1s
    timeout: 2s
    tls:
      ca_file: %[3]s
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters: [%[6]s]
    interval: 1s
  logs/accepts:
    sources: [accepts]
    exporters: [%[6]s]
`, col.GRPCEndpoint, col.HTTPEndpoint, p.caFile, p.clientCert, p.clientKey, strings.Join(exporters, ", ")))
	a := agentbin.Start(t, []string{"OTEL_RESOURCE_ATTRIBUTES=sockeye.test.agent=" + agent}, "run", "--config", cfg)
	a.WaitLog(t, "source=accepts rung=", 30*time.Second)
	a.WaitLog(t, "source=traffic rung=", 30*time.Second)
	pid := a.PID()

	before := child.sent
	child.send(t, 20)
	want := int64(child.sent-before) * frameBytes
	if _, err := srv.connect(5); err != nil {
		t.Fatal(err)
	}
	// The good exporter is not held up by the failing ones.
	col.WaitMetric(t, 30*time.Second, func(p otelcol.MetricPoint) bool {
		return child.txMatch(agent)(p) && p.Int >= want
	})
	col.WaitLog(t, 30*time.Second, srv.acceptMatch(agent))

	// The records the failing exporters could not deliver are counted, and
	// the count reaches the collector through the good exporter.
	for _, e := range exporters[1:] {
		lost := col.WaitMetric(t, 60*time.Second, func(p otelcol.MetricPoint) bool {
			return p.Name == "sockeye.agent.events.lost" && p.Resource["sockeye.test.agent"] == agent &&
				p.Attrs["sockeye.exporter"] == e && p.Attrs["sockeye.reason"] == "export_failed" && p.Int >= 5
		})
		t.Logf("%s", lost)
	}
	// Each failure is in the log (at most every 30 s per exporter and
	// signal). The client sees the TLS alert, or only the connection
	// closed under it when its write comes first (TLS 1.3 checks the
	// client certificate after the client's side of the handshake is
	// done), so the cause must show in one of the warnings.
	for _, e := range exporters[1:] {
		for _, msg := range []string{"metrics export failed", "logs export failed"} {
			waitStderr(t, a, regexp.MustCompile(`msg="`+msg+`" exporter=`+regexp.QuoteMeta(e)+` error=`), 30*time.Second)
		}
	}
	waitStderr(t, a, regexp.MustCompile(`msg="(metrics export failed" exporter=otlp/nocert|logs export failed" exporter=otlp/nocert|opentelemetry sdk")`+
		`.* error=.*tls: certificate required`), 70*time.Second)
	if !alive(pid) {
		t.Fatalf("the agent died:\n%s", a.Stderr())
	}
	if s := a.Stderr(); strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") {
		t.Errorf("the agent panicked:\n%s", s)
	}
	code := a.Stop(t, syscall.SIGINT, 30*time.Second)
	t.Logf("exit code %d after SIGINT; log:\n%s", code, a.Stderr())
	if code != 0 && code != 1 {
		t.Errorf("exit code %d after SIGINT, want 0, or 1 for the final exports that failed", code)
	}
}

// waitStderr waits until the agent's log matches re.
func waitStderr(t *testing.T, a *agentbin.Agent, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindString(a.Stderr()); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not log %s within %v:\n%s", re, timeout, a.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
