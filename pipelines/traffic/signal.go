// Package traffic is the nettop job as a sockeye source: per-process packets
// and bytes per network device, counted in the kernel by bpf/traffic and
// drained once per interval into OpenTelemetry metrics.
package traffic

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/sockeye/sockeye/pipelines"
)

// Value columns of a traffic row.
const (
	ColTxPackets = iota
	ColRxPackets
	ColTxBytes
	ColRxBytes
	numCols
)

// Metric names. process.network.io is the semantic-convention metric; the
// packet counter has no convention yet, so it lives under sockeye.*.
const (
	MetricIO      = "process.network.io"
	MetricPackets = "sockeye.process.network.packet.count"
)

var (
	transmit = semconv.NetworkIODirectionTransmit
	receive  = semconv.NetworkIODirectionReceive
)

// Metrics maps the columns to OpenTelemetry counters.
var Metrics = []pipelines.MetricDef{
	{Name: MetricIO, Unit: "By", Description: "Bytes sent and received by the process on a network interface, link-layer headers included.", Column: ColTxBytes, Attrs: []attribute.KeyValue{transmit}},
	{Name: MetricIO, Unit: "By", Description: "Bytes sent and received by the process on a network interface, link-layer headers included.", Column: ColRxBytes, Attrs: []attribute.KeyValue{receive}},
	{Name: MetricPackets, Unit: "{packet}", Description: "Packets sent and received by the process on a network interface.", Column: ColTxPackets, Attrs: []attribute.KeyValue{transmit}},
	{Name: MetricPackets, Unit: "{packet}", Description: "Packets sent and received by the process on a network interface.", Column: ColRxPackets, Attrs: []attribute.KeyValue{receive}},
}

// Row attributes, semantic-convention names.
var (
	AttrPID     = semconv.ProcessPIDKey
	AttrCommand = semconv.ProcessExecutableNameKey
	AttrUID     = semconv.ProcessUserIDKey
	AttrDevice  = semconv.NetworkInterfaceNameKey
)

// Attributes are the names of the attributes traffic rows carry.
var Attributes = []string{string(AttrPID), string(AttrCommand), string(AttrUID), string(AttrDevice)}

// Entry is one decoded kernel key with its counts over an interval.
type Entry struct {
	PID       uint32
	UID       uint32
	Device    string
	Command   string
	TxPackets uint64
	RxPackets uint64
	TxBytes   uint64
	RxBytes   uint64
}

// Row turns an entry into a pipeline row.
func (e Entry) Row(final bool) pipelines.Row {
	return pipelines.Row{
		Attrs: []attribute.KeyValue{
			AttrPID.Int(int(e.PID)),
			AttrCommand.String(e.Command),
			AttrUID.Int(int(e.UID)),
			AttrDevice.String(e.Device),
		},
		Values: []int64{int64(e.TxPackets), int64(e.RxPackets), int64(e.TxBytes), int64(e.RxBytes)},
		Final:  final,
	}
}

// CString turns a fixed-size, NUL-padded kernel string into a Go string.
func CString(b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	buf := make([]byte, n)
	for i := 0; i < n; i++ {
		buf[i] = byte(b[i])
	}
	return string(buf)
}

// Command normalises the kernel's comm: the idle tasks are "swapper/N", one
// per CPU, and show as "swapper" as they did in the seed.
func Command(pid uint32, comm string) string {
	if pid == 0 && len(comm) >= 8 && comm[:8] == "swapper/" {
		return "swapper"
	}
	return comm
}
