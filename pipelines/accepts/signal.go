// Package accepts is the tcp_connections job as a sockeye source: one
// OpenTelemetry log record per TCP connection a process accepts (and, when
// asked, per outbound connection), streamed from the kernel by bpf/accepts.
package accepts

import (
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/sockeye/sockeye/pipelines"
)

// Event names of the records.
const (
	EventAccept  = "sockeye.tcp.accept"
	EventConnect = "sockeye.tcp.connect"
)

// Record attributes, semantic-convention names. The server is the passive
// side: the local end of an accepted connection, the remote end of an
// outbound one.
var (
	AttrPID           = semconv.ProcessPIDKey
	AttrTID           = semconv.ThreadIDKey
	AttrCommand       = semconv.ProcessExecutableNameKey
	AttrUID           = semconv.ProcessUserIDKey
	AttrTransport     = semconv.NetworkTransportKey
	AttrNetworkType   = semconv.NetworkTypeKey
	AttrServerAddress = semconv.ServerAddressKey
	AttrServerPort    = semconv.ServerPortKey
	AttrClientAddress = semconv.ClientAddressKey
	AttrClientPort    = semconv.ClientPortKey
)

// Attributes are the names of the attributes accepts records carry.
var Attributes = []string{
	string(AttrPID), string(AttrTID), string(AttrCommand), string(AttrUID), string(AttrTransport),
	string(AttrNetworkType), string(AttrServerAddress), string(AttrServerPort),
	string(AttrClientAddress), string(AttrClientPort),
}

const numAttrs = 10

// Conn is one connection, decoded: the payload of a record.
type Conn struct {
	// Connect is true for an outbound connection, false for an accepted one.
	Connect bool
	// Time is when the kernel saw it (accept returned, or the connection
	// reached ESTABLISHED).
	Time          time.Time
	PID, TID, UID uint32
	Command       string
	// Local and Remote are this host's end and the peer's. IPv4 peers of a
	// dual-stack IPv6 socket (::ffff:a.b.c.d) are given as IPv4.
	Local, Remote netip.AddrPort
}

// NetworkType is "ipv4" or "ipv6", the protocol on the wire.
func (c *Conn) NetworkType() string {
	if c.Remote.Addr().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// Body is the record's one-line human text, e.g.
// "nginx[1234] accepted 203.0.113.9:51234 on :80".
func (c *Conn) Body() string {
	b := make([]byte, 0, 96)
	b = append(b, c.Command...)
	b = append(b, '[')
	b = strconv.AppendUint(b, uint64(c.PID), 10)
	if c.Connect {
		b = append(b, "] connected to "...)
		b = c.Remote.AppendTo(b)
		b = append(b, " from :"...)
		b = strconv.AppendUint(b, uint64(c.Local.Port()), 10)
	} else {
		b = append(b, "] accepted "...)
		b = c.Remote.AppendTo(b)
		b = append(b, " on :"...)
		b = strconv.AppendUint(b, uint64(c.Local.Port()), 10)
	}
	return string(b)
}

// record is a LogRecord with its payload and attributes in one allocation.
type record struct {
	rec   pipelines.LogRecord
	conn  Conn
	attrs [numAttrs]attribute.KeyValue
}

// Record turns a connection into a log record of source.
func (c *Conn) Record(source string, observed time.Time) *pipelines.LogRecord {
	r := &record{conn: *c}
	server, client := c.Local, c.Remote
	name := EventAccept
	if c.Connect {
		server, client = c.Remote, c.Local
		name = EventConnect
	}
	r.attrs = [numAttrs]attribute.KeyValue{
		AttrPID.Int(int(c.PID)),
		AttrTID.Int(int(c.TID)),
		AttrCommand.String(c.Command),
		AttrUID.Int(int(c.UID)),
		AttrTransport.String("tcp"),
		AttrNetworkType.String(c.NetworkType()),
		AttrServerAddress.String(server.Addr().String()),
		AttrServerPort.Int(int(server.Port())),
		AttrClientAddress.String(client.Addr().String()),
		AttrClientPort.Int(int(client.Port())),
	}
	r.rec = pipelines.LogRecord{
		Source:       source,
		Time:         c.Time,
		ObservedTime: observed,
		EventName:    name,
		Severity:     pipelines.SeverityInfo,
		Body:         c.Body(),
		Attrs:        r.attrs[:],
		Payload:      &r.conn,
		Console:      TCPConnections{},
	}
	return &r.rec
}
