package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prefixes of the OpenTelemetry exporter variables. For each setting the
// metrics-specific variable wins over the generic one.
const (
	envOTLP        = "OTEL_EXPORTER_OTLP_"
	envOTLPMetrics = "OTEL_EXPORTER_OTLP_METRICS_"
	envOTLPLogs    = "OTEL_EXPORTER_OTLP_LOGS_"
	envOTLPTraces  = "OTEL_EXPORTER_OTLP_TRACES_"

	envEndpoint              = envOTLP + "ENDPOINT"
	envTemporalityPreference = envOTLPMetrics + "TEMPORALITY_PREFERENCE"
	envMetricExportInterval  = "OTEL_METRIC_EXPORT_INTERVAL"
	envLogQueueSize          = "OTEL_BLRP_MAX_QUEUE_SIZE"
)

// otelEnv reads the OTEL_* variables on behalf of one otlp exporter. Its
// problems are kept aside: they are reported only when the exporter ends
// up enabled, since a disabled exporter never uses them.
type otelEnv struct {
	get func(string) string
	// specific is the prefix of the signal's own variables
	// (OTEL_EXPORTER_OTLP_METRICS_ when empty).
	specific string
	errs     []string
}

func (e *otelEnv) signalPrefix() string {
	if e.specific == "" {
		return envOTLPMetrics
	}
	return e.specific
}

// lookup returns the first set variable of the signal's own
// (OTEL_EXPORTER_OTLP_METRICS_<suffix>, ...) and OTEL_EXPORTER_OTLP_<suffix>.
// An empty variable counts as unset, as the specification asks.
func (e *otelEnv) lookup(suffix string) (name, value string, ok bool) {
	for _, name := range []string{e.signalPrefix() + suffix, envOTLP + suffix} {
		if v := strings.TrimSpace(e.get(name)); v != "" {
			return name, v, true
		}
	}
	return "", "", false
}

func (e *otelEnv) invalid(name, value, format string, args ...any) {
	e.errs = append(e.errs, fmt.Sprintf("%s: invalid value %q: %s", name, value, fmt.Sprintf(format, args...)))
}

func (e *otelEnv) protocol() (string, bool) {
	name, v, ok := e.lookup("PROTOCOL")
	if !ok {
		return "", false
	}
	if msg := checkProtocol(v); msg != "" {
		e.invalid(name, v, "%s", msg)
		return "", false
	}
	return v, true
}

// checkProtocol returns why p is not a supported protocol, or "".
func checkProtocol(p string) string {
	switch p {
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		return ""
	case "http/json":
		return "http/json is not supported (want grpc or http/protobuf)"
	}
	return "want grpc or http/protobuf"
}

func (e *otelEnv) boolean(suffix string) (bool, bool) {
	name, v, ok := e.lookup(suffix)
	if !ok {
		return false, false
	}
	b, err := parseBool(v)
	if err != nil {
		e.invalid(name, v, "want true or false")
		return false, false
	}
	return b, true
}

func (e *otelEnv) compression() (string, bool) {
	name, v, ok := e.lookup("COMPRESSION")
	if !ok {
		return "", false
	}
	if v != CompressionGzip && v != CompressionNone {
		e.invalid(name, v, "want gzip or none")
		return "", false
	}
	return v, true
}

// millis reads a positive number of milliseconds from the variable name.
func (e *otelEnv) millis(name string) (time.Duration, bool) {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil:
		e.invalid(name, v, "want milliseconds")
		return 0, false
	case n <= 0 || n > int64(365*24*time.Hour/time.Millisecond):
		e.invalid(name, v, "want a positive number of milliseconds")
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

// positive reads an integer from 1 to max from the variable name.
func (e *otelEnv) positive(name string, max int64) (int64, bool) {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > max {
		e.invalid(name, v, "want an integer from 1 to %d", max)
		return 0, false
	}
	return n, true
}

func (e *otelEnv) timeout() (time.Duration, bool) {
	if v := strings.TrimSpace(e.get(e.signalPrefix() + "TIMEOUT")); v != "" {
		return e.millis(e.signalPrefix() + "TIMEOUT")
	}
	return e.millis(envOTLP + "TIMEOUT")
}

// headers parses "k1=v1,k2=v2" with URL-encoded values. Messages never
// quote a value: headers usually carry credentials.
func (e *otelEnv) headers() (map[string]string, bool) {
	name, v, ok := e.lookup("HEADERS")
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, found := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !found || k == "" {
			e.errs = append(e.errs, fmt.Sprintf("%s: entry %d is not key=value (want k1=v1,k2=v2)", name, i+1))
			continue
		}
		if !validHeaderName(k) {
			e.errs = append(e.errs, fmt.Sprintf("%s: entry %d: invalid header name %q", name, i+1, k))
			continue
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s: entry %d (%s): value is not correctly URL-encoded", name, i+1, k))
			continue
		}
		out[k] = dec
	}
	return out, len(out) > 0
}

// temporality reads OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE.
// "lowmemory" asks for delta on synchronous counters and histograms; every
// sockeye instrument is a counter, so it means delta here.
func (e *otelEnv) temporality() (string, bool) {
	v := strings.TrimSpace(e.get(envTemporalityPreference))
	if v == "" {
		return "", false
	}
	switch strings.ToLower(v) {
	case TemporalityCumulative:
		return TemporalityCumulative, true
	case TemporalityDelta, "lowmemory":
		return TemporalityDelta, true
	}
	e.invalid(envTemporalityPreference, v, "want cumulative, delta or lowmemory")
	return "", false
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
