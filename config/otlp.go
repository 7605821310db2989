package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Values of OTLPExporter fields.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"

	CompressionGzip = "gzip"
	CompressionNone = "none"

	TemporalityCumulative = "cumulative"
	TemporalityDelta      = "delta"

	DefaultOTLPTimeout = 10 * time.Second

	defaultGRPCEndpoint = "localhost:4317"
	defaultHTTPEndpoint = "localhost:4318"
	httpMetricsPath     = "/v1/metrics"
	httpLogsPath        = "/v1/logs"
	httpTracesPath      = "/v1/traces"

	// DefaultLogQueueSize is the log SDK's default batch queue.
	DefaultLogQueueSize = 2048
	MaxLogQueueSize     = 1 << 20
)

// otlp decodes an otlp exporter for metrics and fills what the file leaves
// out from the OTEL_* environment, then from the defaults.
func (d *decoder) otlp(f fields) *OTLPExporter {
	o, envErrs := d.otlpSignal(f, envOTLPMetrics, httpMetricsPath)
	if o.Enabled {
		d.reportEnv(f, envErrs)
	}
	return o
}

// otlpLogs decodes the same exporter for logs, with the logs variables.
// otlp has checked the file's values already, so they are decoded again
// quietly and only the environment's problems are reported.
func (d *decoder) otlpLogs(f fields) *OTLPExporter {
	quiet := &decoder{file: d.file, env: d.env, reported: map[string]bool{}}
	o, envErrs := quiet.otlpSignal(f, envOTLPLogs, httpLogsPath)
	if o.Enabled {
		d.reportEnv(f, envErrs)
	}
	return o
}

// otlpTraces decodes the same exporter for traces, with the traces
// variables, quietly for the file's values as otlpLogs does.
func (d *decoder) otlpTraces(f fields) *OTLPExporter {
	quiet := &decoder{file: d.file, env: d.env, reported: map[string]bool{}}
	o, envErrs := quiet.otlpSignal(f, envOTLPTraces, httpTracesPath)
	if o.Enabled {
		d.reportEnv(f, envErrs)
	}
	return o
}

// reportEnv reports the environment's problems of an enabled exporter,
// each once however many exporters share the variable.
func (d *decoder) reportEnv(f fields, msgs []string) {
	for _, msg := range msgs {
		if !d.reported[msg] {
			d.reported[msg] = true
			d.errorf(f.line, f.path, "%s", msg)
		}
	}
}

// otlpSignal decodes an otlp exporter for the signal whose variables start
// with specific (e.g. OTEL_EXPORTER_OTLP_METRICS_) and whose HTTP path is
// signalPath. It returns the environment's problems for the caller to
// report when the exporter is enabled.
func (d *decoder) otlpSignal(f fields, specific, signalPath string) (*OTLPExporter, []string) {
	o := &OTLPExporter{
		Protocol:    ProtocolGRPC,
		Compression: CompressionNone,
		Timeout:     DefaultOTLPTimeout,
		Temporality: TemporalityCumulative,
	}
	env := &otelEnv{get: d.env, specific: specific}
	path := func(key string) string { return join(f.path, key) }

	enabled := "true"
	if v, ok := d.str(f.get("enabled"), path("enabled")); ok {
		switch v = strings.ToLower(v); v {
		case "true", "false", "auto":
			enabled = v
		default:
			d.errorf(f.get("enabled").Line, path("enabled"), "invalid value %q (want true, false or auto)", v)
		}
	}

	// fileOr runs fromFile and, when the file has no usable value and no
	// error was reported for it, fromEnv.
	fileOr := func(fromFile func() bool, fromEnv func()) {
		before := len(d.errs)
		if !fromFile() && len(d.errs) == before {
			fromEnv()
		}
	}

	fileOr(func() bool {
		v, ok := d.str(f.get("protocol"), path("protocol"))
		if !ok {
			return false
		}
		if msg := checkProtocol(v); msg != "" {
			d.errorf(f.get("protocol").Line, path("protocol"), "invalid protocol %q: %s", v, msg)
			return false
		}
		o.Protocol = v
		return true
	}, func() {
		if v, ok := env.protocol(); ok {
			o.Protocol = v
		}
	})

	// Endpoint: the file, then the environment, then the default.
	var ep endpoint
	endpointSet, endpointFrom := false, "endpoint"
	fileOr(func() bool {
		v, ok := d.str(f.get("endpoint"), path("endpoint"))
		if !ok {
			return false
		}
		endpointSet = true
		e, err := parseEndpoint(v, o.Protocol)
		if err != nil {
			d.errorf(f.get("endpoint").Line, path("endpoint"), "invalid endpoint %q: %v", v, err)
			return false
		}
		o.Endpoint, ep = v, e
		return true
	}, func() {
		name, v, ok := env.lookup("ENDPOINT")
		if !ok {
			return
		}
		endpointSet, endpointFrom = true, name
		e, err := parseEndpoint(v, o.Protocol)
		if err != nil {
			env.invalid(name, v, "%v", err)
			return
		}
		o.Endpoint, ep = v, e
		// The generic variable is a base URL: the specification has the
		// exporter append the signal's path to it.
		if name == envEndpoint && o.Protocol == ProtocolHTTPProtobuf && e.scheme != "" {
			o.Endpoint = strings.TrimSuffix(v, "/") + signalPath
		}
	})
	endpointDefaulted := o.Endpoint == ""
	if endpointDefaulted {
		o.Endpoint = defaultGRPCEndpoint
		if o.Protocol == ProtocolHTTPProtobuf {
			o.Endpoint = defaultHTTPEndpoint
		}
	}
	switch enabled {
	case "true":
		o.Enabled = true
	case "auto":
		o.Enabled = endpointSet
	}

	fileOr(func() bool {
		v, ok := d.strMap(f.get("headers"), path("headers"))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if !validHeaderName(k) {
				d.errorf(f.keyLine("headers"), path("headers"), "invalid header name %q", k)
			}
		}
		o.Headers = v
		return ok
	}, func() {
		o.Headers, _ = env.headers()
	})

	tlsWritten := d.tls(f, env, o)
	d.insecure(f, env, o, ep, endpointFrom, endpointDefaulted)
	if o.Insecure && tlsWritten {
		d.errorf(f.keyLine("tls"), path("tls"),
			"tls settings need a TLS connection, but this exporter is plaintext (insecure or an http:// endpoint)")
	}

	fileOr(func() bool {
		v, ok := d.str(f.get("compression"), path("compression"))
		if !ok {
			return false
		}
		if v != CompressionGzip && v != CompressionNone {
			d.errorf(f.get("compression").Line, path("compression"), "invalid compression %q (want gzip or none)", v)
			return false
		}
		o.Compression = v
		return true
	}, func() {
		if v, ok := env.compression(); ok {
			o.Compression = v
		}
	})

	fileOr(func() bool {
		v, ok := d.duration(f.get("timeout"), path("timeout"), 1)
		if ok {
			o.Timeout = v
		}
		return ok
	}, func() {
		if v, ok := env.timeout(); ok {
			o.Timeout = v
		}
	})

	fileOr(func() bool {
		v, ok := d.enum(f.get("temporality"), path("temporality"), TemporalityCumulative, TemporalityDelta)
		if ok {
			o.Temporality = v
		}
		return ok
	}, func() {
		if v, ok := env.temporality(); ok {
			o.Temporality = v
		}
	})

	if v, ok := d.integer(f.get("cardinality_limit"), path("cardinality_limit"), 0, math.MaxInt32); ok {
		o.CardinalityLimit = int(v)
	}

	fileOr(func() bool {
		v, ok := d.duration(f.get("export_interval"), path("export_interval"), 0)
		if ok {
			o.ExportInterval = v
		}
		return ok
	}, func() {
		if v, ok := env.millis(envMetricExportInterval); ok {
			o.ExportInterval = v
		}
	})

	fileOr(func() bool {
		v, ok := d.integer(f.get("queue_size"), path("queue_size"), 1, MaxLogQueueSize)
		if ok {
			o.LogQueueSize = int(v)
		}
		return ok
	}, func() {
		if v, ok := env.positive(envLogQueueSize, MaxLogQueueSize); ok {
			o.LogQueueSize = int(v)
		}
	})
	return o, env.errs
}

// tls fills o.TLS from the file's tls mapping, then from the environment,
// and reports whether the file wrote any tls setting.
func (d *decoder) tls(parent fields, env *otelEnv, o *OTLPExporter) bool {
	path := join(parent.path, "tls")
	f := d.fields(parent.get("tls"), path, parent.keyLine("tls"),
		"ca_file", "cert_file", "key_file", "insecure_skip_verify")
	// from says where each file setting came from, for messages.
	from := map[string]string{}
	file := func(key, envSuffix string, dst *string) {
		before := len(d.errs)
		if v, ok := d.str(f.get(key), join(path, key)); ok {
			*dst, from[key] = v, "tls."+key
		} else if name, v, ok := env.lookup(envSuffix); ok && len(d.errs) == before {
			*dst, from[key] = v, name
		}
	}
	file("ca_file", "CERTIFICATE", &o.TLS.CAFile)
	file("cert_file", "CLIENT_CERTIFICATE", &o.TLS.CertFile)
	file("key_file", "CLIENT_KEY", &o.TLS.KeyFile)
	skipWritten := false
	if v, ok := d.boolean(f.get("insecure_skip_verify"), join(path, "insecure_skip_verify")); ok {
		o.TLS.InsecureSkipVerify, skipWritten = v, true
	}

	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		set, missing, missingEnv := "cert_file", "key_file", "CLIENT_KEY"
		if o.TLS.CertFile == "" {
			set, missing, missingEnv = "key_file", "cert_file", "CLIENT_CERTIFICATE"
		}
		msg := fmt.Sprintf("%s is set but %s is not: a client certificate needs its key (set tls.%s or %s%s)",
			from[set], missing, missing, envOTLP, missingEnv)
		if strings.HasPrefix(from[set], "tls.") {
			d.errorf(f.keyLine(set), path, "%s", msg)
		} else {
			env.errs = append(env.errs, msg)
		}
	}
	for _, src := range from {
		if strings.HasPrefix(src, "tls.") {
			return true
		}
	}
	return skipWritten
}

// insecure decides whether the exporter talks plaintext. A URL endpoint
// decides by its scheme, as the specification says; otherwise the file,
// then OTEL_EXPORTER_OTLP_*INSECURE. The default endpoint is plaintext
// (the specification's default is http://localhost:4317) unless TLS files
// are configured.
func (d *decoder) insecure(f fields, env *otelEnv, o *OTLPExporter, ep endpoint, endpointFrom string, endpointDefaulted bool) {
	key := join(f.path, "insecure")
	before := len(d.errs)
	v, written := d.boolean(f.get("insecure"), key)
	switch {
	case ep.scheme != "":
		o.Insecure = ep.scheme == "http"
		if written && v != o.Insecure {
			d.errorf(f.get("insecure").Line, key, "insecure: %t contradicts the %s:// scheme of %s", v, ep.scheme, endpointFrom)
		}
	case written:
		o.Insecure = v
	case len(d.errs) != before:
		// invalid, already reported
	default:
		if v, ok := env.boolean("INSECURE"); ok {
			o.Insecure = v
		} else if endpointDefaulted {
			t := o.TLS
			o.Insecure = t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" && !t.InsecureSkipVerify
		}
	}
}
