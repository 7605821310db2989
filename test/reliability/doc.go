// Package reliability holds end-to-end tests of how the sockeye binary
// behaves when its collector misbehaves: TLS with client certificates, a
// refused certificate, a missing CA file, a collector that goes away for
// minutes and comes back. They run the real agent (internal/testpeer/agentbin)
// against a real OpenTelemetry Collector (internal/testpeer/otelcol) and
// need root for BPF.
package reliability
