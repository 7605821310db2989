package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// fullYAML uses every key.
const fullYAML = `sources:
  traffic:
    attribution: current
    max_entries: 4096
    hook: fentry
processors:
  filter/web:
    include:
      commands: [nginx, envoy]
      devices: [eth0]
    exclude:
      pids: [1, 0x10]
      uids: [0]
  attributes/slim:
    drop: [process.pid]
  attributes/keep:
    keep: [process.executable.name, network.interface.name]
exporters:
  console:
  otlp/ship:
    enabled: true
    endpoint: https://otel.example.com:4318/custom/v1/metrics
    protocol: http/protobuf
    insecure: false
    headers:
      api-key: secret
    tls:
      ca_file: /etc/ssl/ca.pem
      cert_file: /etc/ssl/client.pem
      key_file: /etc/ssl/client.key
      insecure_skip_verify: false
    compression: gzip
    timeout: 3s
    temporality: delta
    cardinality_limit: 2000
    export_interval: 30s
  otlp/local:
    endpoint: localhost:4317
    insecure: true
pipelines:
  metrics/traffic:
    sources: [traffic]
    processors: [filter/web, attributes/slim]
    exporters: [console, otlp/ship]
    interval: 10s
  metrics/local:
    sources: [traffic]
    processors: [attributes/keep]
    exporters: [otlp/local]
resource:
  deployment.environment: prod
  host.role: edge
btf: /var/lib/sockeye/vmlinux.btf
log:
  level: debug
  format: json
`

func TestDefault(t *testing.T) {
	cfg, err := Default(envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != DefaultPath {
		t.Errorf("Path = %q", cfg.Path)
	}
	src := cfg.Sources[ID{Type: "traffic"}]
	if src == nil || *src.Traffic != (TrafficSource{Attribution: "socket", MaxEntries: 10240, Hook: HookAuto}) {
		t.Errorf("traffic source = %+v", src)
	}
	if cfg.Exporters[ID{Type: "console"}].Console == nil {
		t.Error("console exporter missing")
	}
	otlp := cfg.Exporters[ID{Type: "otlp"}].OTLP
	if otlp.Enabled {
		t.Error("otlp enabled without an endpoint")
	}
	if len(cfg.Pipelines) != 3 {
		t.Fatalf("pipelines = %d", len(cfg.Pipelines))
	}
	if p := cfg.Pipelines[2]; p.ID.String() != "metrics/drops" || !reflect.DeepEqual(p.Sources, []ID{{Type: "drops"}}) ||
		!reflect.DeepEqual(p.Exporters, []ID{{Type: "console"}, {Type: "otlp"}}) || p.Interval != 5*time.Second {
		t.Errorf("pipeline 3 = %+v", p)
	}
	if d := cfg.Sources[ID{Type: "drops"}]; d == nil || *d.Drops != (DropsSource{MaxEntries: 4096, Hook: HookAuto}) {
		t.Errorf("drops source = %+v", d)
	}
	if p := cfg.Pipelines[1]; p.ID.String() != "logs/accepts" || !reflect.DeepEqual(p.Exporters, []ID{{Type: "console"}, {Type: "otlp"}}) {
		t.Errorf("pipeline 2 = %+v", p)
	}
	p := cfg.Pipelines[0]
	want := &Pipeline{
		ID: ID{Type: "metrics", Name: "traffic"}, Pos: Pos{File: DefaultPath, Line: 15}, Signal: SignalMetrics,
		Sources: []ID{{Type: "traffic"}}, Exporters: []ID{{Type: "console"}, {Type: "otlp"}}, Interval: 5 * time.Second,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("pipeline = %+v\nwant       %+v", p, want)
	}
	if cfg.Log != (Log{Level: "info", Format: "text"}) {
		t.Errorf("log = %+v", cfg.Log)
	}

	cfg, err = Default(envMap(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}))
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.Exporters[ID{Type: "otlp"}].OTLP; !o.Enabled || o.Endpoint != "collector:4317" {
		t.Errorf("otlp = %+v, want enabled to collector:4317", o)
	}
}

func TestFull(t *testing.T) {
	cfg, err := Parse([]byte(fullYAML), "full.yaml", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := *cfg.Sources[ID{Type: "traffic"}].Traffic; got != (TrafficSource{Attribution: "current", MaxEntries: 4096, Hook: HookFentry}) {
		t.Errorf("traffic = %+v", got)
	}
	filter := cfg.Processors[ID{"filter", "web"}].Filter
	wantFilter := &FilterProcessor{
		Include: &Match{Commands: []string{"nginx", "envoy"}, Devices: []string{"eth0"}},
		Exclude: &Match{PIDs: []int{1, 16}, UIDs: []int{0}},
	}
	if !reflect.DeepEqual(filter, wantFilter) {
		t.Errorf("filter = %+v / %+v", filter.Include, filter.Exclude)
	}
	if got := cfg.Processors[ID{"attributes", "slim"}].Attributes; !reflect.DeepEqual(got, &AttributesProcessor{Drop: []string{"process.pid"}}) {
		t.Errorf("attributes/slim = %+v", got)
	}
	if got := cfg.Processors[ID{"attributes", "keep"}].Attributes.Keep; len(got) != 2 {
		t.Errorf("attributes/keep = %v", got)
	}
	ship := cfg.Exporters[ID{"otlp", "ship"}]
	wantShip := &OTLPExporter{
		Enabled:          true,
		Endpoint:         "https://otel.example.com:4318/custom/v1/metrics",
		Protocol:         ProtocolHTTPProtobuf,
		Headers:          map[string]string{"api-key": "secret"},
		TLS:              TLS{CAFile: "/etc/ssl/ca.pem", CertFile: "/etc/ssl/client.pem", KeyFile: "/etc/ssl/client.key"},
		Compression:      CompressionGzip,
		Timeout:          3 * time.Second,
		Temporality:      TemporalityDelta,
		CardinalityLimit: 2000,
		ExportInterval:   30 * time.Second,
	}
	if !reflect.DeepEqual(ship.OTLP, wantShip) {
		t.Errorf("otlp/ship = %+v\nwant        %+v", ship.OTLP, wantShip)
	}
	if ship.Pos != (Pos{File: "full.yaml", Line: 20}) {
		t.Errorf("otlp/ship pos = %+v", ship.Pos)
	}
	local := cfg.Exporters[ID{"otlp", "local"}].OTLP
	if !local.Enabled || !local.Insecure || local.Protocol != ProtocolGRPC || local.Timeout != DefaultOTLPTimeout {
		t.Errorf("otlp/local = %+v", local)
	}
	if len(cfg.Pipelines) != 2 || cfg.Pipelines[0].ID.Name != "traffic" || cfg.Pipelines[1].ID.Name != "local" {
		t.Fatalf("pipelines out of order: %+v", cfg.Pipelines)
	}
	p := cfg.Pipelines[0]
	if p.Interval != 10*time.Second || !reflect.DeepEqual(p.Processors, []ID{{"filter", "web"}, {"attributes", "slim"}}) {
		t.Errorf("pipeline = %+v", p)
	}
	if cfg.Pipelines[1].Interval != DefaultInterval {
		t.Errorf("default interval = %v", cfg.Pipelines[1].Interval)
	}
	if !reflect.DeepEqual(cfg.Resource, map[string]string{"deployment.environment": "prod", "host.role": "edge"}) {
		t.Errorf("resource = %v", cfg.Resource)
	}
	if cfg.BTF != "/var/lib/sockeye/vmlinux.btf" || cfg.Log != (Log{Level: "debug", Format: "json"}) {
		t.Errorf("btf = %q, log = %+v", cfg.BTF, cfg.Log)
	}
}

func TestEnvExpansion(t *testing.T) {
	const doc = `sources:
  traffic:
    max_entries: ${env:MAX}
    hook: ${env:HOOK:-kprobe}
exporters:
  otlp:
    endpoint: ${env:HOST}:${env:PORT:-4317}
    headers:
      authorization: "Bearer ${env:TOKEN}"
      price: "$$5 and $HOME"
    insecure: ${env:INSECURE}
pipelines:
  metrics:
    sources: [traffic]
    exporters: [otlp]
resource:
  unset: "a${env:NOPE}b"
`
	env := envMap(map[string]string{"MAX": "2048", "HOST": "col", "TOKEN": "t0k", "INSECURE": "true"})
	cfg, err := Parse([]byte(doc), "env.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Sources[ID{Type: "traffic"}].Traffic
	if tr.MaxEntries != 2048 || tr.Hook != HookKprobe {
		t.Errorf("traffic = %+v", tr)
	}
	o := cfg.Exporters[ID{Type: "otlp"}].OTLP
	if o.Endpoint != "col:4317" || !o.Insecure {
		t.Errorf("otlp = %+v", o)
	}
	if o.Headers["authorization"] != "Bearer t0k" || o.Headers["price"] != "$5 and $HOME" {
		t.Errorf("headers = %q", o.Headers)
	}
	if cfg.Resource["unset"] != "ab" {
		t.Errorf("unset variable expanded to %q, want empty", cfg.Resource["unset"])
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, protocol string
		err          string // "" when valid
	}{
		{"localhost:4317", ProtocolGRPC, ""},
		{"[::1]:4317", ProtocolGRPC, ""},
		{"http://col:4317", ProtocolGRPC, ""},
		{"https://col", ProtocolGRPC, ""},
		{"HTTPS://col:443/", ProtocolGRPC, ""},
		{"http://col:4318/v1/metrics", ProtocolHTTPProtobuf, ""},
		{"col:4318", ProtocolHTTPProtobuf, ""},
		{"col", ProtocolGRPC, "missing port"},
		{":4317", ProtocolGRPC, "missing host"},
		{"col:http", ProtocolGRPC, `port "http" is not a number`},
		{"col:0", ProtocolGRPC, "port 0 is out of range"},
		{"col:4317/x", ProtocolGRPC, "want host:port or http(s)://host:port"},
		{"http://col:4317/x", ProtocolGRPC, "takes no path"},
		{"ftp://col:21", ProtocolHTTPProtobuf, `unsupported scheme "ftp"`},
		{"http://:4318", ProtocolHTTPProtobuf, "missing host"},
		{"http://col:", ProtocolHTTPProtobuf, "empty port"},
		{"http://col:99999", ProtocolHTTPProtobuf, "port 99999 is out of range"},
		{"http://u:p@col:4318", ProtocolHTTPProtobuf, "credentials in the URL"},
		{"http://col:4318/?a=b", ProtocolHTTPProtobuf, "query or fragment"},
		{"http://col:4318/%zz", ProtocolHTTPProtobuf, "not a valid URL"},
	}
	for _, tt := range tests {
		_, err := parseEndpoint(tt.in, tt.protocol)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("parseEndpoint(%q, %s): %v", tt.in, tt.protocol, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseEndpoint(%q, %s) = %v, want %q", tt.in, tt.protocol, err, tt.err)
		}
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{"10": 10, "010": 10, "0x10": 16, "0o10": 8, "0b10": 2, "-3": -3, "+4": 4} {
		if got, err := parseInt(in); err != nil || got != want {
			t.Errorf("parseInt(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1.5", "1e3", "ten", "0x"} {
		if _, err := parseInt(in); err == nil {
			t.Errorf("parseInt(%q) succeeded", in)
		}
	}
}

// TestREADMEExamples keeps the examples in README.md valid.
func TestREADMEExamples(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(data), "```yaml\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("found %d yaml blocks", len(blocks))
	}
	for i, b := range blocks {
		b, _, _ = strings.Cut(b, "```")
		if _, err := Parse([]byte(b), fmt.Sprintf("README.md block %d", i+1), envMap(nil)); err != nil {
			t.Error(err)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	env := envMap(map[string]string{"A": "x", "EMPTY": ""})
	for in, want := range map[string]string{
		"plain":                "plain",
		"${env:A}":             "x",
		"${env:B}":             "",
		"${env:B:-d}":          "d",
		"${env:EMPTY:-d}":      "d",
		"${env:A:-d}":          "x",
		"$${env:A}":            "${env:A}",
		"a$":                   "a$",
		"${env:A}${env:A}-$$$": "xx-$$",
		"${env:B:-}":           "",
	} {
		got, err := expandEnv(in, env)
		if err != nil || got != want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${env:A", "${A}", "${env:}", "${env:1A}", "${env:A B}", "${file:x}"} {
		if _, err := expandEnv(in, env); err == nil {
			t.Errorf("expandEnv(%q) succeeded", in)
		}
	}
}

const otlpOnly = `sources:
  traffic:
exporters:
  otlp:%s
pipelines:
  metrics:
    sources: [traffic]
    exporters: [otlp]
`

func parseOTLP(t *testing.T, body string, env map[string]string) *OTLPExporter {
	t.Helper()
	doc := strings.Replace(otlpOnly, "%s", body, 1)
	cfg, err := Parse([]byte(doc), "otlp.yaml", envMap(env))
	if err != nil {
		t.Fatalf("%s\n%v", doc, err)
	}
	return cfg.Exporters[ID{Type: "otlp"}].OTLP
}

func TestOTELPrecedence(t *testing.T) {
	const (
		generic = "OTEL_EXPORTER_OTLP_"
		metrics = "OTEL_EXPORTER_OTLP_METRICS_"
	)
	full := map[string]string{
		generic + "ENDPOINT": "generic:1111", metrics + "ENDPOINT": "metrics:2222",
		generic + "PROTOCOL": "grpc", metrics + "PROTOCOL": "http/protobuf",
		generic + "HEADERS": "a=generic", metrics + "HEADERS": "a=metrics%20x, b = 2",
		generic + "INSECURE": "false", metrics + "INSECURE": "true",
		generic + "COMPRESSION": "none", metrics + "COMPRESSION": "gzip",
		generic + "TIMEOUT": "1000", metrics + "TIMEOUT": "2500",
		generic + "CERTIFICATE": "/g/ca", metrics + "CERTIFICATE": "/m/ca",
		generic + "CLIENT_CERTIFICATE": "/g/cert", metrics + "CLIENT_CERTIFICATE": "/m/cert",
		generic + "CLIENT_KEY": "/g/key", metrics + "CLIENT_KEY": "/m/key",
		metrics + "TEMPORALITY_PREFERENCE": "LowMemory",
		"OTEL_METRIC_EXPORT_INTERVAL":      "15000",
	}
	genericOnly := map[string]string{}
	for k, v := range full {
		if !strings.HasPrefix(k, metrics) {
			genericOnly[k] = v
		}
	}

	tests := []struct {
		name string
		body string
		env  map[string]string
		want OTLPExporter
	}{
		{
			name: "defaults",
			want: OTLPExporter{Enabled: true, Endpoint: "localhost:4317", Protocol: "grpc", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
		},
		{
			name: "generic variables",
			env:  genericOnly,
			want: OTLPExporter{Enabled: true, Endpoint: "generic:1111", Protocol: "grpc",
				Headers: map[string]string{"a": "generic"}, TLS: TLS{CAFile: "/g/ca", CertFile: "/g/cert", KeyFile: "/g/key"},
				Compression: "none", Timeout: time.Second, Temporality: "cumulative", ExportInterval: 15 * time.Second},
		},
		{
			name: "metrics-specific variables win over generic ones",
			env:  full,
			want: OTLPExporter{Enabled: true, Endpoint: "metrics:2222", Protocol: "http/protobuf", Insecure: true,
				Headers: map[string]string{"a": "metrics x", "b": "2"}, TLS: TLS{CAFile: "/m/ca", CertFile: "/m/cert", KeyFile: "/m/key"},
				Compression: "gzip", Timeout: 2500 * time.Millisecond, Temporality: "delta", ExportInterval: 15 * time.Second},
		},
		{
			name: "the file wins over both",
			env:  full,
			body: `
    endpoint: https://file:3333
    protocol: grpc
    headers: {c: file}
    tls: {ca_file: /f/ca, cert_file: /f/cert, key_file: /f/key}
    compression: none
    timeout: 4s
    temporality: cumulative
    export_interval: 1m`,
			want: OTLPExporter{Enabled: true, Endpoint: "https://file:3333", Protocol: "grpc",
				Headers: map[string]string{"c": "file"}, TLS: TLS{CAFile: "/f/ca", CertFile: "/f/cert", KeyFile: "/f/key"},
				Compression: "none", Timeout: 4 * time.Second, Temporality: "cumulative", ExportInterval: time.Minute},
		},
		{
			name: "generic http endpoint gets the metrics path and is plaintext",
			env:  map[string]string{generic + "ENDPOINT": "http://col:4318/", generic + "PROTOCOL": "http/protobuf"},
			want: OTLPExporter{Enabled: true, Endpoint: "http://col:4318/v1/metrics", Protocol: "http/protobuf", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
		},
		{
			name: "metrics endpoint is used as is",
			env:  map[string]string{metrics + "ENDPOINT": "https://col:4318/ingest", generic + "PROTOCOL": "http/protobuf"},
			want: OTLPExporter{Enabled: true, Endpoint: "https://col:4318/ingest", Protocol: "http/protobuf",
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
		},
		{
			name: "default http endpoint",
			body: "\n    protocol: http/protobuf",
			want: OTLPExporter{Enabled: true, Endpoint: "localhost:4318", Protocol: "http/protobuf", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
		},
		{
			name: "insecure variable applies to a bare host:port",
			env:  map[string]string{generic + "ENDPOINT": "col:4317", generic + "INSECURE": "TRUE"},
			want: OTLPExporter{Enabled: true, Endpoint: "col:4317", Protocol: "grpc", Insecure: true,
				Compression: "none", Timeout: 10 * time.Second, Temporality: "cumulative"},
		},
		{
			name: "empty variables count as unset",
			env:  map[string]string{metrics + "TIMEOUT": "", generic + "TIMEOUT": "500", metrics + "ENDPOINT": " "},
			want: OTLPExporter{Enabled: true, Endpoint: "localhost:4317", Protocol: "grpc", Insecure: true,
				Compression: "none", Timeout: 500 * time.Millisecond, Temporality: "cumulative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseOTLP(t, tt.body, tt.env)
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestEnabledAuto(t *testing.T) {
	tests := []struct {
		name string
		body string
		env  map[string]string
		want bool
	}{
		{"no endpoint", "\n    enabled: auto", nil, false},
		{"endpoint in file", "\n    enabled: auto\n    endpoint: col:4317", nil, true},
		{"generic variable", "\n    enabled: auto", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "col:4317"}, true},
		{"metrics variable", "\n    enabled: auto", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "col:4317"}, true},
		{"endpoint expands to empty", "\n    enabled: auto\n    endpoint: ${env:NONE}", nil, false},
		{"disabled", "\n    enabled: false\n    endpoint: col:4317", nil, false},
		{"enabled by default", "", nil, true},
		// A disabled exporter never uses the environment, so its problems are not reported.
		{"bad variable ignored while off", "\n    enabled: auto", map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseOTLP(t, tt.body, tt.env).Enabled; got != tt.want {
				t.Errorf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		line int
		msg  string
		n    int // errors expected in all; 0 means 1
	}{
		{"unknown top-level key", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
exportrs: {}
`, nil, 4, `exportrs: unknown key (did you mean "exporters"?`, 0},
		{"unknown key in a source", `sources:
  traffic:
    max_entires: 10
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 3, `sources.traffic.max_entires: unknown key (did you mean "max_entries"?`, 0},
		{"mapping where a list is expected", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics:
    sources: traffic
    exporters: [console]
`, nil, 5, `pipelines.metrics.sources: want a list, got "traffic"`, 0},
		{"list where a mapping is expected", `sources:
  - traffic
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 2, `sources: want a mapping, got a list`, 0},
		{"undefined exporter", `sources: {traffic: }
exporters: {console: , otlp: }
pipelines:
  metrics/traffic:
    sources: [traffic]
    exporters:
      - console
      - otlp/x
`, nil, 8, `pipelines.metrics/traffic.exporters: exporter "otlp/x" is not defined (defined: console, otlp)`, 0},
		{"source in the wrong signal", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics: {sources: [traffic], exporters: [console]}
  logs/x:
    sources: [traffic]
    exporters: [console]
`, nil, 6, `pipelines.logs/x.sources: source "traffic" emits metrics, not logs`, 0},
		{"processor in the wrong signal", `sources: {traffic: }
processors: {attributes: {drop: [process.pid]}}
exporters: {console: }
pipelines:
  metrics: {sources: [traffic], exporters: [console]}
  traces:
    sources: []
    processors: [attributes]
    exporters: [console]
`, nil, 8, `processor "attributes" handles metrics, not traces`, 2},
		{"bad duration", `sources: {traffic: }
exporters:
  otlp/ship:
    timeout: 5x
pipelines: {metrics: {sources: [traffic], exporters: [otlp/ship]}}
`, nil, 4, `exporters.otlp/ship.timeout: invalid duration "5x" (want e.g. 10s, 1m)`, 0},
		{"zero timeout", `sources: {traffic: }
exporters:
  otlp:
    timeout: 0s
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `exporters.otlp.timeout: must be positive`, 0},
		{"endpoint without port", `sources: {traffic: }
exporters:
  otlp:
    endpoint: collector
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `exporters.otlp.endpoint: invalid endpoint "collector": missing port`, 0},
		{"bad port", `sources: {traffic: }
exporters:
  otlp:
    protocol: http/protobuf
    endpoint: https://collector:70000/v1/metrics
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 5, `port 70000 is out of range 1-65535`, 0},
		{"grpc endpoint with a path", `sources: {traffic: }
exporters:
  otlp:
    endpoint: http://collector:4317/v1/metrics
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `a gRPC endpoint takes no path`, 0},
		{"bad scheme", `sources: {traffic: }
exporters:
  otlp:
    endpoint: grpc://collector:4317
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `unsupported scheme "grpc"`, 0},
		{"bad protocol", `sources: {traffic: }
exporters:
  otlp:
    protocol: http/json
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `exporters.otlp.protocol: invalid protocol "http/json": http/json is not supported`, 0},
		{"bad compression", `sources: {traffic: }
exporters:
  otlp:
    compression: zstd
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `invalid compression "zstd" (want gzip or none)`, 0},
		{"bad enabled", `sources: {traffic: }
exporters:
  otlp:
    enabled: maybe
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `want true, false or auto`, 0},
		{"insecure contradicts the scheme", `sources: {traffic: }
exporters:
  otlp:
    endpoint: http://collector:4317
    insecure: false
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 5, `insecure: false contradicts the http:// scheme`, 0},
		{"negative cardinality limit", `sources: {traffic: }
exporters:
  otlp:
    cardinality_limit: -1
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `exporters.otlp.cardinality_limit: must not be negative`, 0},
		{"cert_file without key_file", `sources: {traffic: }
exporters:
  otlp:
    tls:
      ca_file: /ca.pem
      cert_file: /cert.pem
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 6, `tls.cert_file is set but key_file is not`, 0},
		{"tracepoint hook on traffic", `sources:
  traffic:
    hook: tracepoint
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 3, `invalid hook "tracepoint" for a traffic source (want auto, fentry, kprobe, tp_btf, raw_tracepoint)`, 0},
		{"bad attribution", `sources:
  traffic:
    attribution: thread
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 3, `sources.traffic.attribution: invalid value "thread" (want socket, current)`, 0},
		{"max_entries 0", `sources:
  traffic:
    max_entries: 0
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 3, `sources.traffic.max_entries: must be positive`, 0},
		{"max_entries too large", `sources:
  traffic:
    max_entries: 2000000
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 3, `2000000 is out of range 1-1048576`, 0},
		{"capture filter token", `sources:
  tcp_receive:
    filter: tcp port 80 or port 443
exporters: {console: }
pipelines: {packets: {sources: [tcp_receive], exporters: [console]}}
`, nil, 3, `sources.tcp_receive.filter: filter: unsupported token "or"`, 0},
		{"pcapng without path", `sources: {tcp_receive: }
exporters:
  pcapng:
    flush: packet
pipelines: {packets: {sources: [tcp_receive], exporters: [pcapng]}}
`, nil, 3, `exporters.pcapng.path: missing`, 0},
		{"pcapng rotation count alone", `sources: {tcp_receive: }
exporters:
  pcapng:
    path: /tmp/x.pcapng
    rotation: {count: 3}
pipelines: {packets: {sources: [tcp_receive], exporters: [pcapng]}}
`, nil, 5, `count needs size_mb or interval`, 0},
		{"tcp_receive in a metrics pipeline", `sources: {tcp_receive: }
exporters: {console: }
pipelines: {metrics: {sources: [tcp_receive], exporters: [console]}}
`, nil, 3, `source "tcp_receive" emits packets, not metrics`, 0},
		{"tcp_receive snaplen 0", `sources:
  tcp_receive:
    snaplen: 0
exporters: {console: }
pipelines: {packets: {sources: [tcp_receive], exporters: [console]}}
`, nil, 3, `sources.tcp_receive.snaplen: must be positive`, 0},
		{"max_entries not a number", `sources:
  traffic:
    max_entries: lots
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 3, `want an integer, got "lots"`, 0},
		{"unknown source type", `sources:
  trafic:
exporters: {console: }
pipelines: {metrics: {sources: [trafic], exporters: [console]}}
`, nil, 2, `sources.trafic: unknown source type "trafic" (did you mean "traffic"?`, 0},
		{"ID with two slashes", `sources: {traffic: }
exporters:
  console/a/b:
pipelines: {metrics: {sources: [traffic], exporters: [console/a/b]}}
`, nil, 3, `more than one "/"`, 0},
		{"filter with an empty match", `sources: {traffic: }
processors:
  filter:
    include:
      pids: []
exporters: {console: }
pipelines: {metrics: {sources: [traffic], processors: [filter], exporters: [console]}}
`, nil, 4, `processors.filter.include: empty match`, 0},
		{"filter with neither include nor exclude", `sources: {traffic: }
processors:
  filter:
exporters: {console: }
pipelines: {metrics: {sources: [traffic], processors: [filter], exporters: [console]}}
`, nil, 3, `a filter needs include, exclude or both`, 0},
		{"negative pid", `sources: {traffic: }
processors:
  filter:
    exclude:
      pids: [1, -2]
exporters: {console: }
pipelines: {metrics: {sources: [traffic], processors: [filter], exporters: [console]}}
`, nil, 5, `processors.filter.exclude.pids[1]: must not be negative`, 0},
		{"attributes with both drop and keep", `sources: {traffic: }
processors:
  attributes:
    drop: [process.pid]
    keep: [process.user.id]
exporters: {console: }
pipelines: {metrics: {sources: [traffic], processors: [attributes], exporters: [console]}}
`, nil, 5, `processors.attributes: give either drop or keep, not both`, 0},
		{"attributes naming an unknown attribute", `sources: {traffic: }
processors:
  attributes:
    drop:
      - process.pid
      - process.command
exporters: {console: }
pipelines: {metrics: {sources: [traffic], processors: [attributes], exporters: [console]}}
`, nil, 6, `processors.attributes.drop[1]: unknown attribute "process.command"`, 0},
		{"pipeline without exporters", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics:
    sources: [traffic]
`, nil, 4, `pipelines.metrics.exporters: missing: a pipeline needs at least one exporter`, 0},
		{"pipeline with an empty source list", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics:
    sources: []
    exporters: [console]
`, nil, 5, `pipelines.metrics.sources: empty: a pipeline needs at least one source`, 0},
		{"interval on a logs pipeline", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics: {sources: [traffic], exporters: [console]}
  logs:
    sources: []
    exporters: [console]
    interval: 5s
`, nil, 8, `pipelines.logs.interval: interval applies only to metrics pipelines`, 2},
		{"interval too short", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics:
    sources: [traffic]
    exporters: [console]
    interval: 50ms
`, nil, 7, `must be at least 100ms`, 0},
		{"duplicate in a list", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics:
    sources: [traffic]
    exporters:
      - console
      - console
`, nil, 8, `exporter "console" is listed twice (first at line 7)`, 0},
		{"unknown signal", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics: {sources: [traffic], exporters: [console]}
  metricz/x: {sources: [traffic], exporters: [console]}
`, nil, 5, `pipelines.metricz/x: unknown signal "metricz" (want metrics, logs, traces, packets)`, 0},
		{"no pipelines", `sources: {traffic: }
exporters: {console: }
`, nil, 1, `pipelines: missing: at least one pipeline is required`, 0},
		{"duplicate key", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
sources: {traffic: }
`, nil, 4, `sources: key already defined at line 1`, 0},
		{"malformed env reference", `sources: {traffic: }
exporters:
  otlp:
    endpoint: ${OTLP_HOST}:4317
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, nil, 4, `exporters.otlp.endpoint: malformed reference "${OTLP_HOST}"`, 0},
		{"unterminated env reference", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
btf: ${env:BTF
`, nil, 4, `btf: unterminated "${env:BTF"`, 0},
		{"bad OTEL_EXPORTER_OTLP_TIMEOUT", `sources: {traffic: }
exporters:
  console:
  otlp:
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}, 4,
			`exporters.otlp: OTEL_EXPORTER_OTLP_TIMEOUT: invalid value "abc": want milliseconds`, 0},
		{"bad OTEL_EXPORTER_OTLP_PROTOCOL", `sources: {traffic: }
exporters:
  otlp:
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, 3,
			`OTEL_EXPORTER_OTLP_PROTOCOL: invalid value "http/json": http/json is not supported`, 0},
		{"bad OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", `sources: {traffic: }
exporters:
  otlp:
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "col:0"}, 3,
			`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: invalid value "col:0": port 0 is out of range`, 0},
		{"bad OTEL_EXPORTER_OTLP_HEADERS", `sources: {traffic: }
exporters:
  otlp:
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=1,secretvalue"}, 3,
			`OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not key=value`, 0},
		{"bad temporality preference", `sources: {traffic: }
exporters:
  otlp:
pipelines: {metrics: {sources: [traffic], exporters: [otlp]}}
`, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes"}, 3,
			`want cumulative, delta or lowmemory`, 0},
		{"bad log level", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
log:
  level: verbose
`, nil, 5, `log.level: invalid value "verbose" (want debug, info, warn, error)`, 0},
		{"relative pod_logs_root", `sources: {traffic: }
processors:
  containers:
    pod_logs_root: var/log/pods
exporters: {console: }
pipelines: {metrics: {sources: [traffic], processors: [containers], exporters: [console]}}
`, nil, 4, `processors.containers.pod_logs_root: want an absolute path, got "var/log/pods"`, 0},
		{"containers processor in a packets pipeline", `sources: {tcp_receive: }
processors: {containers: }
exporters: {console: }
pipelines: {packets: {sources: [tcp_receive], processors: [containers], exporters: [console]}}
`, nil, 4, `processor "containers" handles metrics, logs, traces, not packets`, 0},
		{"bad health endpoint", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
health:
  endpoint: 13133
`, nil, 5, `health.endpoint: want host:port (e.g. localhost:13133), got "13133"`, 0},
		{"unknown health key", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
health: {endpont: "localhost:1"}
`, nil, 4, `health.endpont: unknown key (did you mean "endpoint"?`, 0},
		{"drop_capabilities not a boolean", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
drop_capabilities: yes please
`, nil, 4, `drop_capabilities: want true or false, got "yes please"`, 0},
		{"YAML syntax error", `sources: {traffic: }
exporters:
  console:
    foo: bar
   bad: indent
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
`, nil, 2, `YAML syntax error: did not find expected key`, 0},
		{"YAML syntax error on a later line", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
log: {level: "debug}
`, nil, 4, `YAML syntax error: found unexpected end of stream`, 0},
		{"unknown anchor", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: *src, exporters: [console]}}
`, nil, 3, `YAML syntax error: unknown anchor 'src' referenced`, 0},
		{"empty document", "# nothing here\n", nil, 1, `the configuration is empty`, 0},
		{"null document", "---\n~\n", nil, 2, `the configuration is empty`, 0},
		{"second document", `sources: {traffic: }
exporters: {console: }
pipelines: {metrics: {sources: [traffic], exporters: [console]}}
---
log: {level: debug}
`, nil, 4, `a second YAML document (---) is not supported`, 0},
		{"merge key", `sources: {traffic: }
exporters: {console: }
pipelines:
  metrics: &p {sources: [traffic], exporters: [console]}
  metrics/b:
    <<: *p
`, nil, 6, `merge keys (<<) are not supported`, 3},
	}
	if len(tests) < 20 {
		t.Fatalf("only %d invalid cases", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.doc), "sockeye.yaml", envMap(tt.env))
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Error("config returned along with an error")
			}
			errs := Errors(err)
			if n := max(tt.n, 1); len(errs) != n {
				t.Fatalf("want %d error(s), got %d:\n%v", n, len(errs), err)
			}
			var e *Error
			for _, cand := range errs {
				if strings.Contains(cand.Error(), tt.msg) {
					e = cand
				}
			}
			if e == nil {
				t.Fatalf("no error contains %q:\n%v", tt.msg, err)
			}
			if e.File != "sockeye.yaml" || e.Line != tt.line {
				t.Errorf("error at %s:%d, want sockeye.yaml:%d: %v", e.File, e.Line, tt.line, e)
			}
		})
	}
}

// TestAllErrorsAtOnce checks that independent problems are all reported,
// sorted by line, and that a component with an error is not also reported
// as undefined by the pipelines naming it.
func TestAllErrorsAtOnce(t *testing.T) {
	const doc = `pipelines:
  metrics:
    sources: [traffic]
    exporters: [otlp/ship]
sources:
  traffic:
    hook: nope
exporters:
  otlp/ship:
    timeout: 5x
    endpoint: "host:99999"
  consle:
`
	_, err := Parse([]byte(doc), "sockeye.yaml", nil)
	got := err.Error()
	want := `sockeye.yaml:7: sources.traffic.hook: invalid hook "nope" for a traffic source (want auto, fentry, kprobe, tp_btf, raw_tracepoint)
sockeye.yaml:10: exporters.otlp/ship.timeout: invalid duration "5x" (want e.g. 10s, 1m)
sockeye.yaml:11: exporters.otlp/ship.endpoint: invalid endpoint "host:99999": port 99999 is out of range 1-65535
sockeye.yaml:12: exporters.consle: unknown exporter type "consle" (did you mean "console"? known: console, otlp, pcapng)`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestEnvErrorReportedOnce(t *testing.T) {
	const doc = `sources: {traffic: }
exporters:
  otlp/a:
  otlp/b:
pipelines: {metrics: {sources: [traffic], exporters: [otlp/a, otlp/b]}}
`
	_, err := Parse([]byte(doc), "x.yaml", envMap(map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "br"}))
	errs := Errors(err)
	if len(errs) != 1 || errs[0].Line != 3 {
		t.Errorf("want one error at line 3, got %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{"a.yaml", 12, "exporters.otlp.timeout", "bad"}, "a.yaml:12: exporters.otlp.timeout: bad"},
		{Error{"a.yaml", 3, "", "bad"}, "a.yaml:3: bad"},
		{Error{"a.yaml", 0, "", "bad"}, "a.yaml: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	wrapped := errors.Join(errors.New("other"), &Error{File: "x", Msg: "m"})
	if errs := Errors(wrapped); len(errs) != 1 || errs[0].Msg != "m" {
		t.Errorf("Errors = %v", errs)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sockeye.yaml")
	if err := os.WriteFile(path, []byte(fullYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path {
		t.Errorf("Path = %q", cfg.Path)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("log: {level: loud}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, nil); err == nil || !strings.HasPrefix(err.Error(), path+":1: log.level:") {
		t.Errorf("error does not name the file: %v", err)
	}
}

func TestSourceAttributes(t *testing.T) {
	want := []string{"process.pid", "process.executable.name", "process.user.id", "network.interface.name"}
	if got := SourceAttributes("traffic"); !reflect.DeepEqual(got, want) {
		t.Errorf("traffic attributes = %v", got)
	}
	if got := SourceAttributes("nope"); got != nil {
		t.Errorf("unknown type attributes = %v", got)
	}
	SourceAttributes("traffic")[0] = "changed"
	if SourceAttributes("traffic")[0] != "process.pid" {
		t.Error("SourceAttributes returned shared storage")
	}
}

// TestAliases checks that YAML anchors and aliases work, including a
// self-referencing one the parser accepts.
func TestAliases(t *testing.T) {
	const doc = `sources: {traffic: }
exporters:
  otlp/a: &common
    headers: {x: "1"}
  otlp/b: *common
pipelines: {metrics: {sources: &s [traffic], exporters: [otlp/a, otlp/b]}}
`
	cfg, err := Parse([]byte(doc), "a.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Exporters[ID{"otlp", "b"}].OTLP.Headers["x"] != "1" {
		t.Error("alias not followed")
	}
	if _, err := Parse([]byte("sources: &x [*x]\n"), "a.yaml", nil); err == nil {
		t.Error("recursive alias accepted")
	}
}

func TestDropsSource(t *testing.T) {
	cfg, err := Parse([]byte(`sources:
  drops:
    hook: tracepoint
    max_entries: 512
    interface: true
    console_reason: true
    console_offset: true
  drops/quiet:
processors:
  filter/veth:
    include:
      devices: [veth0]
  attributes/where:
    keep: [sockeye.drop.location, sockeye.drop.reason, network.transport, network.type]
exporters:
  console:
pipelines:
  metrics/drops:
    sources: [drops, drops/quiet]
    processors: [filter/veth, attributes/where]
    exporters: [console]
`), "sockeye.yaml", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := DropsSource{Hook: HookTracepoint, MaxEntries: 512, Interface: true, ConsoleReason: true, ConsoleOffset: true}
	if got := *cfg.Sources[ID{Type: "drops"}].Drops; got != want {
		t.Errorf("drops = %+v, want %+v", got, want)
	}
	if got := *cfg.Sources[ID{Type: "drops", Name: "quiet"}].Drops; got != (DropsSource{Hook: HookAuto, MaxEntries: DefaultDropsMaxEntries}) {
		t.Errorf("drops/quiet = %+v", got)
	}
	if got := SourceAttributes("drops"); !reflect.DeepEqual(got, []string{"sockeye.drop.location", "sockeye.drop.reason",
		"network.type", "network.transport", "network.interface.name"}) {
		t.Errorf("drops attributes = %v", got)
	}

	invalid := []struct {
		name, doc string
		line      int
		msg       string
	}{
		{"fentry hook", `sources:
  drops:
    hook: fentry
`, 3, `sources.drops.hook: invalid hook "fentry" for a drops source (want auto, tp_btf, raw_tracepoint, tracepoint)`},
		{"max_entries 0", `sources:
  drops:
    max_entries: 0
`, 3, `sources.drops.max_entries: must be positive`},
		{"max_entries too large", `sources:
  drops:
    max_entries: 0x200000
`, 3, `out of range 1-1048576`},
		{"interface not a boolean", `sources:
  drops:
    interface: yes please
`, 3, `sources.drops.interface: want true or false, got "yes please"`},
		{"console_reason not a boolean", `sources:
  drops:
    console_reason: 1
`, 3, `sources.drops.console_reason: want true or false, got "1"`},
		{"misspelt key", `sources:
  drops:
    console_offest: true
`, 3, `sources.drops.console_offest: unknown key (did you mean "console_offset"?`},
		{"traffic key on drops", `sources:
  drops:
    attribution: socket
`, 3, `sources.drops.attribution: unknown key`},
		{"unknown drops attribute", `sources:
  drops:
processors:
  attributes:
    drop: [sockeye.drop.function]
`, 5, `processors.attributes.drop[0]: unknown attribute "sockeye.drop.function"`},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.doc + "exporters: {console: }\npipelines: {metrics: {sources: [drops], exporters: [console]}}\n"
			_, err := Parse([]byte(doc), "sockeye.yaml", envMap(nil))
			errs := Errors(err)
			if len(errs) != 1 {
				t.Fatalf("want 1 error, got %d: %v", len(errs), err)
			}
			if !strings.Contains(errs[0].Error(), tt.msg) || errs[0].Line != tt.line {
				t.Errorf("got %v (line %d), want %q at line %d", errs[0], errs[0].Line, tt.msg, tt.line)
			}
		})
	}
	_, err = Parse([]byte(`sources: {drops: }
exporters: {console: }
pipelines:
  logs: {sources: [drops], exporters: [console]}
`), "sockeye.yaml", envMap(nil))
	if err == nil || !strings.Contains(err.Error(), `source "drops" emits metrics, not logs`) {
		t.Errorf("drops in a logs pipeline: %v", err)
	}
}
