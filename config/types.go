// Package config reads sockeye's YAML configuration: sources, processors,
// exporters and pipelines, in the style of the OpenTelemetry Collector.
package config

import "time"

// Signal is the kind of telemetry a pipeline carries; it is the part of a
// pipeline ID before the slash ("metrics/traffic" carries metrics).
type Signal string

const (
	SignalMetrics Signal = "metrics"
	SignalLogs    Signal = "logs"
	SignalTraces  Signal = "traces"
	SignalPackets Signal = "packets"
)

// ID names a component as "type" or "type/name", as the Collector does.
type ID struct {
	Type string
	Name string
}

func (id ID) String() string {
	if id.Name == "" {
		return id.Type
	}
	return id.Type + "/" + id.Name
}

// Pos is where something was written: file and 1-based line.
type Pos struct {
	File string
	Line int
}

// Config is a whole, validated configuration.
type Config struct {
	// Path is the file the config came from, or "<embedded default>".
	Path string

	Sources    map[ID]*Source
	Processors map[ID]*Processor
	Exporters  map[ID]*Exporter
	// Pipelines in the order they were written.
	Pipelines []*Pipeline

	// Resource holds extra resource attributes (key "resource").
	Resource map[string]string
	// BTF is an external BTF file for kernels without /sys/kernel/btf/vmlinux (key "btf").
	BTF string
	// Log configures the agent's own log (key "log").
	Log Log
	// Health configures the /healthz endpoint (key "health"); off when empty.
	Health Health
	// DropCapabilities drops every capability once all pipelines are
	// attached (key "drop_capabilities").
	DropCapabilities bool
}

type Health struct {
	// Endpoint is the host:port the /healthz endpoint listens on.
	Endpoint string
}

type Log struct {
	Level  string // debug | info | warn | error (default info)
	Format string // text | json (default text)
}

// Hook rungs a source may be pinned to; "auto" lets the agent pick the best
// the kernel allows.
const (
	HookAuto          = "auto"
	HookFentry        = "fentry"
	HookKprobe        = "kprobe"
	HookTpBTF         = "tp_btf"
	HookRawTracepoint = "raw_tracepoint"
	HookTracepoint    = "tracepoint"
)

// Source is one entry under "sources". Exactly one of the typed settings is
// set, matching ID.Type.
type Source struct {
	ID      ID
	Pos     Pos
	Traffic *TrafficSource
	Drops   *DropsSource
	Accepts *AcceptsSource
	// TCPReceive is the tcpdumplike job (packets; see packets.go).
	TCPReceive *TCPReceiveSource
	// SocketCalls is the socket-trace job (traces; see socketcalls.go).
	SocketCalls *SocketCallsSource
}

// TrafficSource is the nettop job: per-process packets and bytes per device.
type TrafficSource struct {
	// Attribution is "socket" (default) or "current".
	Attribution string
	// MaxEntries bounds the kernel map of (pid, uid, device, command) keys. Default 10240.
	MaxEntries uint32
	// Hook pins the hook rung (HookAuto by default).
	Hook string
}

// DropsSource is the dropwatch job: packets the kernel frees as dropped,
// per code location, reason and protocol.
type DropsSource struct {
	// Hook pins the hook rung (HookAuto by default): tp_btf,
	// raw_tracepoint or tracepoint.
	Hook string
	// MaxEntries bounds the kernel map of keys counted per interval. Default 4096.
	MaxEntries uint32
	// Interface adds the device the packet was on (network.interface.name).
	Interface bool
	// ConsoleReason adds the reason to each console line.
	ConsoleReason bool
	// ConsoleOffset shows console locations as function+0xoff.
	ConsoleOffset bool
}

// AcceptsSource is the tcp_connections job: one log record per accepted
// TCP connection.
type AcceptsSource struct {
	// Hook pins the hook rung (HookAuto by default).
	Hook string
	// RingSize is the kernel ring buffer's size in bytes, a power of two.
	RingSize uint32
	// Connect also reports outbound connections.
	Connect bool
}

type Processor struct {
	ID         ID
	Pos        Pos
	Filter     *FilterProcessor
	Attributes *AttributesProcessor
	Containers *ContainersProcessor
}

// ContainersProcessor adds container.id and the Kubernetes pod of each
// row's, record's or span's process.pid.
type ContainersProcessor struct {
	// ProcRoot is where the processes' /proc is (default /proc).
	ProcRoot string
	// PodLogsRoot holds kubelet's <namespace>_<pod>_<uid> directories
	// (default /var/log/pods); "-" turns pod names off.
	PodLogsRoot string
}

// FilterProcessor keeps rows matching Include (when any is given) and not
// matching Exclude.
type FilterProcessor struct {
	Include *Match
	Exclude *Match
}

// Match matches a row when any listed value of any field matches.
type Match struct {
	PIDs     []int
	Commands []string
	UIDs     []int
	Devices  []string
}

// AttributesProcessor cuts cardinality: Drop removes the named attributes,
// Keep removes all others. Exactly one is set. Rows that become equal are summed.
type AttributesProcessor struct {
	Drop []string
	Keep []string
}

type Exporter struct {
	ID      ID
	Pos     Pos
	Console *ConsoleExporter
	OTLP    *OTLPExporter
	// OTLPLogs is the same otlp exporter resolved for logs: the file's
	// values, then OTEL_EXPORTER_OTLP_LOGS_* and the generic variables.
	OTLPLogs *OTLPExporter
	// OTLPTraces is the same otlp exporter resolved for traces, with
	// OTEL_EXPORTER_OTLP_TRACES_* and the generic variables.
	OTLPTraces *OTLPExporter
	// Pcapng writes packets to pcapng files (see packets.go).
	Pcapng *PcapngExporter
}

type ConsoleExporter struct{}

// OTLPExporter settings after the OTEL_* environment has been applied:
// a value written in the file wins over the environment, which wins over
// the default.
type OTLPExporter struct {
	// Enabled is false when the exporter was written with "enabled: auto"
	// and no endpoint is set in the file or the environment.
	Enabled     bool
	Endpoint    string // host:port or URL
	Protocol    string // grpc | http/protobuf
	Insecure    bool
	Headers     map[string]string
	TLS         TLS
	Compression string // gzip | none
	Timeout     time.Duration
	Temporality string // cumulative | delta
	// CardinalityLimit is the SDK's per-instrument cardinality limit (0: SDK default).
	CardinalityLimit int
	// ExportInterval is how often the SDK exports (OTEL_METRIC_EXPORT_INTERVAL);
	// 0 means the pipeline interval.
	ExportInterval time.Duration
	// LogQueueSize bounds the log SDK's batch queue (OTEL_BLRP_MAX_QUEUE_SIZE);
	// 0 means DefaultLogQueueSize.
	LogQueueSize int
}

type TLS struct {
	CAFile             string
	CertFile           string
	KeyFile            string
	InsecureSkipVerify bool
}

type Pipeline struct {
	ID         ID // ID.Type is the signal
	Pos        Pos
	Signal     Signal
	Sources    []ID
	Processors []ID
	Exporters  []ID
	// Interval is how often the sources are drained (metrics); default 5s.
	Interval time.Duration
}
