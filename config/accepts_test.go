package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const acceptsDoc = `sources:
  accepts:%s
exporters:
  console:
pipelines:
  logs/accepts:
    sources: [accepts]
    exporters: [console]
`

func TestAcceptsSource(t *testing.T) {
	tests := []struct {
		body string
		want AcceptsSource
	}{
		{"", AcceptsSource{Hook: HookAuto, RingSize: 1 << 20}},
		{"\n    hook: tracepoint\n    ring_size: 1048576\n    connect: true", AcceptsSource{Hook: HookTracepoint, RingSize: 1 << 20, Connect: true}},
		{"\n    hook: fentry\n    ring_size: 0x1000", AcceptsSource{Hook: HookFentry, RingSize: 4096}},
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte(strings.Replace(acceptsDoc, "%s", tt.body, 1)), "a.yaml", envMap(nil))
		if err != nil {
			t.Fatalf("%q: %v", tt.body, err)
		}
		if got := cfg.Sources[ID{Type: "accepts"}].Accepts; *got != tt.want {
			t.Errorf("%q: got %+v, want %+v", tt.body, *got, tt.want)
		}
		if p := cfg.Pipelines[0]; p.Signal != SignalLogs || p.Interval != 0 {
			t.Errorf("pipeline %+v", p)
		}
	}
}

func TestAcceptsInvalid(t *testing.T) {
	tests := []struct {
		name, doc string
		line      int
		msg       string
	}{
		{"ring size not a power of two", strings.Replace(acceptsDoc, "%s", "\n    ring_size: 300000", 1), 3,
			`sources.accepts.ring_size: 300000 is not a power of two`},
		{"ring size too small", strings.Replace(acceptsDoc, "%s", "\n    ring_size: 1024", 1), 3,
			`sources.accepts.ring_size: 1024 is out of range 4096-268435456`},
		{"unknown hook", strings.Replace(acceptsDoc, "%s", "\n    hook: fexit", 1), 3,
			`invalid hook "fexit" for an accepts source (want auto, fentry, kprobe, tp_btf, raw_tracepoint, tracepoint)`},
		{"connect not a boolean", strings.Replace(acceptsDoc, "%s", "\n    connect: sometimes", 1), 3,
			`sources.accepts.connect`},
		{"unknown key", strings.Replace(acceptsDoc, "%s", "\n    ringsize: 4096", 1), 3,
			`sources.accepts.ringsize: unknown key (did you mean "ring_size"?`},
		{"in a metrics pipeline", `sources: {accepts: }
exporters: {console: }
pipelines: {metrics: {sources: [accepts], exporters: [console]}}
`, 3, `source "accepts" emits logs, not metrics`},
		{"interval on a logs pipeline", `sources: {accepts: }
exporters: {console: }
pipelines:
  logs:
    sources: [accepts]
    exporters: [console]
    interval: 5s
`, 7, `interval applies only to metrics pipelines, not logs`},
		{"attributes processor on logs", `sources: {accepts: }
processors: {attributes: {drop: [process.pid]}}
exporters: {console: }
pipelines: {logs: {sources: [accepts], processors: [attributes], exporters: [console]}}
`, 4, `processor "attributes" handles metrics, not logs`},
		{"bad queue size", `sources: {accepts: }
exporters: {otlp: {queue_size: 0}}
pipelines: {logs: {sources: [accepts], exporters: [otlp]}}
`, 2, `exporters.otlp.queue_size: must be positive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "a.yaml", envMap(nil))
			errs := Errors(err)
			if len(errs) != 1 {
				t.Fatalf("want 1 error, got %d: %v", len(errs), err)
			}
			if e := errs[0]; !strings.Contains(e.Error(), tt.msg) || e.Line != tt.line {
				t.Errorf("got %v (line %d), want %q at line %d", e, e.Line, tt.msg, tt.line)
			}
		})
	}
}

func TestFilterOnLogs(t *testing.T) {
	cfg, err := Parse([]byte(`sources: {accepts: }
processors: {filter: {include: {commands: [nginx], uids: [33]}}}
exporters: {console: }
pipelines: {logs: {sources: [accepts], processors: [filter], exporters: [console]}}
`), "a.yaml", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Pipelines[0].Processors; !reflect.DeepEqual(got, []ID{{Type: "filter"}}) {
		t.Errorf("processors %v", got)
	}
}

func parseOTLPLogs(t *testing.T, body string, env map[string]string) (metrics, logs *OTLPExporter) {
	t.Helper()
	doc := `sources: {accepts: }
exporters:
  otlp:` + body + `
pipelines: {logs: {sources: [accepts], exporters: [otlp]}}
`
	cfg, err := Parse([]byte(doc), "otlp.yaml", envMap(env))
	if err != nil {
		t.Fatalf("%s\n%v", doc, err)
	}
	e := cfg.Exporters[ID{Type: "otlp"}]
	return e.OTLP, e.OTLPLogs
}

// TestOTELLogsEnv checks that the logs side of an otlp exporter reads the
// OTEL_EXPORTER_OTLP_LOGS_* variables, and the metrics side does not.
func TestOTELLogsEnv(t *testing.T) {
	const (
		generic = "OTEL_EXPORTER_OTLP_"
		logs    = "OTEL_EXPORTER_OTLP_LOGS_"
		metrics = "OTEL_EXPORTER_OTLP_METRICS_"
	)
	tests := []struct {
		name        string
		body        string
		env         map[string]string
		wantMetrics OTLPExporter
		wantLogs    OTLPExporter
	}{
		{
			name: "generic http endpoint gets each signal's path",
			env:  map[string]string{generic + "ENDPOINT": "http://col:4318/", generic + "PROTOCOL": "http/protobuf"},
			wantMetrics: OTLPExporter{Enabled: true, Endpoint: "http://col:4318/v1/metrics", Protocol: "http/protobuf", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
			wantLogs: OTLPExporter{Enabled: true, Endpoint: "http://col:4318/v1/logs", Protocol: "http/protobuf", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
		},
		{
			name: "logs variables win for logs only",
			env: map[string]string{
				generic + "ENDPOINT": "generic:1111", logs + "ENDPOINT": "https://logs:2222/ingest", metrics + "ENDPOINT": "metrics:3333",
				logs + "PROTOCOL": "http/protobuf", logs + "HEADERS": "k=v", logs + "TIMEOUT": "1500",
				logs + "COMPRESSION": "gzip", "OTEL_BLRP_MAX_QUEUE_SIZE": "4096",
			},
			wantMetrics: OTLPExporter{Enabled: true, Endpoint: "metrics:3333", Protocol: "grpc",
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative", LogQueueSize: 4096},
			wantLogs: OTLPExporter{Enabled: true, Endpoint: "https://logs:2222/ingest", Protocol: "http/protobuf",
				Headers: map[string]string{"k": "v"}, Compression: "gzip", Timeout: 1500 * time.Millisecond,
				Temporality: "cumulative", LogQueueSize: 4096},
		},
		{
			name: "the file wins",
			body: "\n    endpoint: http://file:4318\n    protocol: http/protobuf\n    queue_size: 100",
			env:  map[string]string{logs + "ENDPOINT": "logs:1", "OTEL_BLRP_MAX_QUEUE_SIZE": "4096"},
			wantMetrics: OTLPExporter{Enabled: true, Endpoint: "http://file:4318", Protocol: "http/protobuf", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative", LogQueueSize: 100},
			wantLogs: OTLPExporter{Enabled: true, Endpoint: "http://file:4318", Protocol: "http/protobuf", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative", LogQueueSize: 100},
		},
		{
			name: "enabled auto by the logs endpoint alone",
			body: "\n    enabled: auto",
			env:  map[string]string{logs + "ENDPOINT": "col:4317", logs + "INSECURE": "true"},
			wantMetrics: OTLPExporter{Endpoint: "localhost:4317", Protocol: "grpc", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
			wantLogs: OTLPExporter{Enabled: true, Endpoint: "col:4317", Protocol: "grpc", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, l := parseOTLPLogs(t, tt.body, tt.env)
			if !reflect.DeepEqual(*m, tt.wantMetrics) {
				t.Errorf("metrics got  %+v\nwant %+v", *m, tt.wantMetrics)
			}
			if !reflect.DeepEqual(*l, tt.wantLogs) {
				t.Errorf("logs got  %+v\nwant %+v", *l, tt.wantLogs)
			}
		})
	}
}

func TestOTELLogsEnvErrors(t *testing.T) {
	doc := []byte(`sources: {accepts: }
exporters:
  otlp:
    enabled: auto
  otlp/b:
    enabled: auto
pipelines: {logs: {sources: [accepts], exporters: [otlp, otlp/b]}}
`)
	// Off for logs: nothing reported.
	if _, err := Parse(doc, "a.yaml", envMap(map[string]string{"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "x"})); err != nil {
		t.Errorf("bad variable of a disabled exporter reported: %v", err)
	}
	// On for logs only: reported once, though two exporters read it.
	_, err := Parse(doc, "a.yaml", envMap(map[string]string{
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "col:4317", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "x",
		"OTEL_BLRP_MAX_QUEUE_SIZE": "-3",
	}))
	errs := Errors(err)
	if len(errs) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	for i, want := range []string{`OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: invalid value "x": want milliseconds`,
		`OTEL_BLRP_MAX_QUEUE_SIZE: invalid value "-3": want an integer from 1 to 1048576`} {
		if !strings.Contains(errs[i].Error(), want) {
			t.Errorf("error %d: %v, want %q", i, errs[i], want)
		}
	}
}
