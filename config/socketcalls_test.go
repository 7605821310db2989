package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const socketCallsDoc = `sources:
  socket_calls:%s
exporters:
  console:
  otlp:
    enabled: auto
pipelines:
  traces/sockets:
    sources: [socket_calls]
    exporters: [console, otlp]
`

func TestSocketCallsSource(t *testing.T) {
	cfg, err := Parse([]byte(strings.Replace(socketCallsDoc, "%s", "\n    commands: [curl]", 1)), "s.yaml", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sources[ID{Type: "socket_calls"}].SocketCalls
	if s.Hook != HookAuto || !slices.Equal(s.Functions, []string{SocketCFunctions}) || s.RateLimit != DefaultSocketCallsRateLimit ||
		s.SamplingRatio != 1 || s.MaxDepth != 16 || s.RingSize != 4<<20 || s.ServiceName != "process" || s.RootsOutsideSyscalls {
		t.Errorf("defaults: %+v", s)
	}
	if p := cfg.Pipelines[0]; p.Signal != SignalTraces {
		t.Errorf("pipeline %+v", p)
	}
	body := `
    pids: [1, 2]
    uids: [0]
    cgroups: [system.slice/x.service]
    syscalls: [connect, accept4]
    functions: ["@net/socket.c", "tcp_*"]
    max_depth: 8
    sampling_ratio: 0.25
    rate_limit: 0
    group_window: 100ms
    ring_size: 1048576
    roots_outside_syscalls: true
    service_name: agent
    hook: tp_btf`
	cfg, err = Parse([]byte(strings.Replace(socketCallsDoc, "%s", body, 1)), "s.yaml", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	s = cfg.Sources[ID{Type: "socket_calls"}].SocketCalls
	if !slices.Equal(s.PIDs, []int{1, 2}) || s.MaxDepth != 8 || s.SamplingRatio != 0.25 || s.RateLimit != 0 ||
		s.GroupWindow != 100*time.Millisecond || s.RingSize != 1<<20 || !s.RootsOutsideSyscalls || s.ServiceName != "agent" ||
		s.Hook != HookTpBTF || !slices.Equal(s.Syscalls, []string{"connect", "accept4"}) || len(s.Cgroups) != 1 {
		t.Errorf("parsed: %+v", s)
	}
}

func TestSocketCallsInvalid(t *testing.T) {
	doc := func(body string) string { return strings.Replace(socketCallsDoc, "%s", body, 1) }
	tests := []struct {
		name, doc string
		line      int
		msg       string
	}{
		{"no selection", doc(""), 2, `a socket_calls source needs a selection: give at least one of pids, commands, uids, cgroups (or all: true)`},
		{"all false is no selection", doc("\n    all: false"), 2, `needs a selection`},
		{"unknown syscall", doc("\n    all: true\n    syscalls: [conect]"), 4, `unknown system call "conect" (did you mean "connect"?`},
		{"ratio zero", doc("\n    all: true\n    sampling_ratio: 0"), 4, `invalid sampling ratio "0" (want a number in (0, 1]`},
		{"ratio above one", doc("\n    all: true\n    sampling_ratio: 1.5"), 4, `invalid sampling ratio`},
		{"ring size", doc("\n    all: true\n    ring_size: 5000"), 4, `5000 is not a power of two`},
		{"depth", doc("\n    all: true\n    max_depth: 33"), 4, `33 is out of range 1-32`},
		{"long command", doc("\n    commands: [a-very-long-command-name]"), 3, `longer than 15 characters`},
		{"bad hook", doc("\n    all: true\n    hook: tracepoint"), 4, `invalid hook "tracepoint" for a socket_calls source`},
		{"service name", doc("\n    all: true\n    service_name: pid"), 4, `invalid value "pid" (want process, agent)`},
		{"negative rate", doc("\n    all: true\n    rate_limit: -1"), 4, `must not be negative`},
		{"in a metrics pipeline", `sources: {socket_calls: {all: true}}
exporters: {console: }
pipelines:
  metrics/x:
    sources: [socket_calls]
    exporters: [console]
`, 5, `source "socket_calls" emits traces, not metrics`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "s.yaml", envMap(nil))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q lacks %q", err, tt.msg)
			}
			var found bool
			for _, e := range Errors(err) {
				if strings.Contains(e.Error(), tt.msg) && e.Line == tt.line {
					found = true
				}
			}
			if !found {
				t.Errorf("no error at line %d: %v", tt.line, err)
			}
		})
	}
}

// The traces side of an otlp exporter reads OTEL_EXPORTER_OTLP_TRACES_*,
// and appends /v1/traces to the generic endpoint for HTTP.
func TestOTLPTracesEnv(t *testing.T) {
	parse := func(env map[string]string) *Exporter {
		t.Helper()
		cfg, err := Parse([]byte(strings.Replace(socketCallsDoc, "%s", "\n    all: true", 1)), "s.yaml", envMap(env))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Exporters[ID{Type: "otlp"}]
	}
	e := parse(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
	if !e.OTLPTraces.Enabled || e.OTLPTraces.Endpoint != "http://collector:4318/v1/traces" || e.OTLP.Endpoint != "http://collector:4318/v1/metrics" {
		t.Errorf("generic endpoint: traces %q metrics %q", e.OTLPTraces.Endpoint, e.OTLP.Endpoint)
	}
	e = parse(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/custom", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=b"})
	if !e.OTLPTraces.Enabled || e.OTLPTraces.Endpoint != "http://jaeger:4318/custom" || e.OTLPTraces.Headers["a"] != "b" || e.OTLP.Enabled {
		t.Errorf("traces endpoint: %+v, metrics enabled %v", e.OTLPTraces, e.OTLP.Enabled)
	}
	e = parse(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "127.0.0.1:4317", "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true"})
	if e.OTLPTraces.Protocol != ProtocolGRPC || !e.OTLPTraces.Insecure {
		t.Errorf("grpc: %+v", e.OTLPTraces)
	}
	if _, err := Parse([]byte(strings.Replace(socketCallsDoc, "%s", "\n    all: true", 1)), "s.yaml",
		envMap(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"})); err == nil ||
		!strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
		t.Errorf("bad traces protocol: %v", err)
	}
}
