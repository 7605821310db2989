// Package otelcol runs a real OpenTelemetry Collector (built from
// tools/otelcol) as a child process, so tests can check what sockeye sends
// against the reference OTLP implementation rather than a hand-written fake.
//
// The collector receives OTLP over gRPC and HTTP and writes everything it
// gets to JSON files through the contrib file exporter; Metrics, Logs and
// Spans read those files back as flat, easy-to-assert values.
//
// This package deliberately does not import any collector module: the
// collector is pinned in its own Go module so its large dependency graph
// never leaks into sockeye's go.mod.
package otelcol
